// dropnet-scale [CONFIG ...] [options]   (--help: every option)
// Models data-parallel training (DESIGN.md §7) on H100 nodes: time per iteration and weak-scaling
// efficiency (per-GPU batch fixed) for 1..P GPUs, G per node, from per-layer compute times and the
// gradient bucket schedule dist/ uses, with an alpha-beta model of ring and tree all-reduce.
// Without CONFIG: configs/alexnet13.yaml and configs/vgg16.yaml.
//
// Compute, per layer, per GPU (estimates unless --layer-times gives measured ones):
//   forward  = max(FLOPs / T, bytes / B)       FLOPs from the layer (at the config's batch),
//   backward = 2 x forward for conv/fc           bytes = bottoms + tops (+ parameters), float32;
//              (data and weight gradients),      backward of the others moves twice the bytes.
//   T = 40 TFLOP/s: ~60% of the H100 SXM's 67 TFLOP/s FP32 peak (NVIDIA H100 Tensor Core GPU
//       datasheet; dropnet's kernels are FP32, no TF32), B = 2345 GB/s: 70% of its 3.35 TB/s HBM3.
//   update (SGD + momentum) reads and writes 5 floats per parameter at B.
// Measured table (--layer-times): CSV lines `layer,forward_ms,backward_ms` at the config's batch
// (e.g. from a GPU run); listed layers replace the estimates.
//
// Buckets: the parameters' gradients in reverse layer order; a bucket is all-reduced as soon as
// backward has produced bucket_mb of them (dist/communicator.cpp: the same rule); buckets run one
// after another on the communication stream. Iteration = forward + max(backward, last bucket
// done) + update; efficiency = iteration(1 GPU) / iteration(P GPUs).
//
// All-reduce of S bytes over P = N x G' GPUs (G' = min(P, G) per node), the model of NCCL's
// tuner (NVIDIA/nccl src/graph/tuning.cc: baseLat / hwLat tables, Simple protocol):
//   bus bandwidth Bb = NVLink (N = 1) or min(NVLink, G' x IB) (N > 1: one ring/tree channel per
//     NIC, each GPU has its own): NVLink 4 on H100 SXM = 900 GB/s bidirectional = 450 GB/s per
//     direction (H100 datasheet); InfiniBand NDR 400 Gb/s = 50 GB/s per GPU (ConnectX-7, one per
//     GPU as in DGX H100). Both scaled by --link-efficiency (default 1: nominal rates).
//   ring: 8.4 us + (2(P-1) - 2(N-1)) x 3.4 us (NVLink step) + 2(N-1) x 9.6 us (network step)
//         + 2 (P-1)/P x S / Bb
//   tree: 2 ((G'-1) x 28 us + log2(N) x 50 us) (per-hop latency of a pipelined 256 KB chunk)
//         + S / (0.5 Bb)   (reduce up, broadcast down: NCCL's algorithm bandwidth Bb / 2)
//   best: the faster of the two for each bucket, as NCCL's tuner picks.
// Not modelled: compute slowed by communication kernels sharing SMs and HBM, stragglers, the data
// pipeline (assumed hidden by prefetching), SHARP/NVLS in-network reduction.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/batch_source.h"
#include "core/config.h"
#include "data/source_kinds.h"
#include "layers/layer.h"
#include "layers/net.h"
#include "tools/cli_common.h"

using namespace dropnet;

