// dropnet-test RUN_DIR|SNAPSHOT [key.path=value ...] [options]
// dropnet-test CONFIG --weights FILE [key.path=value ...] [--iterations N] [--device D] [--batch N]
//               [--iter T] [--threads N] [--json FILE]
// Evaluates a weights snapshot on the TEST net, by default over exactly one pass of the TEST set
// (the last batch partial: its wrapped-around tail is not counted): every net output (loss,
// accuracy layers) averaged over the batches, plus top-1 / top-5, per-class accuracy and the
// confusion matrix computed from the loss layer's score input (Caffe's accuracy rule), so nets
// without accuracy layers are covered too. DropIn layers see the
// snapshot's iteration (from the weights file; --iter overrides), as they did in training.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/fileio.h"
#include "core/safetensors.h"
#include "layers/net.h"
#include "optim/snapshot.h"
#include "optim/solver.h"
#include "tools/cli_common.h"
#include "tools/run_support.h"

using namespace dropnet;

namespace {

const char* kUsage =
    "usage: dropnet-test RUN_DIR|SNAPSHOT [key.path=value ...] [--iterations N] [--device D]\n"
    "                    [--batch N] [--iter T] [--threads N] [--json FILE]\n"
    "       dropnet-test CONFIG --weights FILE [key.path=value ...] [options]\n"
    "  RUN_DIR|SNAPSHOT  a run directory (its latest snapshot), a .safetensors or .solverstate file: evaluated\n"
    "                  with the config stored in it (key.path=value changes a setting, e.g. data.test.images=...)\n"
    "  --weights FILE  with CONFIG: its net must be the one the weights were trained with, when they say\n"
    "  --iterations N  TEST batches (default: one pass over the TEST set, the last batch partial)\n"
    "  --iter T        the training iteration the layers see (default: the snapshot's)\n"
    "  --json FILE     also write the results as JSON";

std::string num(double v) { return std::isfinite(v) ? fmt::format("{:.9g}", v) : "null"; }

int test_main(int argc, char** argv) {
  cli::Args args(argc, argv);
  const std::string weights = args.take("weights");
  int64_t iterations = args.take_int("iterations", 0);
  const std::string device_arg = args.take("device");
  const int64_t batch = args.take_int("batch", 0);
  int64_t iter = args.take_int("iter", -1);
  const int64_t threads = args.take_int("threads", 0);
  const std::string json = args.take("json");
  std::vector<std::string> pos = args.positional(kUsage);
  if (pos.empty()) input_error("missing RUN_DIR, SNAPSHOT or CONFIG\n{}", kUsage);
  // A run directory or snapshot file carries its config; a CONFIG needs --weights.
  std::error_code ec;
  const bool snapshot_arg = std::filesystem::is_directory(pos[0], ec) || pos[0].ends_with(".safetensors") ||
                            pos[0].ends_with(".solverstate");
  if (snapshot_arg && !weights.empty())
    input_error("'{}' is a snapshot, and --weights names another ('{}'): give one of them (a snapshot carries its "
                "config; --weights goes with a CONFIG file)",
                pos[0], weights);
  if (!snapshot_arg && weights.empty())
    input_error("'{}' is not a run directory or snapshot: a CONFIG needs --weights FILE\n{}", pos[0], kUsage);
  if (iterations < 0) input_error("--iterations must be > 0, got {}", iterations);
  if (batch < 0) input_error("--batch must be > 0, got {}", batch);
  std::vector<std::string> overrides(pos.begin() + 1, pos.end());
  for (const auto& o : overrides)
    if (o.find('=') == std::string::npos) input_error("unexpected argument '{}' (overrides are key.path=value)", o);

  cli::set_threads(threads);
  cli::init_logging();
  const SnapshotInfo snap = read_snapshot_info(snapshot_arg ? pos[0] : weights);
  const std::string weights_path = snap.weights_path;
  LoadedConfig cfg = evaluation_config(snap, snapshot_arg ? "" : pos[0], overrides);
  cli::RunSettings run = cli::read_run_settings(cfg);
  if (iter < 0) iter = snap.iteration;
  const Device dev = parse_device(device_arg.empty() ? run.device : device_arg);
  if (dev.is_cuda()) cuda_set_device(dev.index);
  Net net(cfg, cli::net_options(run, dev, Phase::Test, batch));
  load_weights(net, weights_path);
  // The TEST set's size: the first data layer's source (it sets the pace).
  const int64_t set_size = net.sources().empty() ? 0 : net.sources().front()->num_samples();
  const bool one_pass = iterations == 0;
  if (one_pass) {
    if (set_size <= 0) input_error("the TEST net has no data source to count: give --iterations N");
    iterations = (set_size + net.batch_size() - 1) / net.batch_size();
  }
  EvalResult r = evaluate_net(net, iterations, iter, run.seed, one_pass ? set_size : 0);

  std::fflush(stderr);
  if (one_pass)
    std::printf("%s: one pass over the %lld TEST samples (%lld batches of %lld%s), weights %s (iteration %lld)\n",
                net.name().c_str(), static_cast<long long>(set_size), static_cast<long long>(r.batches),
                static_cast<long long>(net.batch_size()),
                r.samples > set_size ? fmt::format(", the last one {} samples", set_size % net.batch_size()).c_str()
                                     : "",
                weights_path.c_str(), static_cast<long long>(iter));
  else
    std::printf("%s: %lld batches x %lld = %lld TEST samples%s, weights %s (iteration %lld)\n", net.name().c_str(),
                static_cast<long long>(r.batches), static_cast<long long>(net.batch_size()),
                static_cast<long long>(r.samples),
                set_size > 0 && r.samples > set_size
                    ? fmt::format(" (the set has {}: {} were read twice or more)", set_size, r.samples - set_size).c_str()
                    : set_size > r.samples ? fmt::format(" of the {} in the set", set_size).c_str() : "",
                weights_path.c_str(), static_cast<long long>(iter));
  if (one_pass && r.samples > set_size)
    std::printf("  (top-1, top-5 and the confusion matrix count each sample once; the net's own outputs below "
                "average whole batches)\n");
  for (const auto& kv : r.outputs) std::printf("  %s = %.6g\n", kv.first.c_str(), kv.second);
  if (!r.scores_blob.empty()) {
    std::printf("  top-1 = %.6g", r.top1);
    if (std::isfinite(r.top5)) std::printf(", top-5 = %.6g", r.top5);
    std::printf("  (from '%s', %lld classes, %lld samples)\n", r.scores_blob.c_str(), static_cast<long long>(r.classes),
                static_cast<long long>(r.counted));
    if (!r.confusion.empty() && r.classes <= 20) {
      const std::vector<double> pc = r.per_class_accuracy();
      std::printf("  per-class accuracy:");
      for (size_t c = 0; c < pc.size(); ++c) std::printf(" %zu:%.4g", c, pc[c]);
      std::printf("\n  confusion matrix (rows: true class, columns: predicted):\n");
      for (size_t t = 0; t < r.confusion.size(); ++t) {
        std::printf("  %4zu |", t);
        for (int64_t v : r.confusion[t]) std::printf(" %6lld", static_cast<long long>(v));
        if (r.unscored[t] > 0) std::printf("  (+%lld with non-finite scores)", static_cast<long long>(r.unscored[t]));
        std::printf("\n");
      }
    } else if (!r.confusion.empty()) {
      std::printf("  (%lld classes: per-class accuracy and the confusion matrix in --json only)\n",
                  static_cast<long long>(r.classes));
    }
  } else {
    std::printf("  (no softmax_loss layer: top-1/top-5 not computed)\n");
  }
  std::fflush(stdout);
  if (!json.empty()) {
    std::string f;
    f += fmt::format("{{\"net\": \"{}\", \"weights\": \"{}\", \"iteration\": {}, \"batches\": {}, \"samples\": {}",
                     json_escape(net.name()), json_escape(weights_path), iter, r.batches, r.samples);
    f += fmt::format(", \"loss\": {}, \"top1\": {}, \"top5\": {}, \"outputs\": {{", num(r.loss), num(r.top1),
                     num(r.top5));
    for (size_t i = 0; i < r.outputs.size(); ++i)
      f += fmt::format("{}\"{}\": {}", i ? ", " : "", json_escape(r.outputs[i].first), num(r.outputs[i].second));
    f += fmt::format("}}, \"counted\": {}", r.counted);
    if (!r.confusion.empty()) {
      const std::vector<double> pc = r.per_class_accuracy();
      f += ", \"per_class_accuracy\": [";
      for (size_t c = 0; c < pc.size(); ++c) f += fmt::format("{}{}", c ? ", " : "", num(pc[c]));
      f += "], \"confusion\": [";
      for (size_t t = 0; t < r.confusion.size(); ++t) {
        f += t ? ", [" : "[";
        for (size_t c = 0; c < r.confusion[t].size(); ++c) f += fmt::format("{}{}", c ? ", " : "", r.confusion[t][c]);
        f += "]";
      }
      f += "]";
    }
    f += "}\n";
    write_file_checked(json, f);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cli::tune_openmp_waiting(argv);
  return cli::run_main("dropnet-test", [&] { return test_main(argc, argv); });
}
