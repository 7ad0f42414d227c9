#include <algorithm>
#include <cstring>

#include <omp.h>

#include "core/error.h"
#include "kernels/conv.h"
#include "kernels/eltwise.h"
#include "kernels/gemm.h"

namespace dropnet {

ConvOutRange conv_out_range(const ConvParams& p, ConvOutRange oc) {
  if (oc.end < 0) oc.end = p.out_c;
  DN_CHECK(oc.begin >= 0 && oc.begin < oc.end && oc.end <= p.out_c, "conv: output channels [{}, {}) of {}", oc.begin,
           oc.end, p.out_c);
  DN_CHECK(p.group == 1 || (oc.begin == 0 && oc.end == p.out_c), "conv: an output channel range needs group 1");
  return oc;
}

int64_t conv_chunk_images(const ConvParams& p, int64_t max_floats) {
  const int64_t per_image = std::max<int64_t>(1, p.c * p.kh * p.kw * p.out_h * p.out_w);
  return std::clamp<int64_t>(max_floats / per_image, 1, p.n);
}

namespace {

// A stride-1 'same' convolution (output as large as the input, every tap within the padding:
// |kj - pw| <= pw, |ki - ph| <= ph) whose padding is smaller than the plane. Then one tap's row of
// the column buffer is the input plane shifted by (dy, dx) = (ki - ph, kj - pw) in flattened
// order, up to the rows that fall outside the plane and the |dx| < w columns that wrap around a
// row edge. Rows are short in the nets that use such convs (LeNet(2N): 24 and 8), where
// row-by-row copies cost 4-5x more.
bool is_same_stride1(const ConvParams& p) {
  return p.sh == 1 && p.sw == 1 && p.out_h == p.h && p.out_w == p.w && p.kh <= 2 * p.ph + 1 &&
         p.kw <= 2 * p.pw + 1 && p.ph < p.h && p.pw < p.w;
}

// Where one tap of is_same_stride1 reads: output rows [oy_lo, oy_hi) lie inside the plane;
// column-buffer entry f reads plane[f + off] for f in [c_lo, c_hi) (the flat range of those rows,
// clipped to the plane), and the first -dx / last dx columns of each such row wrapped around.
struct SameTap {
  int64_t w, dx, oy_lo, oy_hi, off, c_lo, c_hi;
  SameTap(const ConvParams& p, int ki, int kj) : w(p.w), dx(kj - p.pw) {
    const int64_t dy = ki - p.ph;
    oy_lo = std::max<int64_t>(0, -dy);
    oy_hi = std::max(oy_lo, std::min<int64_t>(p.out_h, p.h - dy));
    off = dy * w + dx;
    c_lo = std::max(oy_lo * w, -off);
    c_hi = std::max(c_lo, std::min(oy_hi * w, p.h * w - off));
  }
  // Zeroes the wrapped columns of rows [oy_lo, oy_hi) of a tap's row of the column buffer.
  void zero_wrapped(float* buf) const {
    for (int64_t oy = oy_lo; oy < oy_hi; ++oy) {
      float* r = buf + oy * w;
      for (int64_t ox = 0; ox < -dx; ++ox) r[ox] = 0.f;
      for (int64_t ox = w - dx; ox < w; ++ox) r[ox] = 0.f;
    }
  }
};

// im2col of one tap: one contiguous copy, zeros outside the plane and in the wrapped columns.
void im2col_tap_same(const ConvParams& p, const float* plane, int ki, int kj, float* dst) {
  const SameTap t(p, ki, kj);
  const int64_t n = p.out_h * t.w;
  std::fill(dst, dst + t.c_lo, 0.f);
  std::memcpy(dst + t.c_lo, plane + t.c_lo + t.off, sizeof(float) * (t.c_hi - t.c_lo));
  std::fill(dst + t.c_hi, dst + n, 0.f);
  t.zero_wrapped(dst);
}

// The adjoint: plane[f + off] += src[f] over the tap's flat range, in one vector loop. The wrapped
// columns' entries of src (scratch: the dgrad GEMM's output) are zeroed first, so adding them
// changes nothing; each input pixel still receives the taps in the same (ki, kj) order as the
// row-by-row path.
void col2im_tap_same(const ConvParams& p, float* src, int ki, int kj, float* plane) {
  const SameTap t(p, ki, kj);
  t.zero_wrapped(src);
  float* d = plane + t.off;
#pragma omp simd
  for (int64_t f = t.c_lo; f < t.c_hi; ++f) d[f] += src[f];
}

}  // namespace

// Row-segment copies: for stride 1 the valid output columns of one kernel tap read a
// contiguous run of the input row; 'same' stride-1 convolutions copy whole shifted planes.
void im2col_cpu(const ConvParams& p, const float* x, int64_t images, float* col) {
  const int64_t ohw = p.out_h * p.out_w, ncols = images * ohw;
  const bool same = is_same_stride1(p);
#pragma omp parallel for collapse(2) schedule(static) if (images * p.c > 1)
  for (int64_t b = 0; b < images; ++b)
    for (int64_t ci = 0; ci < p.c; ++ci) {
      const float* plane = x + (b * p.c + ci) * p.h * p.w;
      for (int ki = 0; ki < p.kh; ++ki)
        for (int kj = 0; kj < p.kw; ++kj) {
          float* dst = col + ((ci * p.kh + ki) * p.kw + kj) * ncols + b * ohw;
          if (same) {
            im2col_tap_same(p, plane, ki, kj, dst);
            continue;
          }
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

void col2im_cpu(const ConvParams& p, float* col, int64_t images, float beta, float* dx) {
  const int64_t ohw = p.out_h * p.out_w, ncols = images * ohw;
  const bool same = is_same_stride1(p);
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
          float* src = col + ((ci * p.kh + ki) * p.kw + kj) * ncols + b * ohw;
          if (same) {
            col2im_tap_same(p, src, ki, kj, plane);
            continue;
          }
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

// The CPU path works image by image: one image's column buffer (c*kh*kw x out_h*out_w) stays in
// the core's L2, the GEMM writes straight into the output's (out_c, out_h*out_w) plane, and no
// batch-wide transposes are needed. Images are spread over the OpenMP threads, each with its own
// column buffer (and, in backward, its own weight-gradient accumulator, summed in thread order
// at the end so results do not depend on scheduling).
int conv_threads(const ConvParams& p) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(omp_in_parallel() ? 1 : omp_get_max_threads(), p.n)));
}

bool is_pointwise(const ConvParams& p) {
  return p.kh == 1 && p.kw == 1 && p.sh == 1 && p.sw == 1 && p.ph == 0 && p.pw == 0;
}

void ensure(Tensor& t, int64_t floats) {
  if (t.empty() || !t.device().is_cpu() || t.count() < floats) t = Tensor(Shape({floats}), Device::cpu());
}



}  // namespace

void conv_forward_cpu(const ConvParams& p, const float* x, const float* w, const float* bias, float* y,
                      ConvScratch& s, Activation act, ConvOutRange oc) {
  oc = conv_out_range(p, oc);
  const int64_t ohw = p.out_h * p.out_w, in_plane = p.c * p.h * p.w;
  const int64_t cg = p.c / p.group, kg = cg * p.kh * p.kw;
  // Group g computes rows [g * og, (g + 1) * og); with one group, rows oc.begin .. oc.end.
  const int64_t og = p.group == 1 ? oc.end - oc.begin : p.out_c / p.group, o0 = oc.begin;
  const int64_t col_floats = p.c * p.kh * p.kw * ohw;
  const int threads = conv_threads(p);
  const bool pointwise = is_pointwise(p);
  if (!pointwise) ensure(s.col, threads * col_floats);
#pragma omp parallel num_threads(threads)
  {
    float* col = pointwise ? nullptr : s.col.data() + omp_get_thread_num() * col_floats;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < p.n; ++b) {
      const float* xb = x + b * in_plane;
      const float* cb = xb;  // a 1x1 stride-1 conv reads the image itself as its column buffer
      if (!pointwise) {
        im2col_cpu(p, xb, 1, col);
        cb = col;
      }
      float* yb = y + (b * p.out_c + o0) * ohw;
      for (int g = 0; g < p.group; ++g)
        sgemm_cpu_prec(false, false, og, ohw, kg, 1.f, w + (o0 + g * og) * kg, kg, cb + g * kg * ohw, ohw, 0.f,
                  yb + g * og * ohw, ohw, p.prec);
      bias_forward_cpu(1, oc.end - oc.begin, ohw, bias != nullptr ? bias + o0 : nullptr, yb, act);
    }
  }
}

