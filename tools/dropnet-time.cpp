// dropnet-time CONFIG [key.path=value ...] [options]   (--help: every option)
// Caffe's `time`: builds the TRAIN net, runs one untimed forward/backward, then times every
// layer's forward and backward (the data layer included) over --iterations, synchronizing the
// device around each layer; no solver update. Prints the per-layer mean ms, the forward, backward
// and total ms per iteration and images/s.
#include <fmt/format.h>
#include <omp.h>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/fileio.h"
#include "data/sources.h"
#include "layers/net.h"
#include "tools/cli_common.h"
#include "tools/perf_model.h"
#include "tools/run_support.h"

using namespace dropnet;

namespace {

// Every write checked (a full disk is an error naming the file, not a truncated report).
void write_json(const std::string& path, const NetTiming& t) {
  std::string out = fmt::format(
      "{{\"net\": \"{}\", \"device\": \"{}\", \"batch\": {}, \"iterations\": {}, \"at_iter\": {},\n",
      json_escape(t.name), json_escape(t.device), t.batch, t.iterations, t.at_iter);
  out += fmt::format(
      " \"forward_ms\": {:.6g}, \"backward_ms\": {:.6g}, \"total_ms\": {:.6g}, \"images_per_s\": {:.6g},\n",
      t.forward_ms, t.backward_ms, t.total_ms(), t.images_per_s());
  out += " \"layers\": [";
  for (size_t i = 0; i < t.layers.size(); ++i) {
    const LayerTiming& l = t.layers[i];
    out += fmt::format("{}\n  {{\"name\": \"{}\", \"type\": \"{}\", \"forward_ms\": {:.6g}, \"backward_ms\": {:.6g}, "
                       "\"flops\": {:.6g}, \"skipped\": {}}}",
                       i ? "," : "", json_escape(l.name), json_escape(l.type), l.forward_ms, l.backward_ms, l.flops,
                       l.skipped);
  }
  out += "]}\n";
  write_file_checked(path, out);
}

int time_main(int argc, char** argv) {
  cli::Parser args("dropnet-time", "dropnet-time CONFIG [key.path=value ...] [options]",
                   "Caffe's `time`: builds the TRAIN net, runs one untimed forward/backward, then times every layer's "
                   "forward and backward (the data layer included) over --iterations, synchronizing the device "
                   "around each layer; no solver update. Prints the per-layer mean ms, the forward, backward and "
                   "total ms per iteration and images/s. --model h100|h200 models the same net on that GPU "
                   "(tools/perf_model.h: FLOPs at the precision's peak and the native kernels' tile efficiency "
                   "against bytes at the HBM bandwidth): without a GPU it reads no data and times nothing; on a "
                   "GPU it prints the measured times beside the modelled ones.",
                   "  CONFIG          the net description (YAML)\n"
                   "  key.path=value  changes a setting of CONFIG");
  int64_t iterations = 50, batch = 0, at_iter = 0, threads = 0;
  std::string device_arg, json, synthetic_shape, model, precision;
  bool markdown = false, synthetic = false, no_skip = false;
  args.option("--iterations", iterations, "N", "timed iterations");
  args.device(device_arg);
  args.option("--batch", batch, "N", "TRAIN batch size (default: 0, as configured)");
  args.option("--at-iter", at_iter, "T", "the solver iteration the layers see (DropIn p)");
  args.threads(threads);
  args.flag("--markdown", markdown, "a GitHub table (for a README)");
  args.option("--json", json, "FILE", "also write the timings as JSON");
  args.flag("--synthetic", synthetic, "synthetic data of the configured shape (no dataset needed)");
  args.option("--synthetic-shape", synthetic_shape, "C,H,W", "the synthetic samples' shape (default: the source's)");
  args.flag("--no-skip", no_skip, "compute every layer whole (no DropIn compute skipping: the cost before it)");
  args.option("--model", model, "h100|h200", "model the net's iteration on that GPU (see above)");
  args.option("--precision", precision, "fp32|tf32|bf16",
              "the precision the model assumes (default: the config's `precision`; the measured run follows the "
              "config: override it with precision=...)");
  std::vector<std::string> pos = args.parse(argc, argv);
  const GpuSpec gpu = model.empty() ? GpuSpec{} : gpu_spec(model);
  Precision model_precision = Precision::FP32;
  if (!precision.empty() && !parse_precision(precision, &model_precision))
    input_error("--precision must be fp32, tf32 or bf16, got '{}'", precision);
  if (model.empty() && !precision.empty()) input_error("--precision goes with --model");
  if (pos.empty()) input_error("missing CONFIG\n{}", args.usage());
  if (iterations <= 0) input_error("--iterations must be > 0, got {}", iterations);
  if (batch < 0) input_error("--batch must be > 0, got {}", batch);
  if (at_iter < 0) input_error("--at-iter must be >= 0, got {}", at_iter);
  std::vector<std::string> overrides(pos.begin() + 1, pos.end());
  for (const auto& o : overrides)
    if (o.find('=') == std::string::npos) input_error("unexpected argument '{}' (overrides are key.path=value)", o);

  cli::set_threads(threads);
  cli::init_logging();
  LoadedConfig cfg = load_config_file(pos[0], overrides);
  if (synthetic || !synthetic_shape.empty()) use_synthetic_data(cfg, synthetic_shape);
  cli::RunSettings run = cli::read_run_settings(cfg);
  if (precision.empty()) model_precision = run.precision;
  const Device dev = parse_device(device_arg.empty() ? run.device : device_arg);
  if (dev.is_cuda()) cuda_set_device(dev.index);
  NetOptions no = cli::net_options(run, dev, Phase::Train, batch);
  no.skip_unused = !no_skip;
  const bool model_only = !model.empty() && !dev.is_cuda();  // nothing to measure here
  no.shapes_only = model_only;
  Net net(cfg, no);
  if (model_only) {
    const NetModel m = model_net(net, gpu, model_precision, at_iter);
    std::fflush(stderr);
    const std::string table = format_model(m);
    std::fwrite(table.data(), 1, table.size(), stdout);
    return 0;
  }
  spdlog::info("dropnet-time: {} on {}, batch {}, {} iterations, {} OpenMP threads ({})", net.name(), dev.str(),
               net.batch_size(), iterations, omp_get_max_threads(), cli::openmp_waiting());
  NetTiming t = time_net(net, iterations, at_iter, run.seed);
  std::fflush(stderr);
  const std::string table = format_timing(t, markdown);
  std::fwrite(table.data(), 1, table.size(), stdout);
  if (!model.empty()) {  // measured beside modelled (tools/gpu-check.sh)
    std::vector<MeasuredLayer> measured;
    for (const LayerTiming& l : t.layers) measured.push_back({l.forward_ms, l.backward_ms});
    const std::string both = format_model(model_net(net, gpu, model_precision, at_iter), &measured);
    std::fwrite(both.data(), 1, both.size(), stdout);
  }
  std::fflush(stdout);
  if (!json.empty()) write_json(json, t);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cli::tune_openmp_waiting(argv);
  return cli::run_main("dropnet-time", [&] { return time_main(argc, argv); });
}
