// Width growth on CUDA: grid-stride kernels over grow_math.h.
#include "core/cuda_check.h"
#include "core/launch.cuh"
#include "kernels/grow.h"
#include "kernels/grow_check.h"
#include "kernels/grow_math.h"
#include "kernels/store_grad.h"

namespace dropnet {

namespace {

__global__ void grow_forward_kernel(GrowParams p, const float* x, float* y) {
  const int64_t count = p.n * p.c * p.hw;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = grow_value(p, i, x[i]);
}

__global__ void grow_backward_kernel(GrowParams p, const float* dy, float beta, float* dx) {
  const int64_t count = p.n * p.c * p.hw;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    store_grad(dx[i], beta, grow_value(p, i, dy[i]));
}

}  // namespace

void grow_forward_cuda(const GrowParams& p, const float* x, float* y, Stream stream) {
  grow_check_params(p);
  const int64_t count = p.n * p.c * p.hw;
  if (count == 0) return;
  DN_CHECK(x && y, "grow_forward_cuda: null pointer");
  DN_LAUNCH(grow_forward_kernel, grid_for(count), 256, 0, stream, p, x, y);
}

void grow_backward_cuda(const GrowParams& p, const float* dy, float beta, float* dx, Stream stream) {
  grow_check_params(p);
  const int64_t count = p.n * p.c * p.hw;
  if (count == 0) return;
  DN_CHECK(dy && dx, "grow_backward_cuda: null pointer");
  DN_LAUNCH(grow_backward_kernel, grid_for(count), 256, 0, stream, p, dy, beta, dx);
}

}  // namespace dropnet