void conv_backward_cpu(const ConvParams& p, const float* x, const float* w, const float* dy, float* dw, float* db,
                       float beta, float* dx, ConvScratch& s, ConvOutRange oc) {
  oc = conv_out_range(p, oc);
  const int64_t ohw = p.out_h * p.out_w, in_plane = p.c * p.h * p.w;
  const int64_t cg = p.c / p.group, kg = cg * p.kh * p.kw;
  const int64_t og = p.group == 1 ? oc.end - oc.begin : p.out_c / p.group, o0 = oc.begin;
  const int64_t col_floats = p.c * p.kh * p.kw * ohw;
  // Weight-gradient rows [o0, o0 + w_floats / kg) are written; thread accumulators hold just those.
  const int64_t w_floats = (oc.end - oc.begin) * kg;
  dw += o0 * kg;
  w += o0 * kg;
  const int threads = conv_threads(p);
  const bool pointwise = is_pointwise(p);
  if (db != nullptr) bias_backward_cpu(p.n, p.out_c, ohw, dy, db);
  // Thread 0 accumulates into dw directly; the others into private buffers summed afterwards.
  ensure(s.col, threads * col_floats * (pointwise && dx == nullptr ? 0 : 1) + 1);
  if (threads > 1) {
    ensure(s.ytmp, (threads - 1) * w_floats);
    std::memset(s.ytmp.data(), 0, sizeof(float) * (threads - 1) * w_floats);
  }
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    float* col = s.col.data() + t * col_floats;
    float* dwt = t == 0 ? dw : s.ytmp.data() + (t - 1) * w_floats;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < p.n; ++b) {
      const float* xb = x + b * in_plane;
      const float* dyb = dy + (b * p.out_c + o0) * ohw;
      const float* cb = xb;
      if (!pointwise) {
        im2col_cpu(p, xb, 1, col);
        cb = col;
      }
      for (int g = 0; g < p.group; ++g)
        sgemm_cpu_prec(false, true, og, kg, ohw, 1.f, dyb + g * og * ohw, ohw, cb + g * kg * ohw, ohw, 1.f,
                  dwt + g * og * kg, kg, p.prec);
      if (dx != nullptr) {
        float* dxb = dx + b * in_plane;
        if (pointwise) {
          // d(col) is dx itself.
          for (int g = 0; g < p.group; ++g)
            sgemm_cpu_prec(true, false, kg, ohw, og, 1.f, w + g * og * kg, kg, dyb + g * og * ohw, ohw, beta,
                      dxb + g * kg * ohw, ohw, p.prec);
        } else {
          for (int g = 0; g < p.group; ++g)
            sgemm_cpu_prec(true, false, kg, ohw, og, 1.f, w + g * og * kg, kg, dyb + g * og * ohw, ohw, 0.f,
                      col + g * kg * ohw, ohw, p.prec);
          col2im_cpu(p, col, 1, beta, dxb);
        }
      }
    }
  }
  for (int t = 1; t < threads; ++t) {
    const float* part = s.ytmp.data() + (t - 1) * w_floats;
    for (int64_t i = 0; i < w_floats; ++i) dw[i] += part[i];
  }
}

}  // namespace dropnet
