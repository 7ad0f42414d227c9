// Resize: (N, C, H, W) -> (N, out_c, out_h, out_w), no parameters (DESIGN.md §4 "Resize").
//
// Spatial methods follow PyTorch (checked against it by tests/unit_resize.cpp):
// - Nearest  = F.interpolate(mode='nearest'): src = min(floor(dst * s), in - 1) with
//   s = float(in) / float(out), evaluated in float exactly as PyTorch does (this differs from the
//   integer floor(dst * in / out) for some sizes, e.g. in 116 -> out 108).
// - Bilinear = F.interpolate(mode='bilinear', align_corners=False): half-pixel centres,
//   src = max(s * (dst + 0.5) - 0.5, 0), taps floor(src) and floor(src) + 1 (clamped to in - 1),
//   with PyTorch's CPU precision (float scale, double source coordinate, float weights).
// - Area     = F.adaptive_avg_pool2d: window [floor(o * in / out), ceil((o + 1) * in / out)),
//   the mean of the window (sum / kh / kw).
// Channels (applied before the spatial resampling; the two commute, both being linear maps on
// different axes):
// - Tile:    output channel k reads input channel k mod C (truncates when shrinking).
// - Pad:     output channel k reads input channel k for k < C, zeros beyond.
// - Average: when shrinking (out_c < C), output channel k is the mean of the input channels c'
//   with c' mod out_c == k; when out_c >= C there is nothing to average and it behaves like Tile.
// Backward is the exact adjoint, computed as a gather per input element (each input element sums
// the outputs that read it), so it is deterministic on CUDA too (no atomics).
#pragma once

#include <cstdint>

#include "core/device.h"

namespace dropnet {

enum class ResizeMethod { Nearest, Bilinear, Area };
enum class ChannelMode { Tile, Pad, Average };

struct ResizeParams {
  ResizeMethod method = ResizeMethod::Nearest;
  ChannelMode channel_mode = ChannelMode::Tile;
  int64_t n = 0, c = 0, h = 0, w = 0;  // input (n, c, h, w)
  int64_t out_c = 0, out_h = 0, out_w = 0;  // output (n, out_c, out_h, out_w)
};

// x (n, c, h, w) -> y (n, out_c, out_h, out_w). y must not alias x.
void resize_forward_cpu(const ResizeParams& p, const float* x, float* y);
// dx = R^T dy + beta * dx; beta = 0 overwrites without reading dx. dx must not alias dy.
void resize_backward_cpu(const ResizeParams& p, const float* dy, float beta, float* dx);

#if DROPNET_HAVE_CUDA
void resize_forward_cuda(const ResizeParams& p, const float* x, float* y, Stream stream);
void resize_backward_cuda(const ResizeParams& p, const float* dy, float beta, float* dx,
                          Stream stream);
#endif

}  // namespace dropnet
