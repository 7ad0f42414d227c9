// The pooling arithmetic, shared by the CPU loops and the CUDA kernels: output size, window
// bounds and divisor, the per-window max/average, and the per-input-element gradient.
// Coordinates: a window's start in padded coordinates is o * stride; in image coordinates it is
// o * stride - pad. C++17-clean (included from pool.cu).
#pragma once

#include <cstdint>

#include "core/hostdev.h"
#include "kernels/pool.h"

namespace dropnet {

// ceil(a / b) for b > 0 and any sign of a (Caffe computes it as ceil of a float quotient).
DN_HD int64_t pool_ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// Caffe's output size along one dimension: ceil((in + 2 pad - kernel) / stride) + 1, minus one
// when the last window would start at or past in + pad (inside the right padding, where it would
// see no image cell). Caffe applies the "minus one" only when some pad is non-zero; with pad 0
// the rule only fires for a window that lies wholly past the image (stride > kernel), where Caffe
// reads an empty window (garbage output, argmax -1), so applying it always changes nothing that
// Caffe defines. May return <= 0 for a kernel too large for the input; make_pool_params rejects it.
DN_HD int64_t pool_out_size(int64_t in, int kernel, int stride, int pad) {
  int64_t out = pool_ceil_div(in + 2 * int64_t(pad) - kernel, stride) + 1;
  if ((out - 1) * stride >= in + pad) --out;
  return out;
}

// One window, clipped to the image: rows [h0, h1), cols [w0, w1) of the input plane (never empty
// for params from make_pool_params, since pad < kernel), and its AVE divisor.
struct PoolWindow {
  int64_t h0, h1, w0, w1;
  float divisor;
};

// Caffe's AVE divisor of window (oh, ow): its cells inside the padded image [-pad, in + pad),
// so it counts padding cells but not the ceil-mode overhang past the right/bottom padding.
DN_HD float pool_divisor(const PoolParams& p, int64_t oh, int64_t ow) {
  int64_t hs = oh * p.stride_h - p.pad_h, ws = ow * p.stride_w - p.pad_w;
  int64_t he = hs + p.kernel_h < p.h + p.pad_h ? hs + p.kernel_h : p.h + p.pad_h;
  int64_t we = ws + p.kernel_w < p.w + p.pad_w ? ws + p.kernel_w : p.w + p.pad_w;
  return static_cast<float>((he - hs) * (we - ws));
}

DN_HD PoolWindow pool_window(const PoolParams& p, int64_t oh, int64_t ow) {
  int64_t hs = oh * p.stride_h - p.pad_h, ws = ow * p.stride_w - p.pad_w;
  int64_t he = hs + p.kernel_h, we = ws + p.kernel_w;
  PoolWindow win;
  win.divisor = pool_divisor(p, oh, ow);
  win.h0 = hs > 0 ? hs : 0;
  win.w0 = ws > 0 ? ws : 0;
  win.h1 = he < p.h ? he : p.h;
  win.w1 = we < p.w ? we : p.w;
  return win;
}

// MAX: cells are visited in row-major order and v replaces the running maximum `best` when it
// is larger (strict >: the first maximum wins, as in Caffe). Unlike Caffe, which skips NaN, the
// first NaN is chosen, so a diverging net shows up as NaN in the loss instead of being masked.
// T is float, or on the CPU a SIMD vector of floats (the comparisons then give lane masks).
template <class T>
DN_HD auto pool_max_takes(const T& v, const T& best) {
  return (best == best) & ((v > best) | (v != v));
}

// MAX over a window of one input plane (row stride `width`).
DN_HD void pool_max_window(const float* plane, int64_t width, const PoolWindow& win, float* val,
                           int32_t* idx) {
  int64_t best_i = win.h0 * width + win.w0;
  float best = plane[best_i];
  for (int64_t h = win.h0; h < win.h1; ++h) {
    for (int64_t w = win.w0; w < win.w1; ++w) {
      const float v = plane[h * width + w];
      const bool take = pool_max_takes(v, best);  // selects, not a branch: maxima are random
      best = take ? v : best;
      best_i = take ? h * width + w : best_i;
    }
  }
  *val = best;
  *idx = static_cast<int32_t>(best_i);
}

// AVE over a window: the sum of the in-image cells (row-major order) over Caffe's divisor.
DN_HD float pool_ave_window(const float* plane, int64_t width, const PoolWindow& win) {
  float sum = 0.f;
  for (int64_t h = win.h0; h < win.h1; ++h)
    for (int64_t w = win.w0; w < win.w1; ++w) sum += plane[h * width + w];
  return sum / win.divisor;
}

// The outputs whose (unclipped) windows cover input coordinate i along one dimension:
// o in [*o0, *o1), i.e. o * stride - pad <= i < o * stride - pad + kernel, 0 <= o < pooled.
DN_HD void pool_cover(int64_t i, int kernel, int stride, int pad, int64_t pooled, int64_t* o0,
                      int64_t* o1) {
  int64_t ip = i + pad;
  *o0 = ip < kernel ? 0 : (ip - kernel) / stride + 1;
  int64_t e = ip / stride + 1;
  *o1 = e < pooled ? e : pooled;
}

// Gradient at input cell `idx` (= h * W + w) of a MAX pool: the sum, over the covering windows
// [oh0, oh1) x [ow0, ow1) in row-major order, of dy where that window chose idx.
DN_HD float pool_max_grad(const float* dy_plane, const int32_t* argmax_plane, int64_t out_w,
                          int32_t idx, int64_t oh0, int64_t oh1, int64_t ow0, int64_t ow1) {
  float g = 0.f;
  for (int64_t oh = oh0; oh < oh1; ++oh)
    for (int64_t ow = ow0; ow < ow1; ++ow)
      if (argmax_plane[oh * out_w + ow] == idx) g += dy_plane[oh * out_w + ow];
  return g;
}

// Gradient at an input cell of an AVE pool: the sum, over the covering windows in row-major
// order, of dy / divisor (Caffe's AvePoolBackward).
DN_HD float pool_ave_grad(const PoolParams& p, const float* dy_plane, int64_t oh0, int64_t oh1,
                          int64_t ow0, int64_t ow1) {
  float g = 0.f;
  for (int64_t oh = oh0; oh < oh1; ++oh)
    for (int64_t ow = ow0; ow < ow1; ++ow)
      g += dy_plane[oh * p.out_w + ow] / pool_divisor(p, oh, ow);
  return g;
}

}  // namespace dropnet
