#include "core/cuda_check.h"
#include "core/launch.cuh"
#include "kernels/softmax_loss.h"

namespace dropnet {

namespace {

// The host's rule (layers/loss_layers.cpp): the ignore label, or an integer in [0, classes).
__device__ bool label_ok(const SoftmaxParams& p, float l) {
  if (p.has_ignore && static_cast<int>(l) == p.ignore_label) return true;
  return l >= 0.f && l < static_cast<float>(p.classes) && l == static_cast<float>(static_cast<int>(l));
}

// One block: the first bad position (a block-wide minimum), recorded unless the run has halted.
__global__ void check_labels_kernel(SoftmaxParams p, const float* labels, StepCheck* check) {
  const int64_t n = p.outer * p.inner;
  __shared__ long long first[256];
  long long f = LLONG_MAX;
  for (int64_t j = threadIdx.x; j < n && f == LLONG_MAX; j += blockDim.x)
    if (!label_ok(p, labels[j])) f = j;
  first[threadIdx.x] = f;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) first[threadIdx.x] = min(first[threadIdx.x], first[threadIdx.x + w]);
    __syncthreads();
  }
  if (threadIdx.x == 0 && first[0] != LLONG_MAX && check->halt == kStepOk) {
    check->halt = kStepLabel;
    check->label_pos = static_cast<int>(first[0]);
    check->label_value = labels[first[0]];
    check->label_classes = static_cast<int>(p.classes);
  }
}

// Per position: softmax into prob, loss term into scratch[pos], validity encoded as
// scratch[n + pos] (so a single reduction gives both the sum and the count).
__global__ void softmax_loss_fwd_kernel(SoftmaxParams p, const float* __restrict__ x,
                                        const float* __restrict__ labels, float* prob, float* scratch) {
  const int64_t n = p.outer * p.inner;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n; j += int64_t(gridDim.x) * blockDim.x) {
    int valid = 1;
    // A bad label (check_labels_kernel halts the run) reads no probability out of bounds.
    float l = label_ok(p, labels[j]) ? softmax_loss_position(p, x, labels, prob, j / p.inner, j % p.inner, &valid)
                                     : __int_as_float(0x7fc00000);
    scratch[j] = l;
    scratch[n + j] = static_cast<float>(valid);
  }
}

// Single-block deterministic reduction: out[0] = sum(a) / max(sum(b), 1) (b may be null -> n).
__global__ void mean_reduce_kernel(const float* a, const float* b, int64_t n, float* out) {
  __shared__ double sa[256], sb[256];
  double x = 0.0, y = 0.0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    x += a[j];
    y += b ? b[j] : 1.0;
  }
  sa[threadIdx.x] = x;
  sb[threadIdx.x] = y;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      sa[threadIdx.x] += sa[threadIdx.x + w];
      sb[threadIdx.x] += sb[threadIdx.x + w];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = sb[0] > 0 ? static_cast<float>(sa[0] / sb[0]) : 0.f;
}

__global__ void count_valid_kernel(SoftmaxParams p, const float* labels, float* scratch) {
  const int64_t n = p.outer * p.inner;
  __shared__ float s[256];
  float c = 0.f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    c += (p.has_ignore && static_cast<int>(labels[j]) == p.ignore_label) ? 0.f : 1.f;
  s[threadIdx.x] = c;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) scratch[0] = s[0];
}

__global__ void softmax_loss_bwd_kernel(SoftmaxParams p, const float* __restrict__ prob,
                                        const float* __restrict__ labels, float loss_weight, float beta,
                                        const float* valid, float* dx) {
  const int64_t total = p.outer * p.classes * p.inner;
  const float scale = valid[0] > 0.f ? loss_weight / valid[0] : 0.f;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += int64_t(gridDim.x) * blockDim.x) {
    int64_t i = k % p.inner, c = (k / p.inner) % p.classes, o = k / (p.inner * p.classes);
    float g = softmax_loss_grad(p, prob, labels, o, c, i, scale);
    dx[k] = beta == 0.f ? g : beta * dx[k] + g;
  }
}

__global__ void accuracy_kernel(SoftmaxParams p, int k, const float* __restrict__ x, const float* __restrict__ labels,
                                float* scratch) {
  const int64_t n = p.outer * p.inner;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n; j += int64_t(gridDim.x) * blockDim.x) {
    int64_t o = j / p.inner, i = j % p.inner;
    int label = static_cast<int>(labels[j]);
    bool ignored = p.has_ignore && label == p.ignore_label;
    scratch[j] = ignored || !label_ok(p, labels[j])
                     ? 0.f
                     : static_cast<float>(topk_correct(x + o * p.classes * p.inner + i, p.classes, p.inner, label, k));
    scratch[n + j] = ignored ? 0.f : 1.f;
  }
}

}  // namespace

void check_labels_cuda(const SoftmaxParams& p, const float* labels, StepCheck* check, Stream stream) {
  DN_LAUNCH(check_labels_kernel, 1, 256, 0, stream, p, labels, check);
}

void softmax_loss_forward_cuda(const SoftmaxParams& p, const float* x, const float* labels, float* prob,
                               float* scratch, float* loss, Stream stream) {
  const int64_t n = p.outer * p.inner;
  DN_LAUNCH(softmax_loss_fwd_kernel, grid_for(n), 256, 0, stream, p, x, labels, prob, scratch);
  DN_LAUNCH(mean_reduce_kernel, 1, 256, 0, stream, scratch, scratch + n, n, loss);
}

void softmax_loss_backward_cuda(const SoftmaxParams& p, const float* prob, const float* labels, float loss_weight,
                                float beta, float* scratch, float* dx, Stream stream) {
  DN_LAUNCH(count_valid_kernel, 1, 256, 0, stream, p, labels, scratch);
  const int64_t total = p.outer * p.classes * p.inner;
  DN_LAUNCH(softmax_loss_bwd_kernel, grid_for(total), 256, 0, stream, p, prob, labels, loss_weight, beta, scratch, dx);
}

void accuracy_forward_cuda(const SoftmaxParams& p, int top_k, const float* x, const float* labels, float* scratch,
                           float* accuracy, Stream stream) {
  const int64_t n = p.outer * p.inner;
  DN_LAUNCH(accuracy_kernel, grid_for(n), 256, 0, stream, p, top_k, x, labels, scratch);
  DN_LAUNCH(mean_reduce_kernel, 1, 256, 0, stream, scratch, scratch + n, n, accuracy);
}

}  // namespace dropnet
