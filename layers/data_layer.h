// The `data` layer: tops (data, label) filled from a BatchSource built from the config's data
// section for the net's phase.
#pragma once

#include <memory>

#include "core/device.h"
#include "core/batch_source.h"
#include "layers/layer.h"

namespace dropnet {

class DataLayer : public Layer {
 public:
  DataLayer(LayerInfo info, ConfigNode& cfg);
  int num_bottoms() const override { return 0; }
  int num_tops() const override { return -1; }  // data, or data + label
  bool always_runs() const override { return true; }  // it advances the cursor
  void set_source(std::unique_ptr<BatchSource> src) { source_ = std::move(src); }
  BatchSource* source() const { return source_.get(); }
  std::vector<Shape> reshape(const std::vector<Shape>& bottoms) override;
  void forward(const std::vector<Blob*>& bottom, const std::vector<Blob*>& top, const RunContext& ctx) override;
  void backward(const std::vector<Blob*>&, const std::vector<Blob*>&, const std::vector<BottomGrad>&,
                const RunContext&) override {}

 private:
  std::unique_ptr<BatchSource> source_;
  std::vector<float> host_label_;             // labels of a CPU net without a label top
  HostStaging staged_data_, staged_label_;     // CUDA nets: page-locked, double-buffered, fenced
};

}  // namespace dropnet
