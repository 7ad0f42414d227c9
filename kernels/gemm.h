// SGEMM, row-major: C(M, N) = alpha * op(A) * op(B) + beta * C, op(A) is (M, K), op(B) is (K, N).
// lda/ldb/ldc are row strides of A, B, C as stored (A is (K, M) when trans_a).
// beta == 0 overwrites C without reading it (C may hold NaN/garbage).
//
// Every form has a *_prec twin taking a Precision (the `precision` config key) after ldc: tf32 /
// bf16 round each element of A and B with precision::round as it enters the product (FP32
// accumulation, C stays FP32), the same rounding on every backend, so CPU and CUDA results stay
// comparable; fp32 is the plain form, bit for bit. (Twins, not overloads: callers take the plain
// forms' addresses into std::function.)
#pragma once

#include <cstdint>

#include "core/device.h"
#include "kernels/precision_math.h"

namespace dropnet {

enum class CpuGemmImpl { Native, OpenBlas };

// Process-wide choice of the CPU implementation (default Native, the AVX-512/AVX2 kernel).
void set_cpu_gemm_impl(CpuGemmImpl impl);
CpuGemmImpl cpu_gemm_impl();

// Uses OpenMP threads when called outside a parallel region; single-threaded inside one.
void sgemm_cpu(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc);
void sgemm_cpu_prec(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc, Precision prec);

// The hand-written kernel and OpenBLAS, callable directly (tests, benches).
// Native at tf32 / bf16: B is rounded while its panels are packed, A into a rounded copy per
// MC x KC block. OpenBLAS has no such hook: it multiplies rounded copies of A and B.
void sgemm_native_cpu(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                      float* c, int64_t ldc);
void sgemm_native_cpu_prec(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                           const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                           float* c, int64_t ldc, Precision prec);
void sgemm_openblas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc);
void sgemm_openblas_prec(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                         int64_t ldc, Precision prec);

#if DROPNET_HAVE_CUDA
// Hand-written kernels (device pointers), on `stream`: fp32 the SIMT tiled kernel, tf32 / bf16
// the tensor-core kernel (sgemm_mma_cuda, kernels/gemm_mma.h: operands rounded on the device as
// precision::round rounds them, mma.sync, FP32 accumulation).
void sgemm_cuda(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                int64_t ldc, Stream stream);
void sgemm_cuda_prec(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                     int64_t ldc, Precision prec, Stream stream);
// cuBLAS, same row-major convention. fp32: cublasSgemm with TF32 off; tf32 / bf16: cublasGemmEx
// with compute type CUBLAS_COMPUTE_32F_FAST_TF32 / CUBLAS_COMPUTE_32F_FAST_16BF (FP32 data, the
// tensor cores round the operands, FP32 accumulation).
void sgemm_cublas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc, Stream stream);
void sgemm_cublas_prec(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                       int64_t ldc, Precision prec, Stream stream);
#endif

}  // namespace dropnet
