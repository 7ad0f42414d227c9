#include "core/cuda_check.h"
#include "kernels/sgd.h"
#include "kernels/sgd_math.h"

namespace dropnet {

namespace {

__global__ void sgd_kernel(int64_t n, float lr, float momentum, float wd, float* w, float* g, float* v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    sgd_step(w + i, g + i, v + i, lr, momentum, wd);
}

__global__ void scale_kernel(int64_t n, float a, float* x) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= a;
}

// Two-pass deterministic reduction: per-block partials, then one block sums them in order.
constexpr int kBlocks = 256;
__global__ void sumsq_partial(int64_t n, const float* x, double* part, int mode) {
  __shared__ double s[256];
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = x[i];
    acc += mode == 0 ? static_cast<double>(v) * v : (isfinite(v) ? 0.0 : 1.0);
  }
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[blockIdx.x] = s[0];
}

__global__ void sum_partials(const double* part, int n, double* out) {
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    double s = 0.0;
    for (int i = 0; i < n; ++i) s += part[i];
    out[0] = s;
  }
}

double reduce(int64_t n, const float* x, int mode, Stream stream) {
  double* buf = static_cast<double*>(device_alloc(Device::cuda(0), (kBlocks + 1) * sizeof(double)));
  sumsq_partial<<<kBlocks, 256, 0, stream>>>(n, x, buf, mode);
  DN_CUDA_LAUNCH_CHECK();
  sum_partials<<<1, 1, 0, stream>>>(buf, kBlocks, buf + kBlocks);
  DN_CUDA_LAUNCH_CHECK();
  double out = 0.0;
  DN_CUDA_CHECK(cudaMemcpyAsync(&out, buf + kBlocks, sizeof(double), cudaMemcpyDeviceToHost, stream));
  DN_CUDA_CHECK(cudaStreamSynchronize(stream));
  device_free(Device::cuda(0), buf, (kBlocks + 1) * sizeof(double));
  return out;
}

}  // namespace

void sgd_update_cuda(int64_t n, float lr, float momentum, float weight_decay, float* w, float* g, float* v,
                     Stream stream) {
  sgd_kernel<<<grid_for(n), 256, 0, stream>>>(n, lr, momentum, weight_decay, w, g, v);
  DN_CUDA_LAUNCH_CHECK();
}

void scale_cuda(int64_t n, float alpha, float* x, Stream stream) {
  scale_kernel<<<grid_for(n), 256, 0, stream>>>(n, alpha, x);
  DN_CUDA_LAUNCH_CHECK();
}

double sumsq_cuda(int64_t n, const float* x, Stream stream) { return reduce(n, x, 0, stream); }
int64_t count_nonfinite_cuda(int64_t n, const float* x, Stream stream) {
  return static_cast<int64_t>(reduce(n, x, 1, stream));
}

}  // namespace dropnet
