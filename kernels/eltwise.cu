#include "core/cuda_check.h"
#include "core/launch.cuh"
#include "kernels/eltwise.h"
#include "kernels/eltwise_math.h"
#include "kernels/store_grad.h"

namespace dropnet {

namespace {

__global__ void relu_fwd_kernel(int64_t n, float slope, const float* __restrict__ x, float* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = relu_fwd(x[i], slope);
}

__global__ void relu_bwd_kernel(int64_t n, float slope, const float* __restrict__ x, const float* __restrict__ dy,
                                float beta, float* dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    store_grad(dx[i], beta, relu_bwd(x[i], dy[i], slope));
  }
}

__global__ void bias_fwd_kernel(int64_t total, int64_t channels, int64_t inner, const float* __restrict__ bias,
                                Activation act, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = act(y[i] + (bias != nullptr ? bias[(i / inner) % channels] : 0.f));
}

// One block per channel: reduce over (outer, inner) in a fixed order (deterministic).
__global__ void bias_bwd_kernel(int64_t outer, int64_t channels, int64_t inner, const float* __restrict__ dy,
                                float* dbias) {
  const int64_t c = blockIdx.x;
  float s = 0.f;
  for (int64_t k = threadIdx.x; k < outer * inner; k += blockDim.x) {
    int64_t o = k / inner, i = k % inner;
    s += dy[(o * channels + c) * inner + i];
  }
  __shared__ float red[256];
  red[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) dbias[c] += red[0];
}

}  // namespace

void relu_forward_cuda(int64_t n, float slope, const float* x, float* y, Stream stream) {
  DN_LAUNCH(relu_fwd_kernel, grid_for(n), 256, 0, stream, n, slope, x, y);
}

void relu_backward_cuda(int64_t n, float slope, const float* x, const float* dy, float beta, float* dx,
                        Stream stream) {
  DN_LAUNCH(relu_bwd_kernel, grid_for(n), 256, 0, stream, n, slope, x, dy, beta, dx);
}

void bias_forward_cuda(int64_t outer, int64_t channels, int64_t inner, const float* bias, float* y, Stream stream,
                       Activation act) {
  if (bias == nullptr && !act.relu) return;
  int64_t total = outer * channels * inner;
  DN_LAUNCH(bias_fwd_kernel, grid_for(total), 256, 0, stream, total, channels, inner, bias, act, y);
}

void bias_backward_cuda(int64_t outer, int64_t channels, int64_t inner, const float* dy, float* dbias,
                        Stream stream) {
  if (channels == 0) return;
  DN_LAUNCH(bias_bwd_kernel, static_cast<unsigned>(channels), 256, 0, stream, outer, channels, inner, dy, dbias);
}

}  // namespace dropnet
