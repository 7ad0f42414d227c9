// Run directories (resolved config, metrics.jsonl + metrics.csv) and the net summary table.
#pragma once

#include <cstdint>
#include <functional>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <spdlog/sinks/base_sink.h>

#include "core/fileio.h"
#include "core/config.h"
#include "optim/snapshot.h"
#include "layers/net.h"
#include "optim/solver.h"

namespace dropnet {

// The files of an earlier run in `dir`: a non-empty metrics.jsonl or snapshots
// (<prefix>_iter_<N>.safetensors / .solverstate) make it one; metrics.csv, `latest`, train.log and
// run.jsonl go with them. Empty when `dir` holds no run.
std::vector<std::string> run_files(const std::string& dir);

// train.log: a spdlog sink whose every line is a checked write (AppendFile). A failed write does
// not throw inside spdlog: error() returns it, for the run to stop on like a failed metrics write.
class RunLogSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit RunLogSink(const std::string& path) : file_(path) {}
  std::string error() const;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override {}

 private:
  AppendFile file_;
  mutable std::mutex error_mu_;
  std::string error_;
};
// Adds a RunLogSink on DIR/train.log to the default logger.
std::shared_ptr<RunLogSink> attach_run_log(const std::string& dir);

// ---- configs carried by snapshots ----------------------------------------------------------------

// The config a resumed run trains with (dropnet-train --resume): the run's own, from the snapshot,
// with `overrides` applied after the run's (what they change is logged). A CONFIG file given as
// well must resolve to the same config with the same overrides, or it is refused with the
// differences listed. A snapshot that carries no config (an older dropnet) needs CONFIG.
LoadedConfig resume_config(const SnapshotInfo& snapshot, const std::string& config_path,
                           const std::vector<std::string>& overrides);
// The config to evaluate a snapshot with (dropnet-test): without CONFIG the snapshot's own (with
// `overrides` after the run's); with CONFIG that file, whose net (`layers`, as resolved) must be
// the one the weights were trained with when the snapshot says which (data and solver may differ).
LoadedConfig evaluation_config(const SnapshotInfo& snapshot, const std::string& config_path,
                               const std::vector<std::string>& overrides);

// One invocation of a tool as a JSON object (one line): the command line, when, where, the thread
// count, dropnet's version and commit, the device and ranks, the iteration it started at.
std::string invocation_record(const std::vector<std::string>& argv, int threads, const std::string& device, int world,
                              int64_t start_iter);

class RunDirectory {
 public:
  // Creates `dir` (and parents), writes config.yaml (the resolved config). A run resumed from a
  // snapshot at iteration `resumed_at` (>= 0) cuts its metrics files back to the records of the
  // iterations before it (they are written again from there; a record past a later crash is not
  // kept twice).
  RunDirectory(const std::string& dir, const LoadedConfig& cfg, int64_t resumed_at = -1);
  // Appends one JSON line to metrics.jsonl and the rows of metrics.csv, each one checked write; a
  // failed write (ENOSPC, EIO) throws an input error naming the file.
  void write_record(const TrainRecord& r);
  // The run's last record in metrics.jsonl: {"kind": "status", "iter": N, "status": S, "message": M}
  // with S one of finished, diverged, stopped (a signal), error.
  void write_status(const std::string& status, int64_t iter, const std::string& message);
  // Appends an invocation_record() line to run.jsonl: one line per invocation (a new run or a resume).
  void write_invocation(const std::string& record);
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::unique_ptr<AppendFile> jsonl_, csv_;  // checked writes: a full disk is an error, not a torn file
  std::vector<std::string> csv_columns_;
};

// ---- net summary (dropnet-summary, dropnet-train --dry-run) --------------------------------

struct LayerSummary {
  std::string name, type;
  std::string top_shape;       // "(64, 20, 24, 24)", several tops separated by spaces
  int64_t params = 0;          // learnable floats
  double flops = 0;            // forward FLOPs of one pass over the whole batch
  double flops_per_image = 0;  // flops / batch
  double used_per_image = -1;  // FLOPs per image left after compute skipping at SummaryOptions::at_iter (-1: not asked)
  double act_bytes = 0;        // top values + top gradients as allocated (gradients: TRAIN only)
  double param_bytes = 0;      // parameter values (4 bytes each)
};

struct NetSummary {
  std::string phase;  // "TRAIN" / "TEST"
  std::string name;
  int64_t batch = 0;
  int64_t at_iter = -1;  // the iteration of used_per_image (-1: not asked)
  std::vector<LayerSummary> layers;
  LayerSummary total;
};

// at_iter >= 0: also the FLOPs that compute skipping leaves at that iteration (DropIn schedules).
NetSummary summarize_net(const Net& net, int64_t at_iter = -1);

