// The layer interface. A layer parses its YAML keys in its constructor (strictly), computes top
// shapes in reshape() (the one place derived sizes and buffers change), and runs forward and
// backward on the net's device. Learnable parameters are declared as ParamSpecs; the Net places
// them in one flat arena (value and grad) and hands back views in params().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/phase.h"
#include "core/tensor.h"
#include "kernels/eltwise_math.h"
#include "kernels/precision_math.h"

namespace dropnet {

struct StepCheck;  // kernels/step_check.h

// What a forward/backward call needs to know about the run.
struct RunContext {
  Phase phase = Phase::Train;
  int64_t iter = 0;      // solver iteration (DropIn schedules)
  uint64_t seed = 0;     // run seed (RNG key)
  uint32_t rng_step = 0;  // RNG counter for masks: distinct per forward pass (iter * iter_size + k)
  // A CUDA net's device-side checks (set by the Net): loss layers check their labels into it on the
  // device instead of reading them back. Null: the labels are checked on the host.
  StepCheck* check = nullptr;
};

struct FillerSpec {
  std::string type = "constant";  // constant | uniform | gaussian | xavier | msra
  float value = 0.f;              // constant
  float min = 0.f, max = 1.f;     // uniform
  float mean = 0.f, std = 1.f;    // gaussian
};
FillerSpec parse_filler(ConfigNode node);  // node invalid -> constant 0 (Caffe's default)

struct ParamSpec {
  std::string name;  // "weight", "bias"
  Shape shape;
  FillerSpec filler;
  int64_t fan_in = 1;  // for xavier / msra
  float lr_mult = 1.f;
  float decay_mult = 1.f;
};

// Per-bottom instructions for backward: whether a gradient is wanted, and whether to
// overwrite (beta = 0) or accumulate into (beta = 1) the bottom's grad.
struct BottomGrad {
  bool needed = true;
  float beta = 0.f;
};

// A range [begin, end) of channels (dimension 1; a blob of fewer dimensions has one channel) of
// every sample of a blob: what the net reads of the blob in one pass (compute skipping).
struct ChannelRange {
  int64_t begin = 0, end = 0;
  bool empty() const { return begin >= end; }
  int64_t size() const { return empty() ? 0 : end - begin; }
  bool operator==(const ChannelRange& o) const { return begin == o.begin && end == o.end; }
};
int64_t num_channels(const Shape& s);  // dimension 1, or 1 below two dimensions
inline ChannelRange whole_channels(const Shape& s) { return {0, num_channels(s)}; }
ChannelRange intersect(ChannelRange a, ChannelRange b);
ChannelRange hull(ChannelRange a, ChannelRange b);  // the smallest range holding both

// The top of a layer that may pass one of its inputs through (gradual DropIn at p = 0 or 1, grow at
// full width): under compute skipping the top is then a view of that input, not a copy, and it
// gets its own storage back when the layer computes again (a net evaluated at an earlier iteration).
class PassThroughTop {
 public:
  // `top` becomes a view of `src`.
  void view(Tensor& top, const Tensor& src) {
    keep(top);
    top = Tensor::view(src, 0, src.shape());
  }
  // `top` holds its own storage again; returns it to be written.
  Tensor& own(Tensor& top) {
    keep(top);
    top = own_;
    return top;
  }

 private:
  void keep(const Tensor& top) {
    if (own_.empty()) own_ = top;  // the first call sees the storage the Net allocated
  }
  Tensor own_;
};

// One matrix product a layer's pass runs (C is m x n, K = k, `groups` of them): what the GPU
// performance model (tools/perf_model.h) tiles. conv: per direction, as the implicit-GEMM kernels
// cut it (kernels/tile_plan.h: fwd, bwd_data, bwd_filter); fc: the three SGEMMs.
enum class GemmPass { Fwd, BwdData, BwdFilter };
struct GemmExtent {
  GemmPass pass;
  int64_t m, n, k, groups;
  bool conv;  // tiled by plan_conv's grids (else plan_gemm)
};

struct LayerInfo {
  std::string name;
  std::string type;
  std::vector<std::string> bottoms;
  std::vector<std::string> tops;
  Device device;
  std::string engine = "native";  // native | cublas | cudnn
  Precision precision = Precision::FP32;  // of the matrix products (conv, fc): the net's `precision`
  std::string phase = "both";     // train | test | both: the nets the layer is in
  uint32_t rng_stream = 0;        // hash of the name: the layer's RNG stream id
};

class Layer {
 public:
  explicit Layer(LayerInfo info) : info_(std::move(info)) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  const LayerInfo& info() const { return info_; }
  const std::string& name() const { return info_.name; }
  const std::string& type() const { return info_.type; }
  Device device() const { return info_.device; }

