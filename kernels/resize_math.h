// Resize arithmetic shared by resize_cpu.cpp and resize.cu (DESIGN.md §3): per-axis source
// indices and weights (forward), the inverse ranges of outputs that read an input index (the
// adjoint as a gather), and the channel mapping. Multiply-adds are explicit fmaf so the host
// compiler and nvcc round identically (neither may contract differently).
#pragma once

#include <math.h>

#include <cstdint>

#include "core/hostdev.h"
#include "kernels/resize.h"

namespace dropnet {

// What one output index reads along one axis:
//   nearest:  source i0 (i1 = i0 + 1, weights unused);
//   bilinear: sources i0, i1 (i1 == i0 at the last row/column) with weights l0, l1;
//   area:     the window [i0, i1) (weights unused; the divisor is i1 - i0).
struct ResizeAxisTap {
  int64_t i0, i1;
  float l0, l1;
};

// ---- per axis: nearest --------------------------------------------------------------------

// PyTorch's nearest_idx: min(floor(float(dst) * (float(in) / float(out))), in - 1), in float.
DN_HD int64_t resize_nearest_src(int64_t dst, int64_t in, int64_t out) {
  if (in == out) return dst;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const int64_t s = static_cast<int64_t>(floorf(static_cast<float>(dst) * scale));
  return s < in - 1 ? s : in - 1;
}

// The smallest dst in [0, out] with resize_nearest_src(dst) >= k (out when there is none).
// resize_nearest_src is non-decreasing in dst (rounding and floor are monotone), so a guess from
// exact arithmetic is walked to the exact boundary in a step or two.
DN_HD int64_t resize_nearest_first_dst(int64_t k, int64_t in, int64_t out) {
  int64_t g = (k * out + in - 1) / in;  // ceil(k * out / in)
  if (g < 0) g = 0;
  if (g > out) g = out;
  while (g > 0 && resize_nearest_src(g - 1, in, out) >= k) --g;
  while (g < out && resize_nearest_src(g, in, out) < k) ++g;
  return g;
}

// ---- per axis: bilinear (align_corners = false) --------------------------------------------

// As PyTorch's CPU kernel (verified weight for weight against torch 1.13 for all sizes up to 69):
// scale = float(in) / float(out) in float, src = scale * (dst + 0.5) - 0.5 in double, clamped at 0,
// l1 = float(src - floor(src)), l0 = 1 - l1 in float. With a float scale (24-bit significand)
// and sizes <= 2^24 (resize_check_params) the double product and difference are exact, so no
// rounding (and no FMA contraction) can make the host and device differ.
DN_HD ResizeAxisTap resize_linear_tap(int64_t dst, int64_t in, int64_t out) {
  if (in == out) return {dst, dst, 1.f, 0.f};  // PyTorch's copy special case
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  double src = static_cast<double>(scale) * (static_cast<double>(dst) + 0.5) - 0.5;
  if (src < 0.0) src = 0.0;
  int64_t i0 = static_cast<int64_t>(src);
  if (i0 > in - 1) i0 = in - 1;
  const int64_t i1 = i0 < in - 1 ? i0 + 1 : i0;
  float l1 = static_cast<float>(src - static_cast<double>(i0));
  l1 = l1 < 0.f ? 0.f : (l1 > 1.f ? 1.f : l1);
  return {i0, i1, 1.f - l1, l1};
}

// The weight with which output dst reads input i (0 when it does not).
DN_HD float resize_linear_weight(const ResizeAxisTap& t, int64_t i) {
  return (t.i0 == i ? t.l0 : 0.f) + (t.i1 == i ? t.l1 : 0.f);
}

// The smallest dst in [0, out] with tap(dst).i0 >= k (out when there is none); i0 is
// non-decreasing in dst.
DN_HD int64_t resize_linear_first_dst(int64_t k, int64_t in, int64_t out) {
  // exact arithmetic: (dst + 0.5) * in / out - 0.5 >= k  <=>  dst >= ((2k + 1) * out - in) / (2 in)
  int64_t g = ((2 * k + 1) * out - in) / (2 * in);
  if (g < 0) g = 0;
  if (g > out) g = out;
  while (g > 0 && resize_linear_tap(g - 1, in, out).i0 >= k) --g;
  while (g < out && resize_linear_tap(g, in, out).i0 < k) ++g;
  return g;
}

// Outputs whose taps may include input i: those with i0 in {i - 1, i}.
DN_HD void resize_linear_dst_range(int64_t i, int64_t in, int64_t out, int64_t* lo, int64_t* hi) {
  *lo = resize_linear_first_dst(i > 0 ? i - 1 : 0, in, out);
  *hi = resize_linear_first_dst(i + 1, in, out);
}

// ---- per axis: area (adaptive average pooling) ---------------------------------------------

DN_HD int64_t resize_area_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
DN_HD int64_t resize_area_end(int64_t o, int64_t in, int64_t out) {
  return ((o + 1) * in + out - 1) / out;
}
// Outputs o whose window [start(o), end(o)) contains i: [floor(i * out / in), ceil((i + 1) * out / in)).
DN_HD void resize_area_dst_range(int64_t i, int64_t in, int64_t out, int64_t* lo, int64_t* hi) {
  *lo = (i * out) / in;
  const int64_t h = ((i + 1) * out + in - 1) / in;
  *hi = h < out ? h : out;
}

// ---- channels ------------------------------------------------------------------------------

// Average only averages when shrinking; otherwise it is Tile.
DN_HD bool resize_channel_averages(const ResizeParams& p) {
  return p.channel_mode == ChannelMode::Average && p.out_c < p.c;
}

// Input channels read by output channel oc.
DN_HD int64_t resize_src_channel_count(const ResizeParams& p, int64_t oc) {
  if (p.channel_mode == ChannelMode::Pad) return oc < p.c ? 1 : 0;
  if (resize_channel_averages(p)) return (p.c - 1 - oc) / p.out_c + 1;
  return 1;
}
DN_HD int64_t resize_src_channel(const ResizeParams& p, int64_t oc, int64_t k) {
  if (p.channel_mode == ChannelMode::Pad) return oc;
  if (resize_channel_averages(p)) return oc + k * p.out_c;
  return oc % p.c;
}

// Output channels that read input channel ic.
DN_HD int64_t resize_dst_channel_count(const ResizeParams& p, int64_t ic) {
  if (p.channel_mode == ChannelMode::Pad) return ic < p.out_c ? 1 : 0;
  if (resize_channel_averages(p)) return 1;
  return ic < p.out_c ? (p.out_c - 1 - ic) / p.c + 1 : 0;
}
DN_HD int64_t resize_dst_channel(const ResizeParams& p, int64_t ic, int64_t k) {
  if (p.channel_mode == ChannelMode::Pad) return ic;
  if (resize_channel_averages(p)) return ic % p.out_c;
  return ic + k * p.c;
}

// ---- one axis, either method -----------------------------------------------------------------

DN_HD ResizeAxisTap resize_axis_tap(ResizeMethod m, int64_t o, int64_t in, int64_t out) {
  if (m == ResizeMethod::Nearest) {
    const int64_t s = resize_nearest_src(o, in, out);
    return {s, s + 1, 1.f, 0.f};
  }
  if (m == ResizeMethod::Bilinear) return resize_linear_tap(o, in, out);
  return {resize_area_start(o, in, out), resize_area_end(o, in, out), 0.f, 0.f};
}

// The outputs [lo, hi) along an axis whose taps may read input index i (a superset for bilinear,
// where the weight then says whether it does).
struct ResizeAxisRange {
  int64_t lo, hi;
};

DN_HD ResizeAxisRange resize_axis_range(ResizeMethod m, int64_t i, int64_t in, int64_t out) {
  ResizeAxisRange r;
  if (m == ResizeMethod::Nearest) {
    r.lo = resize_nearest_first_dst(i, in, out);
    r.hi = resize_nearest_first_dst(i + 1, in, out);
  } else if (m == ResizeMethod::Bilinear) {
    resize_linear_dst_range(i, in, out, &r.lo, &r.hi);
  } else {
    resize_area_dst_range(i, in, out, &r.lo, &r.hi);
  }
  return r;
}

// Two ways to get the taps and ranges of an axis, with the same values: computed on the fly (the
// CUDA kernels) or looked up in tables filled with resize_axis_tap / resize_axis_range (the CPU
// loops). The arithmetic below is shared by both.
struct ResizeAxisComputed {
  ResizeMethod method;
  int64_t in, out;
  DN_HD ResizeAxisTap tap(int64_t o) const { return resize_axis_tap(method, o, in, out); }
  DN_HD ResizeAxisRange range(int64_t i) const { return resize_axis_range(method, i, in, out); }
};
struct ResizeAxisTable {
  const ResizeAxisTap* taps;      // (out)
  const ResizeAxisRange* ranges;  // (in)
  DN_HD ResizeAxisTap tap(int64_t o) const { return taps[o]; }
  DN_HD ResizeAxisRange range(int64_t i) const { return ranges[i]; }
};

// ---- one plane -----------------------------------------------------------------------------

// Output (ty, tx) of resampling the (h, w) plane x.
DN_HD float resize_plane_forward(const ResizeParams& p, const float* x, const ResizeAxisTap& ty,
                                 const ResizeAxisTap& tx) {
  if (p.method == ResizeMethod::Nearest) return x[ty.i0 * p.w + tx.i0];
  if (p.method == ResizeMethod::Bilinear) {
    const float* r0 = x + ty.i0 * p.w;
    const float* r1 = x + ty.i1 * p.w;
    const float v0 = fmaf(r0[tx.i1], tx.l1, r0[tx.i0] * tx.l0);
    const float v1 = fmaf(r1[tx.i1], tx.l1, r1[tx.i0] * tx.l0);
    return fmaf(v1, ty.l1, v0 * ty.l0);
  }
  float sum = 0.f;
  for (int64_t iy = ty.i0; iy < ty.i1; ++iy)
    for (int64_t ix = tx.i0; ix < tx.i1; ++ix) sum += x[iy * p.w + ix];
  return sum / static_cast<float>(ty.i1 - ty.i0) / static_cast<float>(tx.i1 - tx.i0);
}

// Input (iy, ix) of the adjoint: the sum over the outputs of the (out_h, out_w) plane dy that
// read input (iy, ix), each times its forward weight. ry, rx: the output ranges of iy and ix.
template <class Axis>
DN_HD float resize_plane_adjoint(const ResizeParams& p, const float* dy, int64_t iy, int64_t ix,
                                 const ResizeAxisRange& ry, const ResizeAxisRange& rx,
                                 const Axis& ay, const Axis& ax) {
  float acc = 0.f;
  if (p.method == ResizeMethod::Nearest) {
    for (int64_t oy = ry.lo; oy < ry.hi; ++oy)
      for (int64_t ox = rx.lo; ox < rx.hi; ++ox) acc += dy[oy * p.out_w + ox];
    return acc;
  }
  if (p.method == ResizeMethod::Bilinear) {
    for (int64_t oy = ry.lo; oy < ry.hi; ++oy) {
      const float wy = resize_linear_weight(ay.tap(oy), iy);
      if (wy == 0.f) continue;
      float row = 0.f;
      for (int64_t ox = rx.lo; ox < rx.hi; ++ox)
        row = fmaf(resize_linear_weight(ax.tap(ox), ix), dy[oy * p.out_w + ox], row);
      acc = fmaf(wy, row, acc);
    }
    return acc;
  }
  for (int64_t oy = ry.lo; oy < ry.hi; ++oy) {
    const ResizeAxisTap ty = ay.tap(oy);
    const float kh = static_cast<float>(ty.i1 - ty.i0);
    for (int64_t ox = rx.lo; ox < rx.hi; ++ox) {
      const ResizeAxisTap tx = ax.tap(ox);
      acc += dy[oy * p.out_w + ox] / kh / static_cast<float>(tx.i1 - tx.i0);
    }
  }
  return acc;
}

// ---- channel combination ---------------------------------------------------------------------
// The forward sums the resampled source channels in ascending order from 0 and then divides by
// their count when averaging; the adjoint sums, over the output channels reading the input
// channel (ascending), their adjoint divided by their source count when averaging.

DN_HD float resize_channel_finish(const ResizeParams& p, float acc, int64_t count) {
  return resize_channel_averages(p) ? acc / static_cast<float>(count) : acc;
}
DN_HD float resize_adjoint_channel_term(const ResizeParams& p, float g, int64_t oc) {
  return resize_channel_averages(p) ? g / static_cast<float>(resize_src_channel_count(p, oc)) : g;
}

// ---- whole tensor --------------------------------------------------------------------------

// y[s, oc, oy, ox] with ty = tap(oy), tx = tap(ox); x is the whole (n, c, h, w) input.
DN_HD float resize_forward_at(const ResizeParams& p, const float* x, int64_t s, int64_t oc,
                              const ResizeAxisTap& ty, const ResizeAxisTap& tx) {
  const int64_t plane = p.h * p.w;
  const int64_t count = resize_src_channel_count(p, oc);
  float acc = 0.f;
  for (int64_t k = 0; k < count; ++k)
    acc += resize_plane_forward(p, x + (s * p.c + resize_src_channel(p, oc, k)) * plane, ty, tx);
  return resize_channel_finish(p, acc, count);
}

// (R^T dy)[s, ic, iy, ix] with ry = range(iy), rx = range(ix); dy is the whole
// (n, out_c, out_h, out_w) gradient.
template <class Axis>
DN_HD float resize_backward_at(const ResizeParams& p, const float* dy, int64_t s, int64_t ic,
                               int64_t iy, int64_t ix, const ResizeAxisRange& ry,
                               const ResizeAxisRange& rx, const Axis& ay, const Axis& ax) {
  const int64_t plane = p.out_h * p.out_w;
  const int64_t count = resize_dst_channel_count(p, ic);
  float acc = 0.f;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t oc = resize_dst_channel(p, ic, k);
    acc += resize_adjoint_channel_term(
        p, resize_plane_adjoint(p, dy + (s * p.out_c + oc) * plane, iy, ix, ry, rx, ay, ax), oc);
  }
  return acc;
}

}  // namespace dropnet
