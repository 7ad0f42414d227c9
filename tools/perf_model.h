// A performance model of a net's training iteration on an NVIDIA H100 or H200 (dropnet-time
// --model), so that the first GPU session shows at once how far the kernels are from what the
// hardware allows (tools/gpu-check.sh prints it next to the measured times).
//
// Per layer and pass, time = max(compute, memory):
//   compute = FLOPs / (peak(precision) x kAttainable x tile efficiency), for each matrix product
//             the layer runs (Layer::gemm_extents); tile efficiency = the useful part of the tiles
//             the native kernels launch (kernels/tile_plan.h: 64 or 128 square tiles, the K split)
//             x the last wave's fill over the SMs;
//   memory  = bytes / (HBM bandwidth x kAttainableBw): the layer's bottoms and tops (and its
//             parameters), read and written once at the precision's element size (bf16: 2 bytes;
//             fp32 and tf32: 4), forward; twice that backward.
// Layers that do not run (compute skipping at the iteration) cost nothing; an activation fused
// into its producer has no pass of its own; the backward of a GEMM whose input needs no gradient
// (the first conv's data gradient) is not run. A model, not a measurement: the kAttainable
// factors are assumptions (stated in the output), not figures measured here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/precision_math.h"
#include "layers/net.h"

namespace dropnet {

struct GpuSpec {
  std::string name;
  int sms = 0;
  double fp32_tflops = 0, tf32_tflops = 0, bf16_tflops = 0;  // dense peaks
  double hbm_gbps = 0;
};
// "h100" (SXM) or "h200"; an input error naming the choices for anything else.
GpuSpec gpu_spec(const std::string& name);

// Fraction of peak a well-tuned kernel reaches on full tiles, and of the HBM bandwidth.
inline constexpr double kAttainable = 0.75, kAttainableBw = 0.85;

struct ModelPass {
  double ms = 0;
  double flops = 0, bytes = 0;
  double tile_efficiency = 1;  // FLOP-weighted over the pass's matrix products (1 without any)
  bool compute_bound = false;
};
struct ModelLayer {
  std::string name, type;
  ModelPass fwd, bwd;
  bool skipped = false;  // does not run at this iteration
  bool fused = false;    // forward inside its producer
};
struct NetModel {
  std::string gpu, precision;
  double peak_tflops = 0, hbm_gbps = 0;
  int64_t batch = 0, at_iter = 0;
  std::vector<ModelLayer> layers;
  double forward_ms = 0, backward_ms = 0;
  double total_ms() const { return forward_ms + backward_ms; }
  double images_per_s() const { return total_ms() > 0 ? 1000.0 * static_cast<double>(batch) / total_ms() : 0.0; }
};

// The tile efficiency of one matrix product as the native kernels cut it (1 = every tile full,
// every wave full).
double tile_efficiency(const GemmExtent& g, int sms);

NetModel model_net(const Net& net, const GpuSpec& gpu, Precision precision, int64_t at_iter);

// The table: per layer modelled forward / backward ms, what bounds it, the tile efficiency; totals.
// With `measured` (dropnet-time on a GPU: the same net's per-layer ms, in layer order) a measured
// column beside each modelled one and the ratio.
struct MeasuredLayer {
  double forward_ms = 0, backward_ms = 0;
};
std::string format_model(const NetModel& m, const std::vector<MeasuredLayer>* measured = nullptr);

}  // namespace dropnet
