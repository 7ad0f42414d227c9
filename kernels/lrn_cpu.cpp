// CPU LRN: OpenMP over the N * C planes. Each plane is processed in passes that vectorize:
// the window sums (built plane-wise, adding in the CUDA kernels' per-element order), the scale,
// scale^-beta, and the output or gradient, all from the lrn_math.h functions the CUDA kernels call.
#include <algorithm>
#include <cmath>
#include <cstdint>
// GCC 12's _mm512_sqrt_ps, reached through stdx::sqrt, trips -Wmaybe-uninitialized inside
// avx512fintrin.h (a known false positive on its undefined-vector idiom).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <experimental/simd>
#pragma GCC diagnostic pop
#include <vector>

#include "core/error.h"
#include "kernels/lrn.h"
#include "kernels/lrn_math.h"
#include "kernels/store_grad.h"

namespace dropnet {

namespace {

namespace stdx = std::experimental;

constexpr int64_t kParallelMin = 1 << 14;

// Per-thread scratch that only grows, so steady-state training allocates nothing per call.
struct Scratch {
  std::vector<float> buf;
  float* get(size_t n) {
    if (buf.size() < n) buf.resize(n);
    return buf.data();
  }
};
thread_local Scratch t_acc, t_tmp, t_pad, t_rows;

// The window sums of one plane into acc, adding in the order of lrn_across_sum_sq /
// lrn_within_sum_sq (what the CUDA kernels call per element): channels ascending; rows
// ascending, then columns ascending. kSquare sums v^2, otherwise v.
int64_t within_pad_size(const LrnParams& p) {
  return (p.h + p.local_size - 1) * (p.w + p.local_size - 1) + p.local_size - 1;
}

template <bool kSquare>
void across_sum(const LrnParams& p, const float* img, int64_t c, int64_t hw, float* acc) {
  int64_t lo, hi;
  lrn_window(c, p.c, p.local_size, &lo, &hi);
  std::fill(acc, acc + hw, 0.f);
  for (int64_t j = lo; j < hi; ++j) {
    const float* v = img + j * hw;
    for (int64_t i = 0; i < hw; ++i) acc[i] += kSquare ? v[i] * v[i] : v[i];
  }
}

// Within a channel the rows are short (8 to 32 cells), so the window sum runs over a zero-padded
// copy of the plane (row stride wp = W + n - 1) as one long loop over the padded layout, the
// padding columns computed and dropped. Adding the padding's zeros instead of skipping those
// cells leaves every sum unchanged. pad holds (H + n - 1) * wp + n - 1 floats, tmp H * wp.
template <bool kSquare>
void within_sum(const LrnParams& p, const float* plane, float* pad, float* tmp, float* acc) {
  const int64_t n = p.local_size, half = (n - 1) / 2, wp = p.w + n - 1;
  const int64_t pad_size = (p.h + n - 1) * wp + n - 1;
  std::fill(pad, pad + pad_size, 0.f);
  for (int64_t h = 0; h < p.h; ++h) {
    const float* v = plane + h * p.w;
    float* dst = pad + (h + half) * wp + half;
    for (int64_t w = 0; w < p.w; ++w) dst[w] = kSquare ? v[w] * v[w] : v[w];
  }
  const int64_t len = p.h * wp;
  std::fill(tmp, tmp + len, 0.f);
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = 0; b < n; ++b) {
      const float* src = pad + a * wp + b;
      for (int64_t q = 0; q < len; ++q) tmp[q] += src[q];
    }
  for (int64_t h = 0; h < p.h; ++h) std::copy(tmp + h * wp, tmp + h * wp + p.w, acc + h * p.w);
}

// out[i] = lrn_pow_neg(s[i], beta). For beta 0.75, lrn_pow_neg075's four correctly rounded
// operations on SIMD vectors: bit-identical to the scalar function (GCC does not vectorize the
// scalar sqrtf itself, which may set errno).
void pow_neg(const float* s, float beta, float* out, int64_t n) {
  int64_t i = 0;
  if (beta == 0.75f) {
    using V = stdx::native_simd<float>;
    constexpr int64_t kLanes = static_cast<int64_t>(V::size());
    for (; i + kLanes <= n; i += kLanes) {
      const V r = stdx::sqrt(V(s + i, stdx::element_aligned));
      const V v = V(1.f) / (r * stdx::sqrt(r));
      v.copy_to(out + i, stdx::element_aligned);
    }
  }
  for (; i < n; ++i) out[i] = lrn_pow_neg(s[i], beta);
}

}  // namespace

