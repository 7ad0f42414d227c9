// DropIn on CUDA: grid-stride kernels over the shared arithmetic in dropin_math.h, so the mask is
// bit-identical to the CPU path.
#include "core/cuda_check.h"
#include "core/launch.cuh"
#include "kernels/dropin.h"
#include "kernels/dropin_check.h"
#include "kernels/dropin_math.h"
#include "kernels/store_grad.h"

namespace dropnet {

namespace {

__global__ void dropin_forward_kernel(DropinParams p, int64_t total, const float* skip,
                                      const float* new_, float* y) {
  const int64_t per_sample = p.c * p.hw;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t s = i / per_sample;
    y[i] = dropin_mix(dropin_r(p, s, i - s * per_sample), skip[i], new_[i]);
  }
}

__global__ void dropin_backward_kernel(DropinParams p, int64_t total, const float* dy,
                                       float beta_skip, float* d_skip, float beta_new,
                                       float* d_new) {
  const int64_t per_sample = p.c * p.hw;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t s = i / per_sample;
    const float r = dropin_r(p, s, i - s * per_sample), g = dy[i];
    if (d_new) store_grad(d_new[i], beta_new, dropin_grad_share(r, g));
    if (d_skip) store_grad(d_skip[i], beta_skip, dropin_grad_share(1.f - r, g));
  }
}

}  // namespace

void dropin_forward_cuda(const DropinParams& p, const float* skip, const float* new_, float* y,
                         Stream stream) {
  dropin_check_params(p);
  const int64_t total = p.n * p.c * p.hw;
  if (total == 0) return;
  DN_CHECK(skip && new_ && y, "dropin_forward_cuda: null pointer");
  DN_LAUNCH(dropin_forward_kernel, grid_for(total), 256, 0, stream, p, total, skip, new_, y);
}

void dropin_backward_cuda(const DropinParams& p, const float* dy, float beta_skip, float* d_skip,
                          float beta_new, float* d_new, Stream stream) {
  dropin_check_params(p);
  const int64_t total = p.n * p.c * p.hw;
  if (total == 0 || (!d_skip && !d_new)) return;
  DN_CHECK(dy, "dropin_backward_cuda: null dy");
  DN_LAUNCH(dropin_backward_kernel, grid_for(total), 256, 0, stream, p, total, dy, beta_skip, d_skip,
            beta_new, d_new);
}

}  // namespace dropnet
