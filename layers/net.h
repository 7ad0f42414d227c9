// The Net: builds the layer DAG for one phase from the `layers` list (file order is execution
// order; every bottom must be a top defined earlier), infers shapes, owns the blobs, places all
// learnable parameters in one flat arena (values and grads), and runs forward/backward.
// TRAIN and TEST nets share parameters: a TEST net built with `share_from` uses the TRAIN net's
// parameter views, matched by layer name.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/batch_source.h"
#include "core/device_array.h"
#include "kernels/step_check.h"
#include "layers/layer.h"

namespace dropnet {

struct NetOptions {
  Phase phase = Phase::Train;
  Device device;
  uint64_t seed = 1;
  SourceFactory source_factory = nullptr;  // required when the net has a data layer
  int rank = 0, world = 1;
  const class Net* share_from = nullptr;  // TEST nets: share the TRAIN net's parameters
  std::string default_engine = "native";
  // The top-level `precision` key: operand rounding of every conv and fc product (precision_math.h).
  Precision precision = Precision::FP32;
  // Per-phase batch size override for every data section (0 = as configured).
  int64_t batch_override = 0;
  // Compute gradients for every blob, data layer outputs included (Caffe's force_backward; used
  // by dropnet-dump for conformance checks).
  bool force_backward = false;
  // Largest blob or parameter (in floats) a config may ask for; bigger is an input error.
  double max_blob_floats = 2147483648.0;  // 8 GiB of float32
  // Largest parameter arena (all parameters: one allocation, and as much again for gradients and
  // momentum); bigger is an input error.
  double max_param_floats = 2147483648.0;
  // Shapes and counts only (dropnet-summary, --dry-run): host memory is reserved but never
  // touched (no zeroing, no filling), so a net too big for this machine can still be described.
  bool shapes_only = false;
  // Apply a ReLU in its producer's forward epilogue (conv, fc) when the ReLU is the producer's
  // only consumer: the ReLU's top aliases the producer's top, which then holds the activated
  // values, and the ReLU runs backward only. Off for dropnet-dump (every blob as computed).
  bool fuse_activations = true;
  // Compute skipping (README "DropIn compute skipping"): before each pass the net works out,
  // from the outputs backwards, which channels of each blob are read (Layer::bottom_use: a gradual
  // DropIn reads `new` only where its mask takes it). A layer none of whose tops is read runs
  // neither forward nor backward, a conv computes only the channels read, and a gradual DropIn at
  // p = 0 or 1 passes its input through without a copy. Results equal the full computation's
  // (tests/dropin_skip.cpp). Off for dropnet-dump (every blob as computed).
  bool skip_unused = true;
  // solver.max_iter (0: unknown): a scheduled layer (gradual DropIn, grow) whose start is at or past
  // it is a config error.
  int64_t max_iter = 0;
};

// One learnable parameter inside the arena.
struct ParamRef {
  int layer;
  int index;            // within the layer
  std::string name;     // "conv1.weight"
  int64_t offset;       // in floats, into the arena
  int64_t count;
  float lr_mult, decay_mult;
};

class Net {
 public:
  Net(const LoadedConfig& cfg, const NetOptions& opts);
  ~Net();

  // Runs every layer's forward; returns the objective (sum of loss_weight * loss). On a CUDA net
  // it waits for the GPU, and a bad label found on the device is raised here.
  float forward(const RunContext& ctx);
  // forward() without reading anything back: on a CUDA net the work is only queued, and the
  // labels are checked into device_check() (the solver reads it back when it needs to).
  void forward_queued(const RunContext& ctx);

  // CUDA nets: the device-side checks (kernels/step_check.h) of the net's passes, and the kernels
  // the solver queues after each forward: the loss values into out[k * num_loss_layers() + j]
  // (with the loss check), then the scan that names the first non-finite top.
  StepCheck* device_check() { return check_.data(); }
  StepCheck read_device_check() const;  // waits for the GPU
  void clear_device_check();
  void record_losses(int k, bool check_finite, float* out);
  void scan_tops(int k);
  int num_loss_layers() const { return static_cast<int>(loss_layers_.size()); }
  // The objective of one pass from its loss values (in loss-layer order), summed as forward() sums it.
  float objective(const float* loss_values) const;
  // "layer 'conv1' (top 'conv1')" for an index of the scanned top table.
  std::string top_description(int t) const;
  // The error of a label failure read back from the device (same text as the host's check).
  [[noreturn]] void throw_label_error(const StepCheck& c) const;
  // Runs backward in reverse order; parameter grads are accumulated into the arena.
  void backward(const RunContext& ctx);
  void forward_layer(int i, const RunContext& ctx);
  void backward_layer(int i, const RunContext& ctx);
  bool layer_needs_backward(int i) const { return layer_backward_[i]; }
  // Compute skipping: whether layer i runs in the pass at ctx, and the channels of its top 0 read.
  bool layer_active(int i, const RunContext& ctx) const { return plan_for(ctx).active[i] != 0; }
  ChannelRange layer_top_use(int i, const RunContext& ctx) const { return plan_for(ctx).top_use[i]; }
  // Whether layer i's forward runs inside its bottom's producer (NetOptions::fuse_activations).
  bool forward_fused(int i) const { return forward_fused_[i]; }

