// DropIn mask and mixing arithmetic, shared by dropin_cpu.cpp and dropin.cu (DESIGN.md §3).
#pragma once

#include <math.h>

#include <cstdint>

#include "core/hostdev.h"
#include "core/rng.h"
#include "kernels/dropin.h"
#include "kernels/dropout_math.h"  // philox_uniform_group for the CPU loops

namespace dropnet {

// p(t) = clamp((t - start) / length, 0, 1), the division in double (the same on host and
// device). length <= 0 (rejected by the layer) degrades to a step at `start`.
DN_HD float dropin_gradual_p(int64_t t, int64_t start, int64_t length) {
  if (t <= start) return 0.f;
  if (length <= 0 || t - start >= length) return 1.f;
  return static_cast<float>(static_cast<double>(t - start) / static_cast<double>(length));
}

// Units per sample: elements (c * hw) or feature maps (c).
DN_HD int64_t dropin_units_per_sample(const DropinParams& p) {
  return p.unit == DropinUnit::Channel ? p.c : p.c * p.hw;
}

// floor(q * n_units), q = 1 - p: the units of a sample that read `skip` (paper eq. 1).
// Computed in double: 1 - p is exact for a float p, and (1 - p) * n_units is exact while
// n_units < 2^29, so this is the exact floor for the float p and bit-identical on host and device
// (no FMA contraction is possible: a subtraction feeds a multiply). Note that p is the float
// p(t): at t = start + d/3 the float p is slightly above 1/3, so q * n that is an integer in exact
// arithmetic may floor one lower; every backend and the metric helper agree because they all
// evaluate this function.
DN_HD int64_t dropin_gradual_skip_units(float p, int64_t n_units) {
  double k = floor((1.0 - static_cast<double>(p)) * static_cast<double>(n_units));
  if (k < 0.0) return 0;
  if (k > static_cast<double>(n_units)) return n_units;
  return static_cast<int64_t>(k);
}

// Gradual: the elements of a sample that read `skip` (the first skip units, whole maps for unit
// Channel), so r(lambda) = lambda < this ? 0 : 1.
DN_HD int64_t dropin_gradual_skip_elements(const DropinParams& p) {
  const int64_t units = dropin_gradual_skip_units(p.p, dropin_units_per_sample(p));
  return p.unit == DropinUnit::Channel ? units * p.hw : units;
}

// Regularize: a uniform u in [0, 1) takes `new` with probability p.
DN_HD float dropin_bernoulli(float u, float p) { return u < p ? 1.f : 0.f; }

// r for element `lambda` (C-order index within the sample, 0 <= lambda < c * hw) of `sample`:
// exactly 0 or 1, or p itself for the regularize expectation.
// RNG index of a Bernoulli draw: sample * c * hw + lambda for unit Element (the flat element
// index), sample * c + channel for unit Channel (the flat feature-map index: one draw per map).
DN_HD float dropin_r(const DropinParams& p, int64_t sample, int64_t lambda) {
  if (p.mode == DropinMode::Gradual) return lambda < dropin_gradual_skip_elements(p) ? 0.f : 1.f;
  if (!p.sample) return p.p;
  const int64_t draw = p.unit == DropinUnit::Channel ? sample * p.c + lambda / p.hw : sample * p.c * p.hw + lambda;
  return dropin_bernoulli(philox_uniform(p.seed, p.stream, p.step, static_cast<uint64_t>(draw)), p.p);
}

// r * new + (1 - r) * skip. A binary mask selects (so a non-finite value in the unused input
// does not leak through 0 * inf); the expectation uses an explicit fma so host and device round
// the same way.
// Written as selects over precomputed values (no branches) so CPU loops with a random mask
// vectorize instead of mispredicting.
DN_HD float dropin_mix(float r, float skip, float new_) {
  const float expectation = fmaf(r, new_, (1.f - r) * skip);
  return r == 1.f ? new_ : (r == 0.f ? skip : expectation);
}

// Gradient share w * dy (w = r for `new`, 1 - r for `skip`), exact zero for a closed path.
DN_HD float dropin_grad_share(float w, float dy) {
  const float scaled = w * dy;
  return w == 1.f ? dy : (w == 0.f ? 0.f : scaled);
}

}  // namespace dropnet
