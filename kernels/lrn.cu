// CUDA LRN: grid-stride kernels, one thread per element, over the same lrn_math.h arithmetic
// (window bounds, sum order, scale, output, backward formula) as the CPU loops.
#include <cstdint>

#include "core/cuda_check.h"
#include "core/launch.cuh"
#include "kernels/lrn.h"
#include "kernels/lrn_math.h"
#include "kernels/store_grad.h"

namespace dropnet {

namespace {

constexpr int kBlock = 256;

__global__ void lrn_forward_kernel(LrnParams p, const float* __restrict__ x, float* __restrict__ y,
                                   float* __restrict__ scale) {
  const int64_t hw = p.h * p.w, total = p.n * p.c * hw;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t pix = i % hw, pl = i / hw;
    float sum;
    if (p.across_channels) {
      const int64_t c = pl % p.c;
      int64_t lo, hi;
      lrn_window(c, p.c, p.local_size, &lo, &hi);
      sum = lrn_across_sum_sq(x + (pl - c) * hw + pix, hw, lo, hi);
    } else {
      int64_t h0, h1, w0, w1;
      lrn_window(pix / p.w, p.h, p.local_size, &h0, &h1);
      lrn_window(pix % p.w, p.w, p.local_size, &w0, &w1);
      sum = lrn_within_sum_sq(x + pl * hw, p.w, h0, h1, w0, w1);
    }
    const float s = lrn_scale(p, sum);
    scale[i] = s;
    y[i] = lrn_output(x[i], lrn_pow_neg(s, p.beta));
  }
}

__global__ void lrn_backward_kernel(LrnParams p, const float* __restrict__ x,
                                    const float* __restrict__ y, const float* __restrict__ scale,
                                    const float* __restrict__ dy, float beta_accum,
                                    float* __restrict__ dx) {
  const int64_t hw = p.h * p.w, total = p.n * p.c * hw;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t pix = i % hw, pl = i / hw;
    float r;
    if (p.across_channels) {
      const int64_t c = pl % p.c;
      int64_t lo, hi;
      lrn_window(c, p.c, p.local_size, &lo, &hi);
      const int64_t img = (pl - c) * hw + pix;
      r = lrn_across_ratio_sum(dy + img, y + img, scale + img, hw, lo, hi);
    } else {
      int64_t h0, h1, w0, w1;
      lrn_window(pix / p.w, p.h, p.local_size, &h0, &h1);
      lrn_window(pix % p.w, p.w, p.local_size, &w0, &w1);
      const int64_t off = pl * hw;
      r = lrn_within_ratio_sum(dy + off, y + off, scale + off, p.w, h0, h1, w0, w1);
    }
    const float g = lrn_input_grad(p, dy[i], x[i], lrn_pow_neg(scale[i], p.beta), r);
    store_grad(dx[i], beta_accum, g);
  }
}

}  // namespace

void lrn_forward_cuda(const LrnParams& p, const float* x, float* y, float* scale, Stream stream) {
  validate_lrn_params(p);
  DN_CHECK(x != nullptr && y != nullptr && scale != nullptr, "null tensor pointer");
  const int64_t total = p.n * p.c * p.h * p.w;
  DN_LAUNCH(lrn_forward_kernel, grid_for(total, kBlock), kBlock, 0, stream, p, x, y, scale);
}

void lrn_backward_cuda(const LrnParams& p, const float* x, const float* y, const float* scale,
                       const float* dy, float beta_accum, float* dx, Stream stream) {
  validate_lrn_params(p);
  DN_CHECK(x != nullptr && y != nullptr && scale != nullptr && dy != nullptr && dx != nullptr,
           "null tensor pointer");
  const int64_t total = p.n * p.c * p.h * p.w;
  DN_LAUNCH(lrn_backward_kernel, grid_for(total, kBlock), kBlock, 0, stream, p, x, y, scale, dy,
            beta_accum, dx);
}

}  // namespace dropnet
