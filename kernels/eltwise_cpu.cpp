#include "kernels/eltwise.h"

#include "kernels/eltwise_math.h"
#include "kernels/store_grad.h"

namespace dropnet {

void relu_forward_cpu(int64_t n, float slope, const float* x, float* y) {
#pragma omp parallel for simd if (n > 65536) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = relu_fwd(x[i], slope);
}

void relu_backward_cpu(int64_t n, float slope, const float* x, const float* dy, float beta, float* dx) {
  if (beta == 0.f) {
#pragma omp parallel for simd if (n > 65536) schedule(static)
    for (int64_t i = 0; i < n; ++i) dx[i] = relu_bwd(x[i], dy[i], slope);
  } else {
#pragma omp parallel for simd if (n > 65536) schedule(static)
    for (int64_t i = 0; i < n; ++i) store_grad(dx[i], beta, relu_bwd(x[i], dy[i], slope));
  }
}

void bias_forward_cpu(int64_t outer, int64_t channels, int64_t inner, const float* bias, float* y, Activation act) {
  if (bias == nullptr && !act.relu) return;
#pragma omp parallel for collapse(2) if (outer * channels * inner > 65536) schedule(static)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < channels; ++c) {
      float* row = y + (o * channels + c) * inner;
      const float b = bias != nullptr ? bias[c] : 0.f;
      if (act.relu) {
#pragma omp simd
        for (int64_t i = 0; i < inner; ++i) row[i] = relu_fwd(row[i] + b, act.slope);
      } else {
#pragma omp simd
        for (int64_t i = 0; i < inner; ++i) row[i] += b;
      }
    }
}

void bias_backward_cpu(int64_t outer, int64_t channels, int64_t inner, const float* dy, float* dbias) {
#pragma omp parallel for if (outer * channels * inner > 65536) schedule(static)
  for (int64_t c = 0; c < channels; ++c) {
    double acc = 0.0;
    for (int64_t o = 0; o < outer; ++o) {
      const float* row = dy + (o * channels + c) * inner;
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < inner; ++i) s += row[i];
      acc += s;
    }
    dbias[c] += static_cast<float>(acc);
  }
}

}  // namespace dropnet
