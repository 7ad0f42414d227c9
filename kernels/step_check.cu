#include "core/cuda_check.h"
#include "core/launch.cuh"
#include "kernels/rounded_math.h"
#include "kernels/step_check.h"

namespace dropnet {

namespace {

__global__ void record_losses_kernel(const float* const* loss_tops, const float* weights, int nloss, int k,
                                     bool check_finite, float* out, StepCheck* check) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  float l = 0.f;
  bool finite = true;
  for (int j = 0; j < nloss; ++j) {
    const float v = loss_tops[j][0];
    out[k * nloss + j] = v;
    finite = finite && isfinite(v);
    l = add_rounded(l, mul_rounded(weights[j], v));  // as the host's float loop rounds them
  }
  if (check_finite && check->halt == kStepOk && !(finite && isfinite(l))) check->halt = kStepLoss;
  if (check->halt != kStepOk && check->k < 0) check->k = k;
}

// Grid-stride over every top; a block leaves at once unless this sub-iteration's loss halted the run.
__global__ void scan_tops_kernel(const TopRef* tops, int ntops, int k, StepCheck* check) {
  if (check->halt != kStepLoss || check->k != k || check->record >= 0) return;
  for (int t = 0; t < ntops; ++t) {
    const TopRef r = tops[t];
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < r.count; i += int64_t(gridDim.x) * blockDim.x)
      if (!isfinite(r.data[i])) {
        atomicMin(&check->first_top, t);
        return;  // every later top has a larger index
      }
  }
}

__global__ void scan_grads_kernel(int64_t n, const float* g, StepCheck* check) {
  if (check->halt != kStepOk) return;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    if (!isfinite(g[i])) {
      atomicMin(&check->first_grad, static_cast<long long>(i));
      return;  // this thread's later elements have larger indices
    }
}

__global__ void stamp_kernel(int record, StepCheck* check) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  if (check->halt == kStepOk && check->first_grad != LLONG_MAX) check->halt = kStepGrad;
  if (check->halt != kStepOk && check->record < 0) check->record = record;
}

}  // namespace

void record_losses_cuda(const float* const* loss_tops, const float* weights, int nloss, int k, bool check_finite,
                        float* out, StepCheck* check, Stream stream) {
  DN_LAUNCH(record_losses_kernel, 1, 32, 0, stream, loss_tops, weights, nloss, k, check_finite, out, check);
}

void scan_tops_cuda(const TopRef* tops, int ntops, int k, StepCheck* check, Stream stream) {
  if (ntops > 0) DN_LAUNCH(scan_tops_kernel, 128, 256, 0, stream, tops, ntops, k, check);
}

void check_grads_cuda(int64_t n, const float* grads, int record, StepCheck* check, Stream stream) {
  if (n > 0) DN_LAUNCH(scan_grads_kernel, grid_for(n), 256, 0, stream, n, grads, check);
  DN_LAUNCH(stamp_kernel, 1, 32, 0, stream, record, check);
}

}  // namespace dropnet
