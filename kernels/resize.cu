// Resize on CUDA: one thread per output element (forward) and per input element (backward, a
// deterministic gather over the outputs that read it), over the arithmetic of resize_math.h with
// the per-axis taps and ranges computed on the fly (ResizeAxisComputed).
#include "core/cuda_check.h"
#include "core/launch.cuh"
#include "kernels/resize.h"
#include "kernels/resize_check.h"
#include "kernels/resize_math.h"
#include "kernels/store_grad.h"

namespace dropnet {

namespace {

__global__ void resize_forward_kernel(ResizeParams p, int64_t total, const float* __restrict__ x,
                                      float* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ox = i % p.out_w;
    int64_t r = i / p.out_w;
    const int64_t oy = r % p.out_h;
    r /= p.out_h;
    const int64_t oc = r % p.out_c;
    const int64_t s = r / p.out_c;
    y[i] = resize_forward_at(p, x, s, oc, resize_axis_tap(p.method, oy, p.h, p.out_h),
                             resize_axis_tap(p.method, ox, p.w, p.out_w));
  }
}

__global__ void resize_backward_kernel(ResizeParams p, int64_t total, const float* __restrict__ dy,
                                       float beta, float* __restrict__ dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ix = i % p.w;
    int64_t r = i / p.w;
    const int64_t iy = r % p.h;
    r /= p.h;
    const int64_t ic = r % p.c;
    const int64_t s = r / p.c;
    const ResizeAxisComputed ay{p.method, p.h, p.out_h}, ax{p.method, p.w, p.out_w};
    store_grad(dx[i], beta,
               resize_backward_at(p, dy, s, ic, iy, ix, ay.range(iy), ax.range(ix), ay, ax));
  }
}

}  // namespace

void resize_forward_cuda(const ResizeParams& p, const float* x, float* y, Stream stream) {
  resize_check_params(p);
  const int64_t total = p.n * p.out_c * p.out_h * p.out_w;
  if (total == 0) return;
  DN_CHECK(x && y, "resize_forward_cuda: null pointer");
  DN_LAUNCH(resize_forward_kernel, grid_for(total), 256, 0, stream, p, total, x, y);
}

void resize_backward_cuda(const ResizeParams& p, const float* dy, float beta, float* dx,
                          Stream stream) {
  resize_check_params(p);
  const int64_t total = p.n * p.c * p.h * p.w;
  if (total == 0) return;
  DN_CHECK(dy && dx, "resize_backward_cuda: null pointer");
  DN_LAUNCH(resize_backward_kernel, grid_for(total), 256, 0, stream, p, total, dy, beta, dx);
}

}  // namespace dropnet
