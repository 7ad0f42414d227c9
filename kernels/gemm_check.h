// The argument checks of every SGEMM entry point (kernels/gemm.h), shared by the CPU kernels
// (gemm_cpu.cpp) and the CUDA ones (gemm.cu). Bad arguments are programming errors (internal
// errors naming the entry point `who`).
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>

#include "core/error.h"

namespace dropnet {

// Sizes >= 0; when C is not empty, ldc >= n and C non-null; when K is not empty either, lda and
// ldb cover op(A) and op(B) and both are non-null. int32_sizes (the CUDA kernels and cuBLAS index
// with int): m, n, k and the leading dimensions must also fit an int, even for an empty C.
inline void gemm_check_args(const char* who, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a,
                            int64_t lda, const float* b, int64_t ldb, const float* c, int64_t ldc,
                            bool int32_sizes = false) {
  DN_CHECK(m >= 0 && n >= 0 && k >= 0, "{}: negative size m={} n={} k={}", who, m, n, k);
  DN_CHECK(!int32_sizes || (m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
                            ldc <= INT_MAX),
           "{}: sizes beyond 32-bit integers (m={} n={} k={})", who, m, n, k);
  if (m == 0 || n == 0) return;
  DN_CHECK(ldc >= n && c != nullptr, "{}: ldc={} < n={} or null C", who, ldc, n);
  if (k == 0) return;
  DN_CHECK(lda >= std::max<int64_t>(1, ta ? m : k) && a != nullptr, "{}: lda={} too small for op(A) ({}, {}){}",
           who, lda, m, k, ta ? " transposed" : "");
  DN_CHECK(ldb >= std::max<int64_t>(1, tb ? k : n) && b != nullptr, "{}: ldb={} too small for op(B) ({}, {}){}",
           who, ldb, k, n, tb ? " transposed" : "");
}

}  // namespace dropnet
