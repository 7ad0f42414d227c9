// DropIn on the CPU: OpenMP loops over the shared arithmetic in dropin_math.h. The loops are
// organised per mode (gradual: two contiguous ranges per sample; Bernoulli: uniforms drawn 64 at a
// time, or one per feature map) but give every element the r of dropin_r, which the CUDA kernels
// evaluate per element (tests/unit_dropin.cpp checks the two agree bit for bit).
#include <algorithm>

#include "core/error.h"
#include "kernels/dropin.h"
#include "kernels/dropin_check.h"
#include "kernels/dropin_math.h"
#include "kernels/store_grad.h"

namespace dropnet {

int64_t dropin_units_from_new(const DropinParams& p) {
  dropin_check_params(p);
  DN_CHECK(p.mode == DropinMode::Gradual, "dropin_units_from_new: only defined for mode gradual");
  const int64_t units = dropin_units_per_sample(p);
  return units - dropin_gradual_skip_units(p.p, units);
}

namespace {

// Calls f(i, r) for every flat element i with its mask value r. Each thread calls its own copy
// of f, so the compiler knows the captured pointers are not changed by the stores through them
// (with the shared lambda it reloads them every element and does not vectorize).
template <class F>
void for_each_r(const DropinParams& p, const F& f_shared) {
  const DropinParams pp = p;
  const int64_t per_sample = pp.c * pp.hw, total = pp.n * per_sample;
  constexpr int64_t kChunk = 16384;
  const int64_t skip_elems = pp.mode == DropinMode::Gradual ? dropin_gradual_skip_elements(pp) : 0;
  const int64_t chunks = (per_sample + kChunk - 1) / kChunk;
  const int64_t groups = (total + kPhiloxGroup - 1) / kPhiloxGroup;
#pragma omp parallel
  {
    const F f = f_shared;
    if (pp.mode == DropinMode::Gradual) {
      // Per sample: [0, skip_elems) reads skip (r = 0), [skip_elems, per_sample) reads new (r = 1).
#pragma omp for collapse(2) schedule(static)
      for (int64_t s = 0; s < pp.n; ++s)
        for (int64_t ch = 0; ch < chunks; ++ch) {
          const int64_t lo = ch * kChunk, hi = std::min(lo + kChunk, per_sample), base = s * per_sample;
          const int64_t mid = std::clamp(skip_elems, lo, hi);
          for (int64_t l = lo; l < mid; ++l) f(base + l, 0.f);
          for (int64_t l = mid; l < hi; ++l) f(base + l, 1.f);
        }
    } else if (!pp.sample) {
#pragma omp for schedule(static)
      for (int64_t i = 0; i < total; ++i) f(i, pp.p);
    } else if (pp.unit == DropinUnit::Channel) {
      // One draw per feature map, at its flat map index.
#pragma omp for schedule(static)
      for (int64_t q = 0; q < pp.n * pp.c; ++q) {
        const float r = dropin_bernoulli(philox_uniform(pp.seed, pp.stream, pp.step, static_cast<uint64_t>(q)), pp.p);
        for (int64_t k = 0; k < pp.hw; ++k) f(q * pp.hw + k, r);
      }
    } else {
      // One draw per element, at its flat index, 64 uniforms at a time.
#pragma omp for schedule(static)
      for (int64_t g = 0; g < groups; ++g) {
        float u[kPhiloxGroup];
        philox_uniform_group(pp.seed, pp.stream, pp.step, static_cast<uint64_t>(g), u);
        const int64_t i0 = g * kPhiloxGroup, len = std::min<int64_t>(kPhiloxGroup, total - i0);
        for (int64_t j = 0; j < len; ++j) f(i0 + j, dropin_bernoulli(u[j], pp.p));
      }
    }
  }
}

}  // namespace

void dropin_forward_cpu(const DropinParams& p, const float* skip, const float* new_, float* y) {
  dropin_check_params(p);
  if (p.n * p.c * p.hw == 0) return;
  DN_CHECK(skip && new_ && y, "dropin_forward_cpu: null pointer");
  for_each_r(p, [=](int64_t i, float r) { y[i] = dropin_mix(r, skip[i], new_[i]); });
}

void dropin_backward_cpu(const DropinParams& p, const float* dy, float beta_skip, float* d_skip,
                         float beta_new, float* d_new) {
  dropin_check_params(p);
  if (p.n * p.c * p.hw == 0 || (!d_skip && !d_new)) return;
  DN_CHECK(dy, "dropin_backward_cpu: null dy");
  for_each_r(p, [=](int64_t i, float r) {
    const float g = dy[i];
    if (d_new) store_grad(d_new[i], beta_new, dropin_grad_share(r, g));
    if (d_skip) store_grad(d_skip[i], beta_skip, dropin_grad_share(1.f - r, g));
  });
}

}  // namespace dropnet
