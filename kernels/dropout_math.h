// Dropout mask and scaling, shared by dropout_cpu.cpp and dropout.cu (DESIGN.md §3), and a
// vectorizable host-side batch of the same Philox uniforms (also used by DropIn's CPU loops).
#pragma once

#include <cstdint>

#include "core/hostdev.h"
#include "core/rng.h"
#include "kernels/dropout.h"

namespace dropnet {

// Kept with probability 1 - ratio (u is a multiple of 2^-24 in [0, 1), so ratio = 0 keeps all).
DN_HD bool dropout_keep_u(float u, float ratio) { return u >= ratio; }

DN_HD bool dropout_keep(const DropoutParams& p, int64_t i) {
  return dropout_keep_u(philox_uniform(p.seed, p.stream, p.step, static_cast<uint64_t>(i)), p.ratio);
}

// 1 / (1 - ratio): an IEEE float division, correctly rounded on host and device alike.
DN_HD float dropout_scale(const DropoutParams& p) { return 1.f / (1.f - p.ratio); }

// The forward value and the gradient share the same rule: v * scale where kept, else 0.
DN_HD float dropout_apply(bool keep, float scale, float v) { return keep ? v * scale : 0.f; }

// Host only: u[j] = philox_uniform(seed, stream, step, 64 * group + j) for j < 64, i.e. the 16
// Philox blocks 16 * group .. 16 * group + 15 (philox_uniform reads word index % 4 of block
// index / 4). Evaluated lane by lane so the compiler vectorizes the 16 independent blocks; one
// philox_uniform call per element costs a full block each and does not vectorize.
constexpr int kPhiloxGroup = 64;
inline void philox_uniform_group(uint64_t seed, uint32_t stream, uint32_t step, uint64_t group,
                                 float* u /* [kPhiloxGroup] */) {
  constexpr int kLanes = kPhiloxGroup / 4;
  uint32_t w[4][kLanes];
  for (int l = 0; l < kLanes; ++l) {
    const uint64_t block = group * kLanes + static_cast<uint64_t>(l);
    const Philox4 r = philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), stream,
                                    step, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    w[0][l] = r.v[0];
    w[1][l] = r.v[1];
    w[2][l] = r.v[2];
    w[3][l] = r.v[3];
  }
  for (int l = 0; l < kLanes; ++l)
    for (int k = 0; k < 4; ++k) u[4 * l + k] = u32_to_unit_float(w[k][l]);
}

}  // namespace dropnet
