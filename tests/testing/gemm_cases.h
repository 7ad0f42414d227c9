// SGEMM test cases shared by the CPU (unit_gemm), CUDA (cuda_gemm) and emulated-kernel (emu_gemm) tests: the size
// sweep, the LeNet training shapes, a double-precision reference and the check of one case against a reference.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dropnet::testing {

// C = alpha * op(A) op(B) + beta * C on row-major operands (the signature of the host sgemm_* kernels).
using GemmFn = std::function<void(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                                  int64_t, float, float*, int64_t)>;

struct GemmCase {
  bool ta = false, tb = false;
  int64_t m = 1, n = 1, k = 1;
  float alpha = 1.f, beta = 0.f;
  int64_t pad = 0;   // extra elements per row of A, B and C beyond the logical width
  int misalign = 0;  // device copies only: bit 0: A, bit 1: B, bit 2: C start one float past a 16-byte boundary
  std::string str() const;
};

inline constexpr float kGemmAlphas[] = {1.f, 0.5f, -2.f};
inline constexpr float kGemmBetas[] = {0.f, 1.f, 0.3f};

// Every (m, n) pair of {1, 2, 3, 7, 15, 16, 17, 31, 33, 64, 65, 100, 127, 129} under every transpose combination,
// k cycling through the same sizes and alpha/beta through all 9 combinations of kGemmAlphas x kGemmBetas.
// `layout(idx, g)` sets the padding (and misalignment) of the idx-th case: each backend sweeps its own.
std::vector<GemmCase> gemm_sweep_cases(const std::function<void(int idx, GemmCase& g)>& layout);

// The GEMMs of Caffe's LeNet at batch 64 (im2col over the whole batch) in their real layouts, alpha 1, beta 0:
// conv1 fwd, wgrad; conv2 fwd, wgrad, dgrad; fc1 fwd, wgrad, dgrad; fc2 fwd, wgrad, dgrad.
std::vector<GemmCase> gemm_lenet_cases();

// The reference: accumulates op(A) op(B) in double over k in order, then C = alpha * acc + beta * C for the m x n
// logical block (columns past n untouched). C is not read when beta == 0 (it may hold NaN).
void sgemm_reference(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                     const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// Runs `g` through `fn` on random operands from `seed` and compares the m x n result with what `reference` computes
// from the same operands (atol grows with sqrt(k) and |alpha|: float accumulation error). C's padding columns hold a
// sentinel that `fn` must not overwrite, and C is NaN under beta == 0, so reading it shows. Safe to call from
// several threads at once (no gtest assertions inside).
::testing::AssertionResult check_gemm_case(const GemmFn& fn, const GemmCase& g, uint64_t seed,
                                           const GemmFn& reference = sgemm_reference);

// EXPECTs check(g, seed) for each case, seed advancing by 3 before every case; after 10 failing cases the test
// fails and the rest are skipped (a broken kernel would otherwise print hundreds of them).
void expect_gemm_sweep(const std::vector<GemmCase>& cases, uint64_t seed,
                       const std::function<::testing::AssertionResult(const GemmCase& g, uint64_t seed)>& check);

}  // namespace dropnet::testing