namespace {

struct Hardware {
  double tflops = 40.0, hbm_gbps = 2345.0;    // per GPU, achieved (estimates, see the header)
  double nvlink_gbps = 450.0, ib_gbps = 50.0;  // per GPU, per direction
  double link_efficiency = 1.0;
  int gpus_per_node = 8;
};

// NCCL tuning model, Simple protocol (src/graph/tuning.cc), microseconds.
constexpr double kRingBaseUs = 8.4, kRingNvlStepUs = 3.4, kRingNetStepUs = 9.6;
constexpr double kTreeNvlHopUs = 28.0, kTreeNetHopUs = 50.0;

struct LayerCost {
  std::string name, type;
  double fwd_s = 0, bwd_s = 0;
  int64_t params = 0;  // floats
};

struct NetModel {
  std::string name, source;
  int64_t batch = 0;
  double fwd_gflops_per_image = 0;
  int64_t params = 0;
  std::vector<LayerCost> layers;
  double update_s = 0;
};

// A data source that only knows its sample shape: the model needs shapes, not pixels.
class ShapeSource : public BatchSource {
 public:
  explicit ShapeSource(Shape s) : s_(s) {}
  Shape sample_shape() const override { return s_; }
  int64_t batch_size() const override { return 1; }
  int64_t num_samples() const override { return 1; }
  int num_classes() const override { return 1000; }
  void next_batch(float* data, float* labels) override {
    std::fill(data, data + s_.count(), 0.f);
    labels[0] = 0;
  }
  std::vector<int64_t> state() const override { return {}; }
  void restore(const std::vector<int64_t>&) override {}

 private:
  Shape s_;
};

int64_t g_config_batch = 0;

std::unique_ptr<BatchSource> shape_source(SourceRequest& req) {
  ConfigNode& c = req.section;
  g_config_batch = c.get_positive_int("batch_size");
  const std::string kind = c.get_string("source", "");
  // The shape the kind declares in its keys (data/source_kinds.h); H = W = 0 or nothing declared:
  // the crop decides (3 channels where the kind does not say).
  const data::SourceKind* k = data::find_source_kind(kind);
  std::vector<int64_t> s = k != nullptr && k->declared_shape != nullptr ? k->declared_shape(c.raw())
                                                                       : std::vector<int64_t>{};
  if (s.size() != 3) s = {3, 0, 0};
  const int64_t crop = c.get_int("crop", 0);
  if (crop > 0) s[1] = s[2] = crop;
  if (s[1] <= 0 || s[2] <= 0)
    c.fail("crop", fmt::format("the model needs a fixed sample size, which this '{}' source does not declare: give crop",
                               kind));
  const int64_t ch = s[0], h = s[1], w = s[2];
  return std::make_unique<ShapeSource>(Shape({ch, h, w}));
}

NetModel model_from_config(const std::string& path, int64_t batch, const Hardware& hw) {
  LoadedConfig cfg = load_config_file(path);
  NetOptions no;
  no.phase = Phase::Train;
  no.source_factory = shape_source;
  g_config_batch = 0;
  Net net(cfg, no);  // per sample: batch 1 (the source ignores batch_size), scaled below
  NetModel m;
  m.name = net.name();
  m.source = path;
  m.batch = batch > 0 ? batch : g_config_batch;
  if (m.batch <= 0) input_error("{}: no data.train.batch_size; give --batch", path);
  const double b = static_cast<double>(m.batch);
  std::map<int, int64_t> layer_params;
  for (const ParamRef& r : net.params()) layer_params[r.layer] += r.count;
  for (int i = 0; i < net.num_layers(); ++i) {
    const Layer& l = net.layer(i);
    LayerCost c;
    c.name = l.name();
    c.type = l.type();
    c.params = layer_params.count(i) ? layer_params[i] : 0;
    m.params += c.params;
    if (c.type == "data") {
      m.layers.push_back(c);  // fed by prefetching threads: off the critical path
      continue;
    }
    double values = 0;
    for (const Blob* x : net.bottoms(i)) values += static_cast<double>(x->shape().count()) * b;
    for (const Blob* x : net.tops(i)) values += static_cast<double>(x->shape().count()) * b;
    const double bytes = 4.0 * (values + static_cast<double>(c.params));
    const double flops = l.forward_flops() * b;
    m.fwd_gflops_per_image += l.forward_flops() * 1e-9;
    const double flop_s = flops / (hw.tflops * 1e12), byte_s = bytes / (hw.hbm_gbps * 1e9);
    c.fwd_s = std::max(flop_s, byte_s);
    c.bwd_s = c.params > 0 ? std::max(2 * flop_s, 2 * byte_s) : std::max(flop_s, 2 * byte_s);
    m.layers.push_back(c);
  }
  m.update_s = 5.0 * 4.0 * static_cast<double>(m.params) / (hw.hbm_gbps * 1e9);
  return m;
}

// CSV `layer,forward_ms,backward_ms` (a header line and # comments are skipped).
void apply_layer_times(NetModel& m, const std::string& path) {
  std::ifstream in(path);
  if (!in) input_error("--layer-times: cannot open '{}'", path);
  std::string line;
  int lineno = 0, used = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    std::stringstream ss(line);
    std::string name, f, bw;
    std::getline(ss, name, ',');
    std::getline(ss, f, ',');
    std::getline(ss, bw, ',');
    double fm = 0, bm = 0;
    try {
      fm = std::stod(f);
      bm = std::stod(bw);
    } catch (const std::exception&) {
      if (lineno == 1) continue;  // header
      input_error("{}:{}: expected layer,forward_ms,backward_ms, got '{}'", path, lineno, line);
    }
    auto it = std::find_if(m.layers.begin(), m.layers.end(), [&](const LayerCost& c) { return c.name == name; });
    if (it == m.layers.end()) continue;  // a table may cover several nets
    it->fwd_s = fm * 1e-3;
    it->bwd_s = bm * 1e-3;
    ++used;
  }
  if (used == 0) input_error("{}: no line names a layer of {}", path, m.name);
}

