// SGD solver with Caffe's semantics (REFERENCE.md): momentum with the learning rate inside the
// buffer, weight decay with decay_mult, lr_mult, lr policies (+ linear warmup), iter_size
// accumulation, gradient clipping, periodic testing (iteration 0 included), display with a
// smoothed loss, divergence detection. The update runs over the flat parameter arena.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/sgd.h"
#include "layers/net.h"

namespace dropnet {

// Caffe's learning-rate policies (learning_rate() has each formula).
enum class LrPolicy { Fixed, Step, Exp, Inv, Multistep, Poly, Sigmoid };
// The policy of a config name ("fixed", "step", ...); an unknown name is an internal error (the
// config is checked against lr_policy_names() when parsed).
LrPolicy lr_policy_named(const std::string& name);
const std::vector<std::string>& lr_policy_names();

struct SolverConfig {
  double base_lr = 0.01;
  LrPolicy lr_policy = LrPolicy::Fixed;
  double gamma = 0.1, power = 1.0;
  int64_t stepsize = 1;
  std::vector<int64_t> stepvalue;
  int64_t max_iter = 1;
  double momentum = 0.0, weight_decay = 0.0;
  int64_t iter_size = 1;
  double clip_gradients = -1.0;  // <= 0: off
  int64_t test_interval = 0;     // 0: no periodic test
  int64_t test_iter = 0;
  bool test_initialization = true;
  int64_t display = 100;
  int64_t average_loss = 1;
  int64_t snapshot = 0;
  std::string snapshot_prefix = "";
  int64_t keep_last = 0;         // snapshots kept (0 = all)
  int64_t warmup_iter = 0;       // linear warmup from warmup_start_factor * lr
  double warmup_start_factor = 0.0;
  bool check_finite = true;      // stop on NaN/Inf loss or gradients
  double bucket_mb = 25.0;       // data parallel: gradient bucket size (MB) all-reduced during backward

  static SolverConfig parse(ConfigNode node);
};

// The learning rate at iteration `iter` (before the update of that iteration).
double learning_rate(const SolverConfig& c, int64_t iter);

// Gradient all-reduce hook (dist/ implements it; null = single process).
class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // Sums `n` floats across ranks in place (host or device pointer, per `dev`).
  virtual void allreduce_sum(float* data, int64_t n, Device dev) = 0;
  virtual void allreduce_sum_double(double* data, int64_t n) = 0;
  // Copies rank 0's buffer to every rank.
  virtual void broadcast(float* data, int64_t n, Device dev) = 0;

  // Reduction overlapped with backward (DESIGN.md §7). Per update the solver calls
  // begin_backward before the backward pass that completes the gradients (the last of
  // iter_size), on_layer_grads_ready after each layer with parameters, in backward order
  // ([begin, begin + n) is that layer's range of the arena, final from then on), and finish
  // before the update; after finish the arena holds the sum over ranks (not yet averaged).
  // The defaults sum the whole arena in finish; dist/ all-reduces buckets as they complete.
  virtual void begin_backward(float* arena, int64_t n, Device dev, int64_t bucket_bytes) {
    arena_ = arena;
    arena_count_ = n;
    arena_device_ = dev;
  }
  virtual void on_layer_grads_ready(int layer, float* begin, int64_t n) {}
  virtual void finish() { allreduce_sum(arena_, arena_count_, arena_device_); }

 protected:
  float* arena_ = nullptr;
  int64_t arena_count_ = 0;
  Device arena_device_;
};

struct TrainRecord {
  std::string kind;  // "train" or "test"
  int64_t iter = 0;
  std::vector<std::pair<std::string, double>> values;  // loss, lr, images_per_s, accuracy, dropin p, ...
};

struct SolverOptions {
  // Both nets' options (device, seed, data sources, engine, batch override, limits, shapes_only,
  // compute skipping). The solver sets their phase, rank and world (from the reducer), share_from
  // (the TEST net shares the TRAIN net's parameters) and max_iter. A shapes_only solver cannot train.
  NetOptions net;
  GradientReducer* reducer = nullptr;
  bool quiet = false;
  // A gradual DropIn or grow starting at or past max_iter is a config error (NetOptions::max_iter);
  // dropnet-probe's shallow arm holds DropIns at p = 0 by starting them beyond any run.
  bool check_schedule_starts = true;
};

class Solver {
 public:
  Solver(const LoadedConfig& cfg, const SolverOptions& opts);
  ~Solver();

  // Trains until max_iter (testing and snapshotting as configured). Throws on divergence.
  void solve();
  // Runs `n` iterations (one update each).
  void step(int64_t n);
  // Runs test_iter batches of the TEST net; returns the mean of each output (nothing when
  // should_stop stopped it).
  std::vector<std::pair<std::string, double>> test(int64_t iterations = -1);
  // test(), logged and recorded (rank 0) as Caffe's "Iteration N, Testing net: ..." lines.
  void report_test();

  int64_t iter() const { return iter_; }
  GradientReducer* reducer() const { return opts_.reducer; }  // null: one process
  void set_iter(int64_t it) { iter_ = it; }
  const SolverConfig& config() const { return cfg_; }
  Net& train_net() { return *train_; }
  Net* test_net() { return test_.get(); }
  Tensor& history() { return history_; }  // momentum buffer, arena layout
  uint64_t seed() const { return opts_.net.seed; }
  // The mean of the loss window. On a CUDA net the losses are read back at display, test and
  // snapshot points and when step() returns; in between, the window lags the queued iterations.
  double smoothed_loss() const;
  const std::vector<float>& loss_window() const { return losses_; }
  void restore_loss_window(const std::vector<float>& w) { losses_ = w; }

  std::function<void(const TrainRecord&)> on_record;         // rank 0 consumers (metrics, progress)
  std::function<void(int64_t iter)> on_snapshot;             // called when a snapshot is due
  // Checked every iteration and every TEST batch (signals): a test it stops is abandoned (test()
  // returns no values, report_test() records nothing).
  std::function<bool()> should_stop;
  std::function<void(int64_t done, int64_t total)> on_test_batch;  // after each TEST batch (progress)

 private:
  void apply_update();
  void check_finite_or_throw(float loss);
  void backward_and_reduce(const RunContext& ctx);
  // CUDA nets (deferred_checks()): an iteration queues its loss values into loss_records_ and its
  // checks into the train net's StepCheck, and waits for nothing; read_back() waits for the GPU,
  // takes the queued iterations' losses into the window in order and raises the first failure
  // (iter() is then the failing iteration, whose update the device skipped).
  bool deferred_checks() const { return deferred_; }
  void read_back();

  SolverConfig cfg_;
  SolverOptions opts_;
  std::unique_ptr<Net> train_, test_;
  Tensor history_;
  std::vector<std::pair<int64_t, int64_t>> layer_grad_range_;  // per layer: [begin, end) in the arena
  std::vector<SgdSegment> segments_;                           // the parameters, for the fused update
  SgdSegmentTable device_segments_;                            // segments_ on a CUDA device
  int64_t iter_ = 0;
  std::vector<float> losses_;  // last average_loss losses
  double images_since_display_ = 0, seconds_since_display_ = 0;
  bool deferred_ = false;
  Tensor loss_records_;         // (record_capacity_, iter_size * loss layers) on the device
  int64_t record_capacity_ = 0;
  int64_t records_ = 0;         // iterations queued since the last read-back
  int64_t records_begin_ = 0;   // the iteration of record 0
};

}  // namespace dropnet