struct SummaryOptions {
  bool markdown = false;  // GitHub tables (for the README) instead of aligned text
  bool defaults = true;   // list the defaults that were filled in
  int64_t at_iter = -1;   // dropnet-summary --iter N: FLOPs per image left at iteration N
};

// Per layer: type, top shape, parameters, forward FLOPs (per image and per batch), activation and
// parameter memory; totals; for TRAIN and (if present) TEST; then every default that was filled
// in, listed once (layer keys grouped: "phase = both: data, conv1, ...").
std::string format_net_summary(const Net& train, const Net* test, const DefaultsLog& defaults,
                               const SummaryOptions& opts = {});
void print_net_summary(const Net& train, const Net* test, const DefaultsLog& defaults,
                       const SummaryOptions& opts = {});
// The defaults log with per-layer entries ("layers[3](conv2).stride = [1]") grouped by key and
// value over the layers that share them.
std::vector<std::string> compact_defaults(const DefaultsLog& defaults);

// "431,080"
std::string with_commas(int64_t v);

// ---- synthetic data (tools that need shapes, not pixels) ------------------------------------

// Replaces data.train / data.test by `source: synthetic` sections of the same batch size, sample
// shape and transforms (scale, mean values, crop, pad, mirror), so that a config whose dataset is
// not installed can still be summarized and timed. `shape` ("C,H,W") overrides the sample shape,
// which is otherwise known for mnist (1,28,28), cifar10 (3,32,32) and image_list with `resize`.
void use_synthetic_data(LoadedConfig& cfg, const std::string& shape = "");

// ---- per-layer timing (dropnet-time; Caffe's `time`) ----------------------------------------

struct LayerTiming {
  std::string name, type;
  double forward_ms = 0, backward_ms = 0;  // mean per iteration
  double flops = 0;                        // forward FLOPs per pass
  bool has_backward = false;               // the layer runs a backward pass in this net
  bool forward_fused = false;              // its forward runs inside its producer's (a fused ReLU)
  bool skipped = false;                    // compute skipping: no later layer reads it at at_iter
  std::string computed;                    // a conv computing part of its channels: "5/20 ch"
};

struct NetTiming {
  std::string name;
  std::string device;
  int64_t batch = 0, iterations = 0, at_iter = 0;
  std::vector<LayerTiming> layers;
  double forward_ms = 0, backward_ms = 0;  // sums over the layers, mean per iteration
  double total_ms() const { return forward_ms + backward_ms; }
  double images_per_s() const { return total_ms() > 0 ? 1000.0 * static_cast<double>(batch) / total_ms() : 0.0; }
};

// One untimed forward/backward, then `iterations` of forward and backward layer by layer, each
// layer timed between device synchronizations; no parameter update. `at_iter` is the iteration
// the layers see (DropIn schedules).
NetTiming time_net(Net& net, int64_t iterations, int64_t at_iter, uint64_t seed);
std::string format_timing(const NetTiming& t, bool markdown = false);

// ---- evaluation (dropnet-test, dropnet-probe) -----------------------------------------------

struct EvalResult {
  int64_t batches = 0, samples = 0;  // samples: batches x batch size, all read
  int64_t counted = 0;               // the samples top-1 / top-5 / the confusion matrix count
  std::vector<std::pair<std::string, double>> outputs;  // every net output, mean over batches
  std::string scores_blob;  // the loss layer's first bottom (top-k source); empty if none
  int64_t classes = 0;
  double loss = std::numeric_limits<double>::quiet_NaN();  // the softmax_loss output
  double top1 = std::numeric_limits<double>::quiet_NaN();  // over all samples, Caffe's tie rule
  double top5 = std::numeric_limits<double>::quiet_NaN();  // NaN when classes < 5
  // Rows: the true class, columns: the predicted one (the first highest score), over the counted
  // samples; empty without a softmax_loss layer or for a per-position loss.
  std::vector<std::vector<int64_t>> confusion;
  std::vector<int64_t> unscored;  // per true class: samples whose scores were not all finite (wrong)
  // Per class: correct / samples of that class (NaN for a class with no sample).
  std::vector<double> per_class_accuracy() const;
  // The mean of the output named `name`, NaN when absent.
  double output(const std::string& name) const;
};

// Runs `batches` forward passes of `net` (a TEST net) at solver iteration `iter`. top-1, top-5 and
// the confusion matrix count the first `count` samples read (0: all): one pass over a test set
// whose last batch is filled by wrapping around counts each sample once. `on_sample`, when given,
// sees each counted sample's scores (its index in reading order, `classes` floats).
using SampleScores = std::function<void(int64_t index, const float* scores, int64_t classes)>;
EvalResult evaluate_net(Net& net, int64_t batches, int64_t iter, uint64_t seed, int64_t count = 0,
                        const SampleScores& on_sample = nullptr);

std::string json_escape(const std::string& s);

}  // namespace dropnet