struct Bucket {
  double ready_s;  // after the start of backward
  int64_t bytes;
  std::string first, last;
};

std::vector<Bucket> bucket_schedule(const NetModel& m, double bucket_mb) {
  const auto cap = static_cast<int64_t>(bucket_mb * 1024 * 1024);
  std::vector<Bucket> out;
  double t = 0;
  Bucket cur{0, 0, "", ""};
  for (size_t k = m.layers.size(); k-- > 0;) {
    const LayerCost& c = m.layers[k];
    t += c.bwd_s;
    if (c.params == 0) continue;
    if (cur.first.empty()) cur.first = c.name;
    cur.last = c.name;
    cur.bytes += 4 * c.params;
    if (cur.bytes >= cap) {
      cur.ready_s = t;
      out.push_back(cur);
      cur = Bucket{0, 0, "", ""};
    }
  }
  if (cur.bytes > 0) {
    cur.ready_s = t;
    out.push_back(cur);
  }
  return out;
}

enum class Algo { Ring, Tree, Best };

double allreduce_s(int64_t bytes, int p, const Hardware& hw, Algo algo) {
  if (p <= 1) return 0.0;
  const int g = std::min(p, hw.gpus_per_node);
  const int nodes = (p + hw.gpus_per_node - 1) / hw.gpus_per_node;
  const double bus = (nodes == 1 ? hw.nvlink_gbps : std::min(hw.nvlink_gbps, g * hw.ib_gbps)) * hw.link_efficiency * 1e9;
  const double s = static_cast<double>(bytes);
  const int steps = 2 * (p - 1), net_steps = 2 * (nodes - 1);
  const double ring = (kRingBaseUs + (steps - net_steps) * kRingNvlStepUs + net_steps * kRingNetStepUs) * 1e-6 +
                      2.0 * (p - 1) / p * s / bus;
  const double tree = 2.0 * ((g - 1) * kTreeNvlHopUs + std::log2(static_cast<double>(nodes)) * kTreeNetHopUs) * 1e-6 +
                      s / (0.5 * bus);
  return algo == Algo::Ring ? ring : algo == Algo::Tree ? tree : std::min(ring, tree);
}

struct Prediction {
  double iter_s, comm_s, exposed_s;
};

