#include "data/sampler.h"

#include <fmt/format.h>
#include <omp.h>

#include <exception>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"

namespace dropnet::data {

namespace {
// Separates the shuffle and transform random streams from the layers' (hashes of layer names).
uint32_t shuffle_stream(int64_t epoch) { return 0xDA7A0000u ^ (static_cast<uint32_t>(epoch) * 2654435761u); }
constexpr uint32_t kTransformTag = 0x7F0A5EEDu;
}  // namespace

IndexedSource::IndexedSource(std::shared_ptr<const Dataset> ds, TransformSpec transform, SamplerOptions opt)
    : ds_(std::move(ds)), t_(std::move(transform)), opt_(opt) {
  DN_CHECK(ds_ != nullptr, "no dataset");
  DN_CHECK(opt_.batch_size > 0, "batch size {}", opt_.batch_size);
  DN_CHECK(opt_.world >= 1 && opt_.rank >= 0 && opt_.rank < opt_.world, "rank {} of world {}", opt_.rank,
           opt_.world);
  total_ = ds_->size();
  if (opt_.limit > 0 && opt_.limit < total_) total_ = opt_.limit;
  if (total_ <= 0) input_error("data source: the data set has no samples");
  if (total_ < opt_.world)
    input_error("data source: {} samples cannot be sharded over {} ranks (every rank needs at least one)", total_,
                opt_.world);
  shard_size_ = (total_ - opt_.rank + opt_.world - 1) / opt_.world;

  int c = ds_->channels();
  auto [h, w] = ds_->fixed_hw();
  if (h > 0) {
    std::string problem = transform_problem(t_, c, h, w);
    if (!problem.empty()) input_error("data source ({}): {}", ds_->describe(0), problem);
  } else if (t_.crop <= 0) {
    // Sizes vary: without a crop the first sample fixes the shape; others must match it.
    std::vector<uint8_t> scratch;
    Sample s = ds_->get(0, scratch);
    h = s.image.h;
    w = s.image.w;
  }
  auto [oh, ow] = h > 0 ? transform_output_hw(t_, h, w) : std::pair<int, int>{t_.crop, t_.crop};
  sample_shape_ = Shape{c, oh, ow};
  scratch_.resize(static_cast<size_t>(std::max(1, omp_get_max_threads())));
}

void IndexedSource::build_permutation(int64_t epoch, std::vector<int64_t>* perm) const {
  perm->clear();
  if (!opt_.shuffle) return;
  perm->resize(static_cast<size_t>(total_));
  std::iota(perm->begin(), perm->end(), int64_t{0});
  HostRng rng(opt_.seed, shuffle_stream(epoch));
  for (int64_t i = total_ - 1; i > 0; --i) {
    int64_t j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i + 1)));
    std::swap((*perm)[i], (*perm)[j]);
  }
}

int64_t IndexedSource::sample_index(int64_t epoch, int64_t cursor) const {
  int64_t pos = opt_.rank + cursor * opt_.world;
  if (!opt_.shuffle) return pos;
  std::vector<int64_t> perm;
  build_permutation(epoch, &perm);
  return perm[pos];
}

void IndexedSource::load_one(int64_t index, int64_t epoch, int64_t pos, float* out, float* label,
                             std::vector<uint8_t>& scratch) const {
  Sample s = ds_->get(index, scratch);
  const ImageView& im = s.image;
  if (im.c != sample_shape_[0]) input_error("{}: has {} channels, expected {}", ds_->describe(index), im.c, sample_shape_[0]);
  std::string problem = transform_problem(t_, im.c, im.h, im.w);
  if (!problem.empty()) input_error("{}: {}", ds_->describe(index), problem);
  auto [oh, ow] = transform_output_hw(t_, im.h, im.w);
  if (oh != sample_shape_[1] || ow != sample_shape_[2])
    input_error("{}: the image is {}x{}, which gives samples of {}x{}, but this source's samples are {}x{} (set "
                "resize or crop)", ds_->describe(index), im.h, im.w, oh, ow, sample_shape_[1], sample_shape_[2]);
  TransformDraw draw;
  if (t_.crop > 0 || t_.mirror) {
    Philox4 r = philox4x32_10(static_cast<uint32_t>(pos), static_cast<uint32_t>(pos >> 32),
                              static_cast<uint32_t>(epoch), kTransformTag ^ static_cast<uint32_t>(epoch >> 32),
                              static_cast<uint32_t>(opt_.seed), static_cast<uint32_t>(opt_.seed >> 32));
    draw = TransformDraw{r.v[0], r.v[1], r.v[2]};
  }
  transform_sample(t_, im, draw, out);
  *label = static_cast<float>(s.label);
}

void IndexedSource::next_batch(float* data, float* labels) {
  struct Item {
    int64_t index, epoch, pos;
  };
  const int64_t b = opt_.batch_size;
  std::vector<Item> items(static_cast<size_t>(b));
  for (int64_t k = 0; k < b; ++k) {
    if (perm_epoch_ != epoch_) {
      build_permutation(epoch_, &perm_);
      perm_epoch_ = epoch_;
    }
    int64_t pos = opt_.rank + cursor_ * opt_.world;
    items[k] = Item{perm_.empty() ? pos : perm_[pos], epoch_, pos};
    if (++cursor_ == shard_size_) {
      cursor_ = 0;
      ++epoch_;
    }
  }
  const int64_t stride = sample_shape_.count();
  if (ds_->expensive() && b > 1 && scratch_.size() > 1) {
    std::vector<std::exception_ptr> errors(static_cast<size_t>(b));
#pragma omp parallel for schedule(dynamic, 1) num_threads(static_cast<int>(scratch_.size()))
    for (int64_t k = 0; k < b; ++k) {
      try {
        load_one(items[k].index, items[k].epoch, items[k].pos, data + k * stride, labels + k,
                 scratch_[static_cast<size_t>(omp_get_thread_num())]);
      } catch (...) {
        errors[k] = std::current_exception();
      }
    }
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
  } else {
    for (int64_t k = 0; k < b; ++k)
      load_one(items[k].index, items[k].epoch, items[k].pos, data + k * stride, labels + k, scratch_[0]);
  }
}

void IndexedSource::restore(const std::vector<int64_t>& state) {
  if (state.size() != 2 || state[0] < 0 || state[1] < 0 || state[1] >= shard_size_)
    input_error("data source: saved position [{}] does not fit this source (expected [epoch, cursor] with cursor "
                "< {}, this rank's shard size)", fmt::join(state, ", "), shard_size_);
  epoch_ = state[0];
  cursor_ = state[1];
}

}  // namespace dropnet::data
