// What the CPU and CUDA SGEMM benchmarks share: a GEMM shape as the layers call it (op(A) is
// (m, k), op(B) is (k, n)) and its random operands.
#pragma once

#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace dropnet::bench {

struct GemmShape {
  const char* name;
  bool ta, tb;
  int64_t m, n, k;
};

// Uniform in [-1, 1), reproducible from the seed.
inline std::vector<float> random_values(int64_t n, uint64_t seed) {
  HostRng rng(seed, 0);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = rng.uniform(-1.f, 1.f);
  return v;
}

}  // namespace dropnet::bench