Prediction predict(const NetModel& m, const std::vector<Bucket>& buckets, int p, const Hardware& hw, Algo algo) {
  double fwd = 0, bwd = 0;
  for (const LayerCost& c : m.layers) fwd += c.fwd_s, bwd += c.bwd_s;
  double end = 0, comm = 0;
  for (const Bucket& b : buckets) {
    const double t = allreduce_s(b.bytes, p, hw, algo);
    end = std::max(end, b.ready_s) + t;
    comm += t;
  }
  const double tail = std::max(bwd, end);
  return {fwd + tail + m.update_s, comm, tail - bwd};
}

void report(const NetModel& m, double bucket_mb, int max_gpus, const Hardware& hw, bool show_buckets) {
  const std::vector<Bucket> buckets = bucket_schedule(m, bucket_mb);
  double fwd = 0, bwd = 0;
  for (const LayerCost& c : m.layers) fwd += c.fwd_s, bwd += c.bwd_s;
  std::printf("\n%s (%s): %.2fM parameters (%.0f MB of gradients), %.2f GFLOP forward per image, batch %lld per "
              "GPU\n",
              m.name.c_str(), m.source.c_str(), static_cast<double>(m.params) * 1e-6,
              static_cast<double>(m.params) * 4 / (1 << 20), m.fwd_gflops_per_image, static_cast<long long>(m.batch));
  std::printf("  one GPU: forward %.3g ms, backward %.3g ms, update %.3g ms; %zu bucket%s of >= %g MB\n", fwd * 1e3,
              bwd * 1e3, m.update_s * 1e3, buckets.size(), buckets.size() == 1 ? "" : "s", bucket_mb);
  if (show_buckets)
    for (size_t k = 0; k < buckets.size(); ++k)
      std::printf("    bucket %zu: %s..%s, %.1f MB, ready %.1f ms into backward\n", k, buckets[k].first.c_str(),
                  buckets[k].last.c_str(), static_cast<double>(buckets[k].bytes) / (1 << 20), buckets[k].ready_s * 1e3);
  const Prediction one = predict(m, buckets, 1, hw, Algo::Best);
  std::printf("  %5s %5s | %-27s | %-27s | %-24s | %s\n", "GPUs", "nodes", "ring: iter ms  exposed  eff", "tree: iter ms  exposed  eff",
              "best: iter ms    img/s", "eff, no overlap");
  std::map<int, double> eff_best;
  for (int p = 1; p <= max_gpus; p *= 2) {
    const Prediction r = predict(m, buckets, p, hw, Algo::Ring), t = predict(m, buckets, p, hw, Algo::Tree),
                     b = predict(m, buckets, p, hw, Algo::Best);
    const double no_overlap = one.iter_s / (one.iter_s + b.comm_s);
    eff_best[p] = one.iter_s / b.iter_s;
    std::printf("  %5d %5d | %9.1f %8.2f %6.1f%% | %9.1f %8.2f %6.1f%% | %9.1f %12.0f | %6.1f%%\n", p,
                (p + hw.gpus_per_node - 1) / hw.gpus_per_node, r.iter_s * 1e3, r.exposed_s * 1e3,
                100 * one.iter_s / r.iter_s, t.iter_s * 1e3, t.exposed_s * 1e3, 100 * one.iter_s / t.iter_s,
                b.iter_s * 1e3, static_cast<double>(m.batch) * p / b.iter_s, 100 * no_overlap);
  }
  std::string summary;
  for (int p : {8, 64, 512})
    if (eff_best.count(p)) summary += fmt::format("{}{} GPUs {:.1f}%", summary.empty() ? "" : ", ", p, 100 * eff_best[p]);
  std::printf("  modelled weak-scaling efficiency (best algorithm, overlapped buckets): %s\n", summary.c_str());
}