  // Arity: the Net checks these before reshape. -1 = any.
  virtual int num_bottoms() const = 0;
  virtual int num_tops() const = 0;

  // Computes top shapes from bottom shapes; allocates internal buffers; on the first call may
  // fill param_specs_. Throws input errors naming the layer on a shape mismatch.
  virtual std::vector<Shape> reshape(const std::vector<Shape>& bottoms) = 0;
  virtual void forward(const std::vector<Blob*>& bottom, const std::vector<Blob*>& top,
                       const RunContext& ctx) = 0;
  // Param grads are always accumulated (the solver clears them).
  virtual void backward(const std::vector<Blob*>& top, const std::vector<Blob*>& bottom,
                        const std::vector<BottomGrad>& bottom_grad, const RunContext& ctx) = 0;
  // Whether a bottom's gradient can be computed at all (labels cannot).
  virtual bool can_backprop_to(int bottom_index) const { return true; }
  // Loss layers: weight of top 0 in the objective (0 = not a loss).
  virtual float loss_weight() const { return 0.f; }
  // Forward FLOPs for one pass over the current shapes (summary tool).
  virtual double forward_flops() const { return 0.0; }
  // Activation fusion (Net::fuse_activations): an element-wise activation layer describes itself
  // here, and a producer that can apply it in its forward epilogue (conv, fc) takes it and returns
  // true; the Net then skips the activation's forward.
  virtual std::optional<Activation> as_activation() const { return std::nullopt; }
  virtual bool fuse_activation(const Activation&) { return false; }
  // Compute skipping (NetOptions::skip_unused; README "DropIn compute skipping"): given the
  // channels of each top that later layers read in this pass (at least one is not empty), narrow
  // `bottom` (it arrives holding every bottom whole) to the channels this layer reads. The
  // gradient a layer sends to a bottom must be zero outside what it reads, and zero altogether
  // for a bottom it does not read. A layer none of whose tops is read does not run at all.
  virtual void bottom_use(const RunContext& ctx, const std::vector<ChannelRange>& top,
                          std::vector<ChannelRange>& bottom) const {}
  // Scheduled layers (gradual DropIn, grow): the iteration their schedule starts (the Net refuses
  // one at or past solver.max_iter: the layer would never change); -1 for the others.
  virtual int64_t schedule_start() const { return -1; }
  // Layers with side effects (the data layer advances its cursor) run even when no top is read.
  virtual bool always_runs() const { return false; }
  // FLOPs of one forward pass at ctx when only `top_use` of top 0 is read (dropnet-summary --iter).
  virtual double forward_flops_used(const RunContext& ctx, const ChannelRange& top_use) const {
    return forward_flops();
  }
  // The matrix products of forward and backward (empty: the layer moves memory, no GEMM).
  virtual std::vector<GemmExtent> gemm_extents() const { return {}; }
  // Layer-specific scalars logged into the metrics (DropIn's p, ...).
  virtual std::vector<std::pair<std::string, double>> metrics(const RunContext& ctx) const { return {}; }

  const std::vector<ParamSpec>& param_specs() const { return param_specs_; }
  std::vector<Blob>& params() { return params_; }
  const std::vector<Blob>& params() const { return params_; }

 protected:
  // Derived layers call this from reshape() once they know their parameter shapes.
  void declare_params(std::vector<ParamSpec> specs);
  // Validates that `specs` match already-declared params on a later reshape.
  bool params_declared() const { return !param_specs_.empty(); }

  LayerInfo info_;
  // The channels of top 0 that the net reads in the current pass (set by the Net before forward
  // and backward; {0, INT64_MAX} outside a Net: everything). A layer may compute only these; the
  // rest of its top then holds stale values that no layer reads, and its parameter gradients
  // outside them are left untouched (they would be exact zeros).
  ChannelRange top_use_{0, INT64_MAX};
  bool skip_unused_ = false;  // NetOptions::skip_unused of the net that holds the layer
  std::vector<ParamSpec> param_specs_;
  std::vector<Blob> params_;  // set by the Net: views into the parameter arena
  // lr_mult / decay_mult read from YAML (per param, in order); empty = defaults.
  std::vector<double> lr_mult_cfg_, decay_mult_cfg_;
  friend class Net;
  friend struct LayerFactoryAccess;
};

// Reads the keys common to all layers' params (lr_mult, decay_mult lists) for layers with
// parameters. Call from the constructor.
void read_param_mults(ConfigNode& cfg, std::vector<double>* lr_mult, std::vector<double>* decay_mult);

}  // namespace dropnet
