// Dropout on the CPU: OpenMP loops over dropout_math.h, drawing the uniforms 64 at a time
// (philox_uniform_group, the same values as philox_uniform per element).
#include "core/error.h"
#include "kernels/dropout.h"
#include "kernels/dropout_check.h"
#include "kernels/dropout_math.h"
#include "kernels/store_grad.h"

namespace dropnet {

namespace {

// f(i, keep) for every element. Each thread calls its own copy of f (see dropin_cpu.cpp).
template <class F>
void for_each_mask(const DropoutParams& p, const F& f_shared) {
  const DropoutParams pp = p;
  const int64_t groups = (pp.count + kPhiloxGroup - 1) / kPhiloxGroup;
#pragma omp parallel
  {
    const F f = f_shared;
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      float u[kPhiloxGroup];
      philox_uniform_group(pp.seed, pp.stream, pp.step, static_cast<uint64_t>(g), u);
      const int64_t i0 = g * kPhiloxGroup;
      const int64_t len = pp.count - i0 < kPhiloxGroup ? pp.count - i0 : kPhiloxGroup;
      for (int64_t j = 0; j < len; ++j) f(i0 + j, dropout_keep_u(u[j], pp.ratio));
    }
  }
}

}  // namespace

void dropout_forward_cpu(const DropoutParams& p, const float* x, float* y) {
  dropout_check_params(p);
  if (p.count == 0) return;
  DN_CHECK(x && y, "dropout_forward_cpu: null pointer");
  const float scale = dropout_scale(p);
  for_each_mask(p, [=](int64_t i, bool keep) { y[i] = dropout_apply(keep, scale, x[i]); });
}

void dropout_backward_cpu(const DropoutParams& p, const float* dy, float beta, float* dx) {
  dropout_check_params(p);
  if (p.count == 0) return;
  DN_CHECK(dy && dx, "dropout_backward_cpu: null pointer");
  const float scale = dropout_scale(p);
  for_each_mask(p, [=](int64_t i, bool keep) {
    store_grad(dx[i], beta, dropout_apply(keep, scale, dy[i]));
  });
}

}  // namespace dropnet
