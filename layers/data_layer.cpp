#include "layers/data_layer.h"

#include "core/error.h"
#include "layers/registry.h"

namespace dropnet {

DataLayer::DataLayer(LayerInfo info, ConfigNode& cfg) : Layer(std::move(info)) {
  if (info_.tops.empty() || info_.tops.size() > 2)
    cfg.fail("top", "a data layer has one or two tops: [data] or [data, label]");
}

std::vector<Shape> DataLayer::reshape(const std::vector<Shape>&) {
  DN_CHECK(source_ != nullptr, "data layer {} has no source", name());
  Shape s = source_->sample_shape();
  std::vector<int64_t> d = {source_->batch_size()};
  for (int i = 0; i < s.ndim(); ++i) d.push_back(s[i]);
  std::vector<Shape> tops = {Shape(d)};
  if (info_.tops.size() == 2) tops.push_back(Shape({source_->batch_size()}));
  return tops;
}

void DataLayer::forward(const std::vector<Blob*>&, const std::vector<Blob*>& top, const RunContext&) {
  Tensor& data = top[0]->value;
  if (data.device().is_cpu()) {
    host_label_.resize(static_cast<size_t>(source_->batch_size()));
    source_->next_batch(data.data(), top.size() > 1 ? top[1]->value.data() : host_label_.data());
    return;
  }
  // CUDA: the batch lands in page-locked staging, is uploaded on the copy stream (overlapping the
  // compute stream's work on the previous batch) and reaches the tops in the compute stream's
  // order (HostStaging: double-buffered, fenced by events, no host wait).
  const auto nd = static_cast<size_t>(data.count()), nl = static_cast<size_t>(source_->batch_size());
  float* hd = staged_data_.acquire(nd, data.device());
  float* hl = staged_label_.acquire(nl, data.device());
  source_->next_batch(hd, hl);
  staged_data_.copy_to(data.data(), nd);
  if (top.size() > 1) staged_label_.copy_to(top[1]->value.data(), nl);
}

std::unique_ptr<Layer> make_data_layer(LayerInfo info, ConfigNode& cfg) {
  return std::make_unique<DataLayer>(std::move(info), cfg);
}

}  // namespace dropnet
