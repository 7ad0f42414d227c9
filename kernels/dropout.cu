// Dropout on CUDA: grid-stride kernels over dropout_math.h (masks bit-identical to the CPU path).
#include "core/cuda_check.h"
#include "core/launch.cuh"
#include "kernels/dropout.h"
#include "kernels/dropout_check.h"
#include "kernels/dropout_math.h"
#include "kernels/store_grad.h"

namespace dropnet {

namespace {

__global__ void dropout_forward_kernel(DropoutParams p, float scale, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < p.count;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = dropout_apply(dropout_keep(p, i), scale, x[i]);
}

__global__ void dropout_backward_kernel(DropoutParams p, float scale, const float* dy, float beta,
                                        float* dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < p.count;
       i += int64_t(gridDim.x) * blockDim.x)
    store_grad(dx[i], beta, dropout_apply(dropout_keep(p, i), scale, dy[i]));
}

}  // namespace

void dropout_forward_cuda(const DropoutParams& p, const float* x, float* y, Stream stream) {
  dropout_check_params(p);
  if (p.count == 0) return;
  DN_CHECK(x && y, "dropout_forward_cuda: null pointer");
  DN_LAUNCH(dropout_forward_kernel, grid_for(p.count), 256, 0, stream, p, dropout_scale(p), x, y);
}

void dropout_backward_cuda(const DropoutParams& p, const float* dy, float beta, float* dx,
                           Stream stream) {
  dropout_check_params(p);
  if (p.count == 0) return;
  DN_CHECK(dy && dx, "dropout_backward_cuda: null pointer");
  DN_LAUNCH(dropout_backward_kernel, grid_for(p.count), 256, 0, stream, p, dropout_scale(p), dy, beta, dx);
}

}  // namespace dropnet