int scale_main(int argc, char** argv) {
  cli::Parser args("dropnet-scale", "dropnet-scale [CONFIG ...] [options]",
                   "Models data-parallel training of each net on H100 nodes: per-iteration compute from the layers' "
                   "FLOPs and bytes (or measured --layer-times), gradient all-reduce in buckets (ring and tree, "
                   "NCCL's cost model), overlap with the backward pass; prints the weak-scaling table up to "
                   "--max-gpus.",
                   "  CONFIG  net descriptions (default: configs/alexnet13.yaml and configs/vgg16.yaml)");
  Hardware hw;
  int64_t batch = 0, gpus_per_node = hw.gpus_per_node, max_gpus = 512;
  double bucket_mb = 25.0;
  std::string times;
  bool show_buckets = false;
  args.option("--batch", batch, "N", "per-GPU batch (default: 0, as configured)");
  args.option("--bucket-mb", bucket_mb, "MB", "gradient bucket size");
  args.option("--gpus-per-node", gpus_per_node, "G", "GPUs per node (NVLink inside, InfiniBand between)");
  args.option("--max-gpus", max_gpus, "P", "the largest GPU count in the table");
  args.option("--layer-times", times, "CSV", "measured per-layer times (dropnet-time --json's CSV form) for compute");
  args.option("--tflops", hw.tflops, "T", "achieved FP32 TFLOP/s per GPU");
  args.option("--hbm-gbps", hw.hbm_gbps, "B", "achieved HBM GB/s per GPU");
  args.option("--nvlink-gbps", hw.nvlink_gbps, "B", "NVLink GB/s per GPU per direction");
  args.option("--ib-gbps", hw.ib_gbps, "B", "InfiniBand GB/s per GPU per direction");
  args.option("--link-efficiency", hw.link_efficiency, "E", "fraction of the link bandwidths reached");
  args.flag("--buckets", show_buckets, "print the bucket plan");
  std::vector<std::string> configs = args.parse(argc, argv);
  for (const auto& [name, v] : {std::pair<const char*, double>{"--bucket-mb", bucket_mb}, {"--tflops", hw.tflops},
                                {"--hbm-gbps", hw.hbm_gbps}, {"--nvlink-gbps", hw.nvlink_gbps},
                                {"--ib-gbps", hw.ib_gbps}, {"--link-efficiency", hw.link_efficiency}})
    if (!(v > 0) || !std::isfinite(v)) input_error("option {}: expected a number > 0, got {:g}", name, v);
  if (gpus_per_node < 1 || gpus_per_node > 1024) input_error("--gpus-per-node must be in [1, 1024]");
  hw.gpus_per_node = static_cast<int>(gpus_per_node);
  if (batch < 0) input_error("--batch must be > 0");
  if (max_gpus < 1 || max_gpus > (1 << 20)) input_error("--max-gpus must be in [1, 2^20]");
  if (configs.empty()) {
    const char* src = std::getenv("DROPNET_SOURCE_DIR");
    const std::string dir = std::string(src ? src : DROPNET_SOURCE_DIR) + "/configs/";
    configs = {dir + "alexnet13.yaml", dir + "vgg16.yaml"};
  }
  cli::init_logging(0);
  spdlog::set_level(spdlog::level::warn);  // the nets' construction chatter
  std::printf("dropnet-scale: H100 SXM model - %.0f TFLOP/s FP32 achieved, %.0f GB/s HBM, NVLink %.0f GB/s and IB "
              "%.0f GB/s per GPU per direction (x %.2f), %d GPUs per node, bucket_mb %g\n",
              hw.tflops, hw.hbm_gbps, hw.nvlink_gbps, hw.ib_gbps, hw.link_efficiency, hw.gpus_per_node, bucket_mb);
  for (const std::string& c : configs) {
    NetModel m = model_from_config(c, batch, hw);
    if (!times.empty()) apply_layer_times(m, times);
    report(m, bucket_mb, static_cast<int>(max_gpus), hw, show_buckets);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cli::tune_openmp_waiting(argv);
  return cli::run_main("dropnet-scale", [&] { return scale_main(argc, argv); });
}
