#include <cmath>

#include "kernels/sgd.h"
#include "kernels/sgd_math.h"

namespace dropnet {

void sgd_update_cpu(int64_t n, float lr, float momentum, float weight_decay, float* w, float* g, float* v) {
#pragma omp parallel for simd if (n > 262144) schedule(static)
  for (int64_t i = 0; i < n; ++i) sgd_step(w + i, g + i, v + i, lr, momentum, weight_decay);
}

void scale_cpu(int64_t n, float alpha, float* x) {
#pragma omp parallel for simd if (n > 262144) schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

double sumsq_cpu(int64_t n, const float* x) {
  double s = 0.0;
#pragma omp parallel for reduction(+ : s) if (n > 262144) schedule(static)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

int64_t count_nonfinite_cpu(int64_t n, const float* x) {
  int64_t c = 0;
#pragma omp parallel for reduction(+ : c) if (n > 262144) schedule(static)
  for (int64_t i = 0; i < n; ++i) c += std::isfinite(x[i]) ? 0 : 1;
  return c;
}

}  // namespace dropnet
