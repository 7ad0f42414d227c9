// dropnet-dump CONFIG --input x.npy [--labels y.npy] --out DIR [key.path=value ...] [options]   (--help: every option)
// Runs one forward and backward pass of the net on the given input (the config's data layer is
// fed from the .npy files instead of its data section) and writes every blob's value and
// gradient and every parameter and its gradient as .npy: DIR/<blob>.npy, DIR/<blob>.grad.npy,
// DIR/param.<layer>.<name>.npy, DIR/param.<layer>.<name>.grad.npy. For conformance checks
// against PyTorch (tests/torch_conformance.py).
#include <filesystem>

#include "core/error.h"
#include "core/npy.h"
#include "layers/net.h"
#include "optim/snapshot.h"
#include "tools/cli_common.h"

using namespace dropnet;

namespace {

Tensor g_input, g_labels;

// Serves the same input batch every time.
class NpySource : public BatchSource {
 public:
  Shape sample_shape() const override {
    std::vector<int64_t> d = g_input.shape().dims();
    d.erase(d.begin());
    return Shape(d);
  }
  int64_t batch_size() const override { return g_input.shape()[0]; }
  int64_t num_samples() const override { return batch_size(); }
  void next_batch(float* data, float* labels) override {
    std::copy(g_input.data(), g_input.data() + g_input.count(), data);
    if (!g_labels.empty()) std::copy(g_labels.data(), g_labels.data() + g_labels.count(), labels);
    else std::fill(labels, labels + batch_size(), 0.f);
  }
  std::vector<int64_t> state() const override { return {}; }
  void restore(const std::vector<int64_t>&) override {}
};

std::unique_ptr<BatchSource> npy_source(SourceRequest&) { return std::make_unique<NpySource>(); }

std::string safe(const std::string& s) {
  std::string o = s;
  for (char& c : o)
    if (c == '/' || c == '\\') c = '_';
  return o;
}

int dump_main(int argc, char** argv) {
  cli::Parser args("dropnet-dump", "dropnet-dump CONFIG --input x.npy [--labels y.npy] --out DIR [key.path=value ...] [options]",
                   "Runs one forward and backward pass of the net on the given input (instead of the config's data) "
                   "and writes every blob's value and gradient and every parameter and its gradient as .npy: "
                   "DIR/<blob>.npy, DIR/<blob>.grad.npy, DIR/param.<layer>.<name>.npy, "
                   "DIR/param.<layer>.<name>.grad.npy (for conformance checks against PyTorch).",
                   "  CONFIG          the net description (YAML)\n"
                   "  key.path=value  changes a setting of CONFIG");
  std::string input, labels, out, phase = "train", device = "cpu", weights;
  int64_t iter = 0, threads = 0;
  args.option("--input", input, "x.npy", "the input batch (N, ...), float32 (required)");
  args.option("--labels", labels, "y.npy", "the labels, one per sample (default: zeros)");
  args.option("--out", out, "DIR", "where the .npy files go (required)");
  args.option("--iter", iter, "T", "the training iteration the layers see (DropIn schedules)");
  args.option("--phase", phase, "train|test", "which net of the config");
  args.option("--device", device, "D", "cpu, cuda, cuda:N");
  args.option("--weights", weights, "FILE",
              "the parameters from a snapshot (every one of the net's, by name) instead of the fillers");
  args.threads(threads);
  std::vector<std::string> pos = args.parse(argc, argv);
  cli::set_threads(threads);
  if (pos.empty() || input.empty() || out.empty())
    input_error("{} missing\n{}", pos.empty() ? "CONFIG" : input.empty() ? "--input" : "--out", args.usage());
  if (phase != "train" && phase != "test") input_error("--phase must be train or test, got '{}'", phase);
  g_input = read_npy(input);
  if (g_input.shape().ndim() < 2) input_error("{}: expected a batch (N, ...), got {}", input, g_input.shape().str());
  if (!labels.empty()) {
    g_labels = read_npy(labels);
    if (g_labels.count() != g_input.shape()[0])
      input_error("{}: {} labels for a batch of {}", labels, g_labels.count(), g_input.shape()[0]);
  }
  LoadedConfig cfg = load_config_file(pos[0], std::vector<std::string>(pos.begin() + 1, pos.end()));
  cli::RunSettings run = cli::read_run_settings(cfg);
  // A TRAIN net so that backward exists (--phase test sets the context), fed from the .npy files.
  NetOptions no = cli::net_options(run, parse_device(device), Phase::Train);
  no.source_factory = npy_source;
  no.force_backward = true;
  no.fuse_activations = false;  // every blob as its own layer computes it (a conv's output before its ReLU)
  no.skip_unused = false;       // and whole, even where no later layer reads it
  Net net(cfg, no);
  if (!weights.empty()) load_weights(net, weights);
  std::filesystem::create_directories(out);
  for (const ParamRef& r : net.params()) {
    const Blob& b = net.layer(r.layer).params()[r.index];
    write_npy(out + "/param." + safe(r.name) + ".npy", b.value);
  }
  RunContext ctx{phase == "train" ? Phase::Train : Phase::Test, iter, run.seed, static_cast<uint32_t>(iter)};
  net.zero_param_grads();
  net.forward(ctx);
  net.backward(ctx);
  for (const auto& b : net.blobs()) {
    write_npy(out + "/" + safe(b->name) + ".npy", b->value);
    if (!b->grad.empty()) write_npy(out + "/" + safe(b->name) + ".grad.npy", b->grad);
  }
  for (const ParamRef& r : net.params()) {
    const Blob& b = net.layer(r.layer).params()[r.index];
    write_npy(out + "/param." + safe(r.name) + ".grad.npy", b.grad);
  }
  std::printf("wrote %zu blobs and %zu parameters to %s\n", net.blobs().size(), net.params().size(), out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cli::tune_openmp_waiting(argv);
  return cli::run_main("dropnet-dump", [&] { return dump_main(argc, argv); });
}
