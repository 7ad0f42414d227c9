#include "tools/perf_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "core/error.h"
#include "kernels/tile_plan.h"

namespace dropnet {

GpuSpec gpu_spec(const std::string& name) {
  // NVIDIA's dense (no sparsity) peaks of the SXM parts; the H200 is an H100 with faster, larger HBM.
  if (name == "h100") return {"H100 SXM", 132, 67.0, 494.7, 989.4, 3350.0};
  if (name == "h200") return {"H200 SXM", 132, 67.0, 494.7, 989.4, 4800.0};
  input_error("--model must be h100 or h200, got '{}'", name);
}

double tile_efficiency(const GemmExtent& g, int sms) {
  if (g.m <= 0 || g.n <= 0 || g.k <= 0 || g.groups <= 0) return 1.0;
  int tile = 64, splits = 1, k_per_split = static_cast<int>(g.k);
  int64_t blocks = 0;
  if (g.conv) {
    // As plan_conv launches the pass: the filter gradient splits its long K.
    tile_plan::Grid grid = tile_plan::make_grid(g.m, g.n, g.k, g.groups, sms);
    if (g.pass == GemmPass::BwdFilter) {
      std::pair<int, int> split;
      std::tie(grid, split) = tile_plan::split_grid(g.m, g.n, g.k, g.groups, sms);
      std::tie(splits, k_per_split) = split;
    }
    tile = grid.tile;
    blocks = int64_t(grid.x) * grid.y * g.groups;
  } else {
    const tile_plan::GemmPlan plan = tile_plan::plan_gemm(g.m, g.n, g.k, sms);
    tile = plan.tile;
    blocks = int64_t(plan.x) * plan.y;
    splits = plan.splits;
    k_per_split = plan.k_per_split;
  }
  const double mt = static_cast<double>((g.m + tile - 1) / tile * tile);
  const double nt = static_cast<double>((g.n + tile - 1) / tile * tile);
  const double kt = static_cast<double>(splits) * std::max(k_per_split, 1);
  const double useful = static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k) /
                        (mt * nt * std::max(kt, static_cast<double>(g.k)));
  // Resident blocks per SM: one 128-tile block, two 64-tile ones (their shared memory and registers).
  const int64_t slots = int64_t(sms) * (tile == 128 ? 1 : 2);
  const int64_t launched = blocks * splits;
  const double waves = static_cast<double>((launched + slots - 1) / slots);
  const double fill = static_cast<double>(launched) / (waves * static_cast<double>(slots));
  return useful * fill;
}

namespace {

double peak_tflops(const GpuSpec& gpu, Precision precision) {
  return precision == Precision::TF32 ? gpu.tf32_tflops
         : precision == Precision::BF16 ? gpu.bf16_tflops
                                        : gpu.fp32_tflops;
}

// Time of one pass: its matrix products at the precision's peak and their tile efficiency,
// against its bytes at the attainable bandwidth.
ModelPass pass_time(const std::vector<GemmExtent>& gemms, double bytes, const GpuSpec& gpu, double peak,
                    double scale) {
  ModelPass p;
  double compute_s = 0, weighted = 0;
  for (const GemmExtent& g : gemms) {
    const double f = 2.0 * static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k) *
                     static_cast<double>(g.groups) * scale;
    const double eff = tile_efficiency(g, gpu.sms);
    compute_s += f / (peak * 1e12 * kAttainable * eff);
    p.flops += f;
    weighted += f * eff;
  }
  p.tile_efficiency = p.flops > 0 ? weighted / p.flops : 1.0;
  p.bytes = bytes * scale;
  const double memory_s = p.bytes / (gpu.hbm_gbps * 1e9 * kAttainableBw);
  p.compute_bound = compute_s > memory_s;
  p.ms = 1e3 * std::max(compute_s, memory_s);
  return p;
}

}  // namespace

