#include "core/error.h"
#include "kernels/grow.h"
#include "kernels/grow_check.h"
#include "kernels/grow_math.h"
#include "kernels/store_grad.h"

namespace dropnet {

// Per sample: the active channels are one contiguous run, the inactive ones the next.
void grow_forward_cpu(const GrowParams& p, const float* x, float* y) {
  grow_check_params(p);
  const int64_t on = p.active * p.hw, all = p.c * p.hw;
#pragma omp parallel for schedule(static) if (p.n * all > (1 << 16))
  for (int64_t b = 0; b < p.n; ++b) {
    const float* xb = x + b * all;
    float* yb = y + b * all;
    for (int64_t i = 0; i < on; ++i) yb[i] = xb[i];
    for (int64_t i = on; i < all; ++i) yb[i] = 0.f;
  }
}

void grow_backward_cpu(const GrowParams& p, const float* dy, float beta, float* dx) {
  grow_check_params(p);
  const int64_t count = p.n * p.c * p.hw;
#pragma omp parallel for schedule(static) if (count > (1 << 16))
  for (int64_t i = 0; i < count; ++i) store_grad(dx[i], beta, grow_value(p, i, dy[i]));
}

}  // namespace dropnet
