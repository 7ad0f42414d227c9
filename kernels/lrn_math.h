// The LRN arithmetic, shared by the CPU loops and the CUDA kernels: window bounds, the scale,
// the output, and the exact backward formula. C++17-clean (included from lrn.cu).
//
// Backward. With s_j the scale of output j and W(j) its window (channels, or the n x n spatial
// window; symmetric because n is odd, so i in W(j) <=> j in W(i)):
//   y_j = x_j s_j^-beta,  s_j = k + coeff * sum_{m in W(j)} x_m^2
//   dx_i = dy_i s_i^-beta - 2 coeff beta x_i * sum_{j in W(i)} dy_j y_j / s_j
// with coeff = alpha / n across channels and alpha / n^2 within a channel (where k = 1).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/hostdev.h"
#include "kernels/lrn.h"

namespace dropnet {

DN_HD float lrn_coeff(const LrnParams& p) {
  return p.across_channels ? p.alpha / static_cast<float>(p.local_size)
                           : p.alpha / static_cast<float>(p.local_size * p.local_size);
}

// Caffe's WITHIN_CHANNEL path is 1 + alpha * avg(x^2): k does not enter.
DN_HD float lrn_k(const LrnParams& p) { return p.across_channels ? p.k : 1.f; }

// The window of index i along an extent: [*lo, *hi) = [i - (n-1)/2, i + (n-1)/2 + 1) clipped.
DN_HD void lrn_window(int64_t i, int64_t extent, int size, int64_t* lo, int64_t* hi) {
  const int64_t half = (size - 1) / 2;
  *lo = i - half > 0 ? i - half : 0;
  *hi = i + half + 1 < extent ? i + half + 1 : extent;
}

// s^-0.75 (every Caffe net's beta) as 1 / (sqrt(s) * sqrt(sqrt(s))): four correctly rounded
// operations (relative error <= 2.7e-7), so the CPU's SIMD version of the same four operations
// (lrn_cpu.cpp) gives bit-identical results, where powf would be a scalar libm call.
DN_HD float lrn_pow_neg075(float s) {
  const float r = sqrtf(s);
  return 1.f / (r * sqrtf(r));
}

// s^-beta.
DN_HD float lrn_pow_neg(float s, float beta) { return beta == 0.75f ? lrn_pow_neg075(s) : powf(s, -beta); }

DN_HD float lrn_scale(const LrnParams& p, float sum_sq) { return lrn_k(p) + lrn_coeff(p) * sum_sq; }

// y from x and scale_pow = lrn_pow_neg(scale, beta).
DN_HD float lrn_output(float x, float scale_pow) { return x * scale_pow; }

// Output j's term of the backward sum: dy_j * y_j / s_j.
DN_HD float lrn_ratio(float dy, float y, float scale) { return dy * y / scale; }

// dx_i from its own dy, x, scale_pow = lrn_pow_neg(scale, beta) and the window sum of lrn_ratio.
DN_HD float lrn_input_grad(const LrnParams& p, float dy, float x, float scale_pow, float ratio_sum) {
  return dy * scale_pow - 2.f * lrn_coeff(p) * p.beta * x * ratio_sum;
}

// Window sums, in the order both backends use: channels ascending (across); rows ascending, then
// columns ascending (within). `pix` points at channel 0 of one pixel of one image (channel
// stride hw); `plane` at one (H, W) plane.
DN_HD float lrn_across_sum_sq(const float* pix, int64_t hw, int64_t lo, int64_t hi) {
  float s = 0.f;
  for (int64_t j = lo; j < hi; ++j) s += pix[j * hw] * pix[j * hw];
  return s;
}

DN_HD float lrn_across_ratio_sum(const float* dy_pix, const float* y_pix, const float* s_pix,
                                 int64_t hw, int64_t lo, int64_t hi) {
  float s = 0.f;
  for (int64_t j = lo; j < hi; ++j) s += lrn_ratio(dy_pix[j * hw], y_pix[j * hw], s_pix[j * hw]);
  return s;
}

DN_HD float lrn_within_sum_sq(const float* plane, int64_t width, int64_t h0, int64_t h1,
                              int64_t w0, int64_t w1) {
  float s = 0.f;
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = w0; w < w1; ++w) s += plane[h * width + w] * plane[h * width + w];
  return s;
}

DN_HD float lrn_within_ratio_sum(const float* dy_plane, const float* y_plane,
                                 const float* s_plane, int64_t width, int64_t h0, int64_t h1,
                                 int64_t w0, int64_t w1) {
  float s = 0.f;
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t i = h * width + w;
      s += lrn_ratio(dy_plane[i], y_plane[i], s_plane[i]);
    }
  return s;
}

}  // namespace dropnet