NetModel model_net(const Net& net, const GpuSpec& gpu, Precision precision, int64_t at_iter) {
  const double peak = peak_tflops(gpu, precision);
  const double elem = precision == Precision::BF16 ? 2.0 : 4.0;
  NetModel m;
  m.gpu = gpu.name;
  m.precision = precision_name(precision);
  m.peak_tflops = peak;
  m.hbm_gbps = gpu.hbm_gbps;
  m.batch = net.batch_size();
  m.at_iter = at_iter;
  const RunContext ctx{net.phase(), at_iter, 0, 0};
  std::map<const Blob*, int> producer;
  for (int i = 0; i < net.num_layers(); ++i)
    for (const Blob* b : net.tops(i)) producer.emplace(b, i);
  for (int i = 0; i < net.num_layers(); ++i) {
    const Layer& l = net.layer(i);
    ModelLayer ml;
    ml.name = l.name();
    ml.type = l.type();
    ml.skipped = !net.layer_active(i, ctx);
    ml.fused = net.forward_fused(i);
    if (!ml.skipped) {
      double values = 0;
      for (const Blob* b : net.bottoms(i)) values += static_cast<double>(b->value.count());
      if (!ml.fused)
        for (const Blob* b : net.tops(i)) values += static_cast<double>(b->value.count());
      for (const Blob& p : l.params()) values += static_cast<double>(p.value.count());
      // Compute skipping: the part of the output channels computed at this iteration.
      const double full = l.forward_flops();
      const double scale = full > 0 && !net.tops(i).empty() ? l.forward_flops_used(ctx, net.layer_top_use(i, ctx)) / full
                                                             : 1.0;
      std::vector<GemmExtent> fwd, bwd;
      for (const GemmExtent& g : l.gemm_extents()) {
        if (g.pass == GemmPass::Fwd) {
          fwd.push_back(g);
        } else if (g.pass == GemmPass::BwdData) {
          // The input's gradient only where something below learns.
          const auto it = net.bottoms(i).empty() ? producer.end() : producer.find(net.bottoms(i)[0]);
          if (it != producer.end() && net.layer_needs_backward(it->second)) bwd.push_back(g);
        } else {
          bwd.push_back(g);
        }
      }
      if (!ml.fused) ml.fwd = pass_time(fwd, values * elem, gpu, peak, scale);
      if (net.layer_needs_backward(i)) ml.bwd = pass_time(bwd, 2.0 * values * elem, gpu, peak, scale);
    }
    m.forward_ms += ml.fwd.ms;
    m.backward_ms += ml.bwd.ms;
    m.layers.push_back(ml);
  }
  return m;
}

std::string format_model(const NetModel& m, const std::vector<MeasuredLayer>* measured) {
  std::string out = fmt::format(
      "modelled on {} at {} (batch {}, iteration {}): max(FLOPs / ({:.4g} TFLOP/s x {:.2f} x tile efficiency), "
      "bytes / ({:.0f} GB/s x {:.2f})) per pass\n",
      m.gpu, m.precision, m.batch, m.at_iter, m.peak_tflops, kAttainable, m.hbm_gbps, kAttainableBw);
  const bool meas = measured != nullptr && measured->size() == m.layers.size();
  out += fmt::format("{:<16} {:<12} {:>10} {:>10}{} {:>9} {:>5}\n", "layer", "type", "fwd ms", "bwd ms",
                     meas ? fmt::format(" {:>10} {:>10} {:>7}", "meas fwd", "meas bwd", "x model") : "", "bound",
                     "tiles");
  double meas_total = 0;
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const ModelLayer& l = m.layers[i];
    const bool gemm = l.fwd.flops > 0 || l.bwd.flops > 0;
    std::string row = fmt::format("{:<16} {:<12} ", l.name.substr(0, 16), l.type.substr(0, 12));
    if (l.skipped) {
      row += fmt::format("{:>10} {:>10}", "skipped", "skipped");
    } else {
      row += fmt::format("{:>10} {:>10.4f}", l.fused ? "fused" : fmt::format("{:.4f}", l.fwd.ms), l.bwd.ms);
    }
    if (meas) {
      const MeasuredLayer& x = (*measured)[i];
      const double model_ms = l.fwd.ms + l.bwd.ms, meas_ms = x.forward_ms + x.backward_ms;
      meas_total += meas_ms;
      row += fmt::format(" {:>10.4f} {:>10.4f} {:>7}", x.forward_ms, x.backward_ms,
                         model_ms > 0 ? fmt::format("{:.2f}", meas_ms / model_ms) : "-");
    }
    const bool compute = l.fwd.compute_bound || l.bwd.compute_bound;
    row += fmt::format(" {:>9} {:>5}", l.skipped ? "" : compute ? "compute" : "memory",
                       gemm && !l.skipped ? fmt::format("{:.2f}", std::min(l.fwd.tile_efficiency, l.bwd.tile_efficiency))
                                          : "");
    out += row + "\n";
  }
  out += fmt::format("modelled: forward {:.3f} ms, backward {:.3f} ms, total {:.3f} ms per iteration, {:.0f} images/s\n",
                     m.forward_ms, m.backward_ms, m.total_ms(), m.images_per_s());
  if (meas)
    out += fmt::format("measured: total {:.3f} ms per iteration ({:.2f}x the model)\n", meas_total,
                       m.total_ms() > 0 ? meas_total / m.total_ms() : 0.0);
  return out;
}

}  // namespace dropnet