  Phase phase() const { return opts_.phase; }
  Device device() const { return opts_.device; }
  const std::string& name() const { return name_; }
  int num_layers() const { return static_cast<int>(layers_.size()); }
  Layer& layer(int i) { return *layers_[i]; }
  const Layer& layer(int i) const { return *layers_[i]; }
  int find_layer(const std::string& name) const;  // -1 if absent
  const std::vector<Blob*>& bottoms(int i) const { return bottom_[i]; }
  const std::vector<Blob*>& tops(int i) const { return top_[i]; }
  Blob* blob(const std::string& name);
  const std::vector<std::unique_ptr<Blob>>& blobs() const { return blobs_; }
  // Tops consumed by no layer (loss, accuracy), in definition order.
  const std::vector<Blob*>& outputs() const { return outputs_; }
  // After a forward pass: the mean of each output's values (a loss, a batch's accuracy), in the
  // order of outputs(). Averaged over batches by the solver's test and dropnet-test alike.
  std::vector<double> output_means() const;
  // The data layers' sources (for wait time, snapshots of cursors).
  std::vector<BatchSource*> sources() const;
  int64_t batch_size() const;

  // The flat parameter arena.
  Tensor& param_values() { return *param_values_; }
  Tensor& param_grads() { return *param_grads_; }
  const std::vector<ParamRef>& params() const { return params_; }
  // Floats in the arena: the parameters and the alignment padding between them.
  int64_t num_param_floats() const { return param_values_ ? param_values_->count() : 0; }
  // Learnable parameters (what a summary counts; no padding).
  int64_t num_params() const {
    int64_t n = 0;
    for (const ParamRef& p : params_) n += p.count;
    return n;
  }
  void zero_param_grads();
  std::vector<std::pair<std::string, double>> layer_metrics(const RunContext& ctx) const;
  // Forward FLOPs of layer i in the pass at ctx, counting only what compute skipping leaves to do
  // (0 for a layer that does not run).
  double layer_forward_flops(int i, const RunContext& ctx) const;

 private:
  // build: each layer of the phase in file order (its keys, its type's factory, its bottoms, a data
  // layer's source, its top shapes, its tops), then the graph as a whole (outputs, fusion,
  // parameters, backward plan, blob indices).
  void build(const LoadedConfig& cfg);
  std::unique_ptr<Layer> create_layer(const LayerInfo& info, ConfigNode& node) const;
  std::vector<Blob*> find_bottoms(const LayerInfo& info, ConfigNode& node);
  std::unique_ptr<BatchSource> make_source(ConfigNode& root, ConfigNode& node) const;
  std::vector<Shape> infer_top_shapes(Layer& layer, const std::vector<Blob*>& bottoms, ConfigNode& node) const;
  std::vector<Blob*> add_tops(const LayerInfo& info, const std::vector<Shape>& shapes, ConfigNode& node);
  void index_blobs();
  void allocate_params();
  void fill_params();
  void plan_backward();
  void fuse_activations();
  // One pass's compute-skipping plan, recomputed when the iteration changes (DropIn schedules
  // depend on nothing else).
  struct PassPlan {
    int64_t iter = -1;
    std::vector<char> active;                      // per layer
    std::vector<ChannelRange> top_use;             // per layer: channels of top 0 read
    std::vector<std::vector<BottomGrad>> grads;    // per layer: needed / beta in this pass
  };
  const PassPlan& plan_for(const RunContext& ctx) const;

  NetOptions opts_;
  std::string name_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<std::vector<Blob*>> bottom_, top_;
  std::vector<std::vector<BottomGrad>> bottom_grad_;
  std::vector<bool> layer_backward_;
  std::vector<bool> forward_fused_;
  std::vector<std::unique_ptr<Blob>> blobs_;
  std::map<std::string, Blob*> blob_by_name_;
  std::vector<Blob*> outputs_;
  std::vector<int> loss_layers_;
  std::shared_ptr<Tensor> param_values_, param_grads_;
  std::vector<ParamRef> params_;
  std::vector<std::vector<int>> bottom_index_, top_index_;  // blob indices (into blobs_) per layer
  std::vector<int> output_index_;                            // of outputs_
  mutable PassPlan plan_;  // a cache (plan_for)
  // CUDA nets: device-side checks, the loss tops and weights, every (layer, top) for the scan.
  void setup_device_check();
  DeviceArray<StepCheck> check_;
  DeviceArray<const float*> loss_tops_dev_;
  DeviceArray<float> loss_weights_dev_;
  DeviceArray<TopRef> top_table_dev_;
  std::vector<std::pair<int, int>> top_table_;  // (layer, top) of each entry
};

}  // namespace dropnet
