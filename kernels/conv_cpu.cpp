#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "kernels/conv.h"
#include "kernels/eltwise.h"
#include "kernels/gemm.h"

namespace dropnet {

int64_t conv_chunk_images(const ConvParams& p, int64_t max_floats) {
  const int64_t per_image = std::max<int64_t>(1, p.c * p.kh * p.kw * p.out_h * p.out_w);
  return std::clamp<int64_t>(max_floats / per_image, 1, p.n);
}

// Row-segment copies: for stride 1 the valid output columns of one kernel tap read a
// contiguous run of the input row.
void im2col_cpu(const ConvParams& p, const float* x, int64_t images, float* col) {
  const int64_t ohw = p.out_h * p.out_w, ncols = images * ohw;
#pragma omp parallel for collapse(2) schedule(static) if (images * p.c > 1)
  for (int64_t b = 0; b < images; ++b)
    for (int64_t ci = 0; ci < p.c; ++ci) {
      const float* plane = x + (b * p.c + ci) * p.h * p.w;
      for (int ki = 0; ki < p.kh; ++ki)
        for (int kj = 0; kj < p.kw; ++kj) {
          float* dst = col + ((ci * p.kh + ki) * p.kw + kj) * ncols + b * ohw;
          // Valid ox range: 0 <= ox*sw - pw + kj < w.
          int64_t ox_lo = 0, ox_hi = p.out_w;
          while (ox_lo < p.out_w && ox_lo * p.sw - p.pw + kj < 0) ++ox_lo;
          while (ox_hi > ox_lo && (ox_hi - 1) * p.sw - p.pw + kj >= p.w) --ox_hi;
          for (int64_t oy = 0; oy < p.out_h; ++oy) {
            float* d = dst + oy * p.out_w;
            const int64_t iy = oy * p.sh - p.ph + ki;
            if (iy < 0 || iy >= p.h) {
              std::memset(d, 0, sizeof(float) * p.out_w);
              continue;
            }
            for (int64_t ox = 0; ox < ox_lo; ++ox) d[ox] = 0.f;
            const float* src = plane + iy * p.w - p.pw + kj;
            if (p.sw == 1) {
              std::memcpy(d + ox_lo, src + ox_lo, sizeof(float) * (ox_hi - ox_lo));
            } else {
              for (int64_t ox = ox_lo; ox < ox_hi; ++ox) d[ox] = src[ox * p.sw];
            }
            for (int64_t ox = ox_hi; ox < p.out_w; ++ox) d[ox] = 0.f;
          }
        }
    }
}

void col2im_cpu(const ConvParams& p, const float* col, int64_t images, float beta, float* dx) {
  const int64_t ohw = p.out_h * p.out_w, ncols = images * ohw;
#pragma omp parallel for collapse(2) schedule(static) if (images * p.c > 1)
  for (int64_t b = 0; b < images; ++b)
    for (int64_t ci = 0; ci < p.c; ++ci) {
      float* plane = dx + (b * p.c + ci) * p.h * p.w;
      if (beta == 0.f) {
        std::memset(plane, 0, sizeof(float) * p.h * p.w);
      } else if (beta != 1.f) {
        for (int64_t i = 0; i < p.h * p.w; ++i) plane[i] *= beta;
      }
      for (int ki = 0; ki < p.kh; ++ki)
        for (int kj = 0; kj < p.kw; ++kj) {
          const float* src = col + ((ci * p.kh + ki) * p.kw + kj) * ncols + b * ohw;
          int64_t ox_lo = 0, ox_hi = p.out_w;
          while (ox_lo < p.out_w && ox_lo * p.sw - p.pw + kj < 0) ++ox_lo;
          while (ox_hi > ox_lo && (ox_hi - 1) * p.sw - p.pw + kj >= p.w) --ox_hi;
          for (int64_t oy = 0; oy < p.out_h; ++oy) {
            const int64_t iy = oy * p.sh - p.ph + ki;
            if (iy < 0 || iy >= p.h) continue;
            float* d = plane + iy * p.w - p.pw + kj;
            const float* s = src + oy * p.out_w;
            if (p.sw == 1) {
#pragma omp simd
              for (int64_t ox = ox_lo; ox < ox_hi; ++ox) d[ox] += s[ox];
            } else {
              for (int64_t ox = ox_lo; ox < ox_hi; ++ox) d[ox * p.sw] += s[ox];
            }
          }
        }
    }
}

namespace {

constexpr int64_t kMaxColFloats = 16 << 20;  // 64 MB column buffer at most

void prepare(const ConvParams& p, ConvScratch& s, Device dev) {
  s.chunk = conv_chunk_images(p, kMaxColFloats);
  const int64_t cols = s.chunk * p.out_h * p.out_w;
  Shape col_shape({p.c * p.kh * p.kw, cols}), y_shape({p.out_c, cols});
  if (s.col.empty() || s.col.device() != dev) s.col = Tensor(col_shape, dev);
  else s.col.reshape(col_shape);
  if (s.ytmp.empty() || s.ytmp.device() != dev) s.ytmp = Tensor(y_shape, dev);
  else s.ytmp.reshape(y_shape);
}

}  // namespace

void conv_forward_cpu(const ConvParams& p, const float* x, const float* w, const float* bias, float* y,
                      ConvScratch& s) {
  prepare(p, s, Device::cpu());
  const int64_t ohw = p.out_h * p.out_w;
  const int64_t cg = p.c / p.group, og = p.out_c / p.group, kg = cg * p.kh * p.kw;
  for (int64_t n0 = 0; n0 < p.n; n0 += s.chunk) {
    const int64_t b = std::min(s.chunk, p.n - n0);
    const int64_t cols = b * ohw;
    float* col = s.col.data();
    im2col_cpu(p, x + n0 * p.c * p.h * p.w, b, col);
    float* yt = b == 1 ? y + n0 * p.out_c * ohw : s.ytmp.data();
    for (int g = 0; g < p.group; ++g)
      sgemm_cpu(false, false, og, cols, kg, 1.f, w + g * og * kg, kg, col + g * kg * cols, cols, 0.f,
                yt + g * og * cols, cols);
    if (b > 1) {
      // (out_c, b, ohw) -> (b, out_c, ohw)
#pragma omp parallel for collapse(2) schedule(static)
      for (int64_t i = 0; i < b; ++i)
        for (int64_t co = 0; co < p.out_c; ++co)
          std::memcpy(y + ((n0 + i) * p.out_c + co) * ohw, yt + co * cols + i * ohw, sizeof(float) * ohw);
    }
    s.col_valid = (b == p.n);
  }
  if (bias != nullptr) bias_forward_cpu(p.n, p.out_c, ohw, bias, y);
}

void conv_backward_cpu(const ConvParams& p, const float* x, const float* w, const float* dy, float* dw, float* db,
                       float beta, float* dx, ConvScratch& s) {
  prepare(p, s, Device::cpu());
  const int64_t ohw = p.out_h * p.out_w;
  const int64_t cg = p.c / p.group, og = p.out_c / p.group, kg = cg * p.kh * p.kw;
  if (db != nullptr) bias_backward_cpu(p.n, p.out_c, ohw, dy, db);
  for (int64_t n0 = 0; n0 < p.n; n0 += s.chunk) {
    const int64_t b = std::min(s.chunk, p.n - n0);
    const int64_t cols = b * ohw;
    float* col = s.col.data();
    if (!(s.col_valid && b == p.n)) im2col_cpu(p, x + n0 * p.c * p.h * p.w, b, col);
    const float* dyt = dy + n0 * p.out_c * ohw;
    if (b > 1) {
      float* t = s.ytmp.data();
#pragma omp parallel for collapse(2) schedule(static)
      for (int64_t i = 0; i < b; ++i)
        for (int64_t co = 0; co < p.out_c; ++co)
          std::memcpy(t + co * cols + i * ohw, dy + ((n0 + i) * p.out_c + co) * ohw, sizeof(float) * ohw);
      dyt = t;
    }
    for (int g = 0; g < p.group; ++g)
      sgemm_cpu(false, true, og, kg, cols, 1.f, dyt + g * og * cols, cols, col + g * kg * cols, cols, 1.f,
                dw + g * og * kg, kg);
    if (dx != nullptr) {
      // The column buffer is reused for d(col): x's columns are no longer needed.
      for (int g = 0; g < p.group; ++g)
        sgemm_cpu(true, false, kg, cols, og, 1.f, w + g * og * kg, kg, dyt + g * og * cols, cols, 0.f,
                  col + g * kg * cols, cols);
      col2im_cpu(p, col, b, beta, dx + n0 * p.c * p.h * p.w);
    }
  }
  s.col_valid = false;
}

}  // namespace dropnet
