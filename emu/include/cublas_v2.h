// The emulated cuBLAS (DROPNET_CUDA=EMU): the part of the cuBLAS v2 API that dropnet uses
// (kernels/gemm.cu, core/cuda_check.h), implemented on the host by emu/cublas.cpp over the
// emulated CUDA runtime. Names, types and values are those of the real <cublas_v2.h> (cuBLAS 13),
// so the same sources build against both.
//
// What is emulated, and how:
//   - A handle belongs to the device current at cublasCreate. Its stream (cublasSetStream; the
//     default is nullptr, the legacy default stream of the current device at each call) must
//     belong to that device, and so must the current device at each call: otherwise the call
//     returns CUBLAS_STATUS_EXECUTION_FAILED (as a kernel launch on the wrong device fails) and
//     records cudaErrorInvalidResourceHandle as the CUDA error.
//   - cublasSgemm validates its arguments at the call (CUBLAS_STATUS_INVALID_VALUE for a bad
//     operation, m, n, k < 0, lda < max(1, rows of the stored A), ldb likewise, ldc < max(1, m),
//     null alpha or beta; the reason goes to the thread's CUDA error text through
//     dn_emu::set_error), reads alpha and beta (host pointer mode), and queues the product on
//     the handle's stream. The queued operation checks that A, B and C lie in memory the
//     handle's device can address (a bad pointer faults the device with
//     cudaErrorIllegalAddress at the next synchronization), then computes, column-major,
//     C = alpha op(A) op(B) + beta C with each dot product accumulated in float with fmaf in
//     increasing k. As in the reference BLAS: m == 0 or n == 0 does nothing; alpha == 0 or
//     k == 0 reads neither A nor B; beta == 0 does not read C (NaN there is overwritten); and
//     (alpha == 0 or k == 0) with beta == 1 returns without queuing anything.
//   - cublasSetMathMode validates and stores the mode. With CUBLAS_TF32_TENSOR_OP_MATH,
//     cublasSgemm (and cublasGemmEx at CUBLAS_COMPUTE_32F) rounds every element of A and B to
//     TF32 before the products, as the tensor cores do (dropnet::precision::round_tf32,
//     kernels/precision_math.h); otherwise it computes in FP32.
//   - cublasGemmEx takes CUDA_R_32F A, B and C only (other types: CUBLAS_STATUS_NOT_SUPPORTED),
//     algo CUBLAS_GEMM_DEFAULT or CUBLAS_GEMM_DEFAULT_TENSOR_OP, and the compute types
//     CUBLAS_COMPUTE_32F (FP32, or TF32 under CUBLAS_TF32_TENSOR_OP_MATH), _32F_PEDANTIC (FP32),
//     _32F_FAST_TF32 and _32F_FAST_16BF (A and B rounded to TF32 / BF16 with kernels/
//     precision_math.h, FP32 accumulation); others are CUBLAS_STATUS_NOT_SUPPORTED. Otherwise it
//     is cublasSgemm (same checks, same order of accumulation).
//   - cublasDestroy synchronizes the handle's device (as the real one calls
//     cudaDeviceSynchronize) and frees the handle.
// C++ linkage on purpose (like emu/include/cuda_runtime.h): never collides with libcublas.
#pragma once

#include <cuda_runtime.h>

#define DROPNET_CUBLAS_EMU 1
#define CUBLAS_VER_MAJOR 13
#define CUBLAS_VER_MINOR 0
#define CUBLAS_VER_PATCH 0
#define CUBLAS_VER_BUILD 0
#define CUBLAS_VERSION (CUBLAS_VER_MAJOR * 10000 + CUBLAS_VER_MINOR * 100 + CUBLAS_VER_PATCH)

struct cublasContext;
typedef struct cublasContext* cublasHandle_t;

typedef enum {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
  CUBLAS_STATUS_LICENSE_ERROR = 16,
} cublasStatus_t;

typedef enum {
  CUBLAS_OP_N = 0,
  CUBLAS_OP_T = 1,
  CUBLAS_OP_C = 2,
  CUBLAS_OP_HERMITAN = 2,
  CUBLAS_OP_CONJG = 3,
} cublasOperation_t;

typedef enum {
  CUBLAS_DEFAULT_MATH = 0,
  CUBLAS_TENSOR_OP_MATH = 1,
  CUBLAS_PEDANTIC_MATH = 2,
  CUBLAS_TF32_TENSOR_OP_MATH = 3,
  CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16,
} cublasMath_t;

// library_types.h (the FP32 subset and the types named beside it).
typedef enum cudaDataType_t {
  CUDA_R_32F = 0,
  CUDA_R_64F = 1,
  CUDA_R_16F = 2,
  CUDA_R_16BF = 14,
} cudaDataType;

typedef enum {
  CUBLAS_COMPUTE_16F = 64,
  CUBLAS_COMPUTE_16F_PEDANTIC = 65,
  CUBLAS_COMPUTE_32F = 68,
  CUBLAS_COMPUTE_32F_PEDANTIC = 69,
  CUBLAS_COMPUTE_32F_FAST_16F = 74,
  CUBLAS_COMPUTE_32F_FAST_16BF = 75,
  CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
  CUBLAS_COMPUTE_64F = 70,
  CUBLAS_COMPUTE_64F_PEDANTIC = 71,
  CUBLAS_COMPUTE_32I = 72,
  CUBLAS_COMPUTE_32I_PEDANTIC = 73,
} cublasComputeType_t;

typedef enum {
  CUBLAS_GEMM_DFALT = -1,
  CUBLAS_GEMM_DEFAULT = -1,
  CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99,
  CUBLAS_GEMM_DFALT_TENSOR_OP = 99,
} cublasGemmAlgo_t;

cublasStatus_t cublasCreate(cublasHandle_t* handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode);
const char* cublasGetStatusName(cublasStatus_t status);
const char* cublasGetStatusString(cublasStatus_t status);

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float* alpha, const float* A, int lda, const float* B, int ldb,
                           const float* beta, float* C, int ldc);
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo);
