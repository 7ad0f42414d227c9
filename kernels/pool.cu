// CUDA pooling: grid-stride kernels over the same pool_math.h arithmetic as the CPU loops.
// Forward: one thread per output. Backward: one thread per input cell, gathering from the
// windows that cover it, so overlapping windows (stride < kernel) need no atomics and the sum
// order (row-major over windows) is the CPU's.
#include <cstdint>

#include "core/cuda_check.h"
#include "core/launch.cuh"
#include "kernels/pool.h"
#include "kernels/pool_check.h"
#include "kernels/pool_math.h"
#include "kernels/store_grad.h"

namespace dropnet {

namespace {

constexpr int kBlock = 256;

__global__ void pool_forward_kernel(PoolParams p, const float* __restrict__ x, float* __restrict__ y,
                                    int32_t* __restrict__ argmax) {
  const int64_t total = p.n * p.c * p.out_h * p.out_w;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % p.out_w, oh = (i / p.out_w) % p.out_h, pl = i / (p.out_w * p.out_h);
    const float* xp = x + pl * p.h * p.w;
    const PoolWindow win = pool_window(p, oh, ow);
    if (p.method == PoolMethod::Max) {
      float v;
      int32_t a;
      pool_max_window(xp, p.w, win, &v, &a);
      y[i] = v;
      argmax[i] = a;
    } else {
      y[i] = pool_ave_window(xp, p.w, win);
    }
  }
}

__global__ void pool_backward_kernel(PoolParams p, const float* __restrict__ dy,
                                     const int32_t* __restrict__ argmax, float beta,
                                     float* __restrict__ dx) {
  const int64_t total = p.n * p.c * p.h * p.w;
  const int64_t out_sz = p.out_h * p.out_w;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t w = i % p.w, h = (i / p.w) % p.h, pl = i / (p.w * p.h);
    int64_t oh0, oh1, ow0, ow1;
    pool_cover(h, p.kernel_h, p.stride_h, p.pad_h, p.out_h, &oh0, &oh1);
    pool_cover(w, p.kernel_w, p.stride_w, p.pad_w, p.out_w, &ow0, &ow1);
    const float* dyp = dy + pl * out_sz;
    const float g = p.method == PoolMethod::Max
                        ? pool_max_grad(dyp, argmax + pl * out_sz, p.out_w,
                                        static_cast<int32_t>(h * p.w + w), oh0, oh1, ow0, ow1)
                        : pool_ave_grad(p, dyp, oh0, oh1, ow0, ow1);
    store_grad(dx[i], beta, g);
  }
}

}  // namespace

void pool_forward_cuda(const PoolParams& p, const float* x, float* y, int32_t* argmax,
                       Stream stream) {
  pool_check_args(p, x, y, argmax);
  const int64_t total = p.n * p.c * p.out_h * p.out_w;
  if (total == 0) return;
  DN_LAUNCH(pool_forward_kernel, grid_for(total, kBlock), kBlock, 0, stream, p, x, y, argmax);
}

void pool_backward_cuda(const PoolParams& p, const float* dy, const int32_t* argmax, float beta,
                        float* dx, Stream stream) {
  pool_check_args(p, dy, dx, argmax);
  const int64_t total = p.n * p.c * p.h * p.w;
  if (total == 0) return;
  DN_LAUNCH(pool_backward_kernel, grid_for(total, kBlock), kBlock, 0, stream, p, dy, argmax, beta, dx);
}

}  // namespace dropnet
