// SGEMM, row-major: C(M, N) = alpha * op(A) * op(B) + beta * C, op(A) is (M, K), op(B) is (K, N).
// lda/ldb/ldc are row strides of A, B, C as stored (A is (K, M) when trans_a).
// beta == 0 overwrites C without reading it (C may hold NaN/garbage).
#pragma once

#include <cstdint>

#include "core/device.h"

namespace dropnet {

enum class CpuGemmImpl { Native, OpenBlas };

// Process-wide choice of the CPU implementation (default Native, the AVX-512/AVX2 kernel).
void set_cpu_gemm_impl(CpuGemmImpl impl);
CpuGemmImpl cpu_gemm_impl();

// Uses OpenMP threads when called outside a parallel region; single-threaded inside one.
void sgemm_cpu(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc);

// The hand-written kernel and OpenBLAS, callable directly (tests, benches).
void sgemm_native_cpu(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                      float* c, int64_t ldc);
void sgemm_openblas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc);

#if DROPNET_HAVE_CUDA
// Hand-written tiled kernel (device pointers), on `stream`.
void sgemm_cuda(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                int64_t ldc, Stream stream);
// cuBLAS (FP32, TF32 off), same row-major convention.
void sgemm_cublas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc, Stream stream);
#endif

}  // namespace dropnet