void validate_lrn_params(const LrnParams& p) {
  const char* region = p.across_channels ? "across_channels" : "within_channel";
  if (p.local_size < 1 || p.local_size % 2 == 0)
    input_error("lrn ({}): local_size must be a positive odd number, got {}", region, p.local_size);
  if (p.n < 1 || p.c < 1 || p.h < 1 || p.w < 1)
    input_error("lrn ({}): input shape ({}, {}, {}, {}) has an empty dimension", region, p.n, p.c,
                p.h, p.w);
  if (!(p.alpha >= 0.f) || !std::isfinite(p.alpha))
    input_error("lrn ({}): alpha must be finite and >= 0, got {}", region, p.alpha);
  if (!std::isfinite(p.beta)) input_error("lrn ({}): beta must be finite, got {}", region, p.beta);
  if (p.across_channels && !(p.k > 0.f && std::isfinite(p.k)))
    input_error("lrn (across_channels): k must be finite and > 0, got {}", p.k);
}

void lrn_forward_cpu(const LrnParams& p, const float* x, float* y, float* scale) {
  validate_lrn_params(p);
  DN_CHECK(x != nullptr && y != nullptr && scale != nullptr, "null tensor pointer");
  const int64_t planes = p.n * p.c, hw = p.h * p.w;
#pragma omp parallel if (planes * hw >= kParallelMin)
  {
    float* acc = t_acc.get(static_cast<size_t>(hw));  // window sums, then scale^-beta
    float* pad = p.across_channels ? nullptr : t_pad.get(static_cast<size_t>(within_pad_size(p)));
    float* rows = p.across_channels ? nullptr : t_rows.get(static_cast<size_t>(p.h * (p.w + p.local_size - 1)));
#pragma omp for schedule(static)
    for (int64_t pl = 0; pl < planes; ++pl) {
      const int64_t c = pl % p.c, off = pl * hw;
      if (p.across_channels)
        across_sum<true>(p, x + (pl - c) * hw, c, hw, acc);
      else
        within_sum<true>(p, x + off, pad, rows, acc);
      const float* xp = x + off;
      float* sp = scale + off;
      float* yp = y + off;
      for (int64_t i = 0; i < hw; ++i) sp[i] = lrn_scale(p, acc[i]);
      pow_neg(sp, p.beta, acc, hw);
      for (int64_t i = 0; i < hw; ++i) yp[i] = lrn_output(xp[i], acc[i]);
    }
  }
}

void lrn_backward_cpu(const LrnParams& p, const float* x, const float* y, const float* scale,
                      const float* dy, float beta_accum, float* dx) {
  validate_lrn_params(p);
  DN_CHECK(x != nullptr && y != nullptr && scale != nullptr && dy != nullptr && dx != nullptr,
           "null tensor pointer");
  const int64_t planes = p.n * p.c, hw = p.h * p.w;
#pragma omp parallel if (planes * hw >= kParallelMin)
  {
    // acc: window sums of lrn_ratio; tmp: the plane's ratios (within), then scale^-beta.
    float* acc = t_acc.get(static_cast<size_t>(hw));
    float* tmp = t_tmp.get(static_cast<size_t>(hw));
    float* pad = p.across_channels ? nullptr : t_pad.get(static_cast<size_t>(within_pad_size(p)));
    float* rows = p.across_channels ? nullptr : t_rows.get(static_cast<size_t>(p.h * (p.w + p.local_size - 1)));
#pragma omp for schedule(static)
    for (int64_t pl = 0; pl < planes; ++pl) {
      const int64_t c = pl % p.c, off = pl * hw;
      if (p.across_channels) {
        const int64_t img = (pl - c) * hw;
        int64_t lo, hi;
        lrn_window(c, p.c, p.local_size, &lo, &hi);
        std::fill(acc, acc + hw, 0.f);
        for (int64_t j = lo; j < hi; ++j) {
          const float* dyj = dy + img + j * hw;
          const float* yj = y + img + j * hw;
          const float* sj = scale + img + j * hw;
          for (int64_t i = 0; i < hw; ++i) acc[i] += lrn_ratio(dyj[i], yj[i], sj[i]);
        }
      } else {
        for (int64_t i = 0; i < hw; ++i) tmp[i] = lrn_ratio(dy[off + i], y[off + i], scale[off + i]);
        within_sum<false>(p, tmp, pad, rows, acc);
      }
      const float* xp = x + off;
      const float* dyp = dy + off;
      float* dxp = dx + off;
      pow_neg(scale + off, p.beta, tmp, hw);
      if (beta_accum == 0.f) {
        for (int64_t i = 0; i < hw; ++i) dxp[i] = lrn_input_grad(p, dyp[i], xp[i], tmp[i], acc[i]);
      } else {
        for (int64_t i = 0; i < hw; ++i)
          store_grad(dxp[i], beta_accum, lrn_input_grad(p, dyp[i], xp[i], tmp[i], acc[i]));
      }
    }
  }
}

}  // namespace dropnet
