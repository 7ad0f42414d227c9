// The emulated cuBLAS: see emu/include/cublas_v2.h for what is emulated and how.
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "emu.h"
#include "kernels/precision_math.h"

struct cublasContext {
  int device = 0;                // the device current at cublasCreate
  cudaStream_t stream = nullptr;  // cublasSetStream
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace {

// An argument error: the reason goes to the thread's CUDA error text (dn_emu::set_error).
cublasStatus_t invalid(const std::string& detail) {
  dn_emu::set_error(cudaErrorInvalidValue, detail);
  return CUBLAS_STATUS_INVALID_VALUE;
}

// Elements spanned by a column-major rows x cols matrix with leading dimension ld (rows, cols > 0).
int64_t extent(int64_t rows, int64_t cols, int64_t ld) { return (cols - 1) * ld + rows; }

// Column-major C = alpha op(A) op(B) + beta C, op(A) m x k, op(B) k x n, m, n, k > 0 and
// alpha != 0 (the caller handles the rest). Each C element's dot product is accumulated in float
// with fmaf in increasing p (as a simple GPU kernel does); the loop order only changes which
// element is worked on, never the order of one element's sum.
void sgemm_ref(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  std::vector<float> acc(static_cast<size_t>(m));
  for (int64_t j = 0; j < n; ++j) {
    std::fill(acc.begin(), acc.end(), 0.f);
    // op(B)(p, j): B[p + j ldb] (N) or B[j + p ldb] (T).
    const float* bj = tb ? b + j : b + j * ldb;
    const int64_t bstep = tb ? ldb : 1;
    if (!ta) {
      // op(A)(i, p) = A[i + p lda]: run down column p of A for every p in order.
      for (int64_t p = 0; p < k; ++p) {
        const float bv = bj[p * bstep];
        const float* ap = a + p * lda;
        for (int64_t i = 0; i < m; ++i) acc[i] = std::fmaf(ap[i], bv, acc[i]);
      }
    } else {
      // op(A)(i, p) = A[p + i lda]: a contiguous dot product per i.
      for (int64_t i = 0; i < m; ++i) {
        const float* ai = a + i * lda;
        float s = 0.f;
        for (int64_t p = 0; p < k; ++p) s = std::fmaf(ai[p], bj[p * bstep], s);
        acc[i] = s;
      }
    }
    float* cj = c + j * ldc;
    if (beta == 0.f) {
      for (int64_t i = 0; i < m; ++i) cj[i] = alpha * acc[i];
    } else {
      for (int64_t i = 0; i < m; ++i) cj[i] = std::fmaf(alpha, acc[i], beta * cj[i]);
    }
  }
}

// C = beta C (alpha == 0 or k == 0); beta == 0 writes zeros without reading C.
void scale_ref(int64_t m, int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t j = 0; j < n; ++j) {
    float* cj = c + j * ldc;
    if (beta == 0.f)
      std::fill(cj, cj + m, 0.f);
    else
      for (int64_t i = 0; i < m; ++i) cj[i] *= beta;
  }
}

// A rounded, contiguous copy (ld = rows) of a column-major rows x cols matrix: the operand as the
// tensor cores see it (the same rounding as dropnet's own kernels, kernels/precision_math.h).
std::vector<float> rounded_copy(dropnet::Precision prec, const float* x, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t j = 0; j < cols; ++j)
    for (int64_t i = 0; i < rows; ++i) out[j * rows + i] = dropnet::precision::round(prec, x[j * ld + i]);
  return out;
}

const char* op_name(cublasOperation_t op) {
  switch (op) {
    case CUBLAS_OP_N: return "N";
    case CUBLAS_OP_T: return "T";
    case CUBLAS_OP_C: return "C";
    default: return "?";
  }
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (handle == nullptr) return invalid("cublasCreate: null handle pointer");
  const int device = dn_emu::current_device();
  if (device < 0 || device >= dn_emu::device_count()) {
    *handle = nullptr;
    return CUBLAS_STATUS_NOT_INITIALIZED;
  }
  *handle = new cublasContext{device, nullptr, CUBLAS_DEFAULT_MATH};
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  // The real cublasDestroy calls cudaDeviceSynchronize (on the handle's device).
  const int prev = dn_emu::current_device();
  if (prev != handle->device) (void)cudaSetDevice(handle->device);
  (void)cudaDeviceSynchronize();
  if (prev != handle->device) (void)cudaSetDevice(prev);
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;  // checked against the handle's device at each call that uses it
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (stream == nullptr) return invalid("cublasGetStream: null stream pointer");
  *stream = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  const int base = static_cast<int>(mode) & ~static_cast<int>(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
  if (base < CUBLAS_DEFAULT_MATH || base > CUBLAS_TF32_TENSOR_OP_MATH)
    return invalid("cublasSetMathMode: unknown math mode " + std::to_string(static_cast<int>(mode)));
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode == nullptr) return invalid("cublasGetMathMode: null mode pointer");
  *mode = handle->math;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "the operation completed successfully";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "error detected trying to check the license";
  }
  return "unknown cuBLAS status";
}

namespace {

// cublasSgemm and cublasGemmEx on FP32 data: `name` in messages, operands rounded to `prec`.
cublasStatus_t gemm_impl(const char* name, cublasHandle_t handle, cublasOperation_t transa,
                         cublasOperation_t transb, int m, int n, int k, const float* alpha, const float* A, int lda,
                         const float* B, int ldb, const float* beta, float* C, int ldc, dropnet::Precision prec) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  const auto valid_op = [](cublasOperation_t op) {
    return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
  };
  if (!valid_op(transa) || !valid_op(transb))
    return invalid(std::string(name) + ": invalid operation (transa " + std::to_string(static_cast<int>(transa)) +
                   ", transb " + std::to_string(static_cast<int>(transb)) + ")");
  // For real matrices CUBLAS_OP_C is the transpose.
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  if (m < 0 || n < 0 || k < 0)
    return invalid(std::string(name) + ": negative size m=" + std::to_string(m) + " n=" + std::to_string(n) +
                   " k=" + std::to_string(k));
  // The stored A is m x k (N) or k x m (T); the stored B is k x n (N) or n x k (T).
  const int a_rows = ta ? k : m, b_rows = tb ? n : k;
  if (lda < std::max(1, a_rows))
    return invalid(std::string(name) + ": lda=" + std::to_string(lda) + " < max(1, " + std::to_string(a_rows) +
                   ") for transa=" + op_name(transa));
  if (ldb < std::max(1, b_rows))
    return invalid(std::string(name) + ": ldb=" + std::to_string(ldb) + " < max(1, " + std::to_string(b_rows) +
                   ") for transb=" + op_name(transb));
  if (ldc < std::max(1, m))
    return invalid(std::string(name) + ": ldc=" + std::to_string(ldc) + " < max(1, m=" + std::to_string(m) + ")");
  if (alpha == nullptr || beta == nullptr) return invalid(std::string(name) + ": null alpha or beta");

  // The handle's device must be the current one and own the stream (a launch elsewhere fails).
  const int device = handle->device;
  const int cur = dn_emu::current_device();
  const int sdev = dn_emu::stream_device(handle->stream);
  if (cur != device || sdev != device) {
    dn_emu::set_error(cudaErrorInvalidResourceHandle,
                      std::string(name) + ": the handle belongs to cuda:" + std::to_string(device) + " but " +
                          (cur != device ? "the current device is cuda:" + std::to_string(cur)
                                         : "its stream belongs to cuda:" + std::to_string(sdev)));
    return CUBLAS_STATUS_EXECUTION_FAILED;
  }

  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const float al = *alpha, be = *beta;  // host pointer mode: read at the call
  const bool no_product = al == 0.f || k == 0;
  if (no_product && be == 1.f) return CUBLAS_STATUS_SUCCESS;  // the reference BLAS quick return

  const int64_t m64 = m, n64 = n, k64 = k, lda64 = lda, ldb64 = ldb, ldc64 = ldc;
  const cudaError_t e = dn_emu::enqueue(handle->stream, name, [=] {
    const size_t f = sizeof(float);
    if (!no_product) {
      dn_emu::check_device_access(device, A, f * extent(a_rows, ta ? m64 : k64, lda64), "A");
      dn_emu::check_device_access(device, B, f * extent(b_rows, tb ? k64 : n64, ldb64), "B");
    }
    dn_emu::check_device_access(device, C, f * extent(m64, n64, ldc64), "C");
    if (no_product)
      scale_ref(m64, n64, be, C, ldc64);
    else if (prec == dropnet::Precision::FP32)
      sgemm_ref(ta, tb, m64, n64, k64, al, A, lda64, B, ldb64, be, C, ldc64);
    else {
      const std::vector<float> ar = rounded_copy(prec, A, a_rows, ta ? m64 : k64, lda64);
      const std::vector<float> br = rounded_copy(prec, B, b_rows, tb ? k64 : n64, ldb64);
      sgemm_ref(ta, tb, m64, n64, k64, al, ar.data(), a_rows, br.data(), b_rows, be, C, ldc64);
    }
  });
  return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // namespace

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float* alpha, const float* A, int lda, const float* B, int ldb,
                           const float* beta, float* C, int ldc) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  // CUBLAS_TF32_TENSOR_OP_MATH lets single-precision routines use TF32 tensor cores.
  const int base = static_cast<int>(handle->math) & ~static_cast<int>(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
  const dropnet::Precision prec =
      base == CUBLAS_TF32_TENSOR_OP_MATH ? dropnet::Precision::TF32 : dropnet::Precision::FP32;
  return gemm_impl("cublasSgemm", handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, prec);
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (Atype != CUDA_R_32F || Btype != CUDA_R_32F || Ctype != CUDA_R_32F) {
    dn_emu::set_error(cudaErrorInvalidValue, "cublasGemmEx: the emulation supports CUDA_R_32F A, B and C only (got " +
                                                 std::to_string(Atype) + ", " + std::to_string(Btype) + ", " +
                                                 std::to_string(Ctype) + ")");
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (algo != CUBLAS_GEMM_DEFAULT && algo != CUBLAS_GEMM_DEFAULT_TENSOR_OP)
    return invalid("cublasGemmEx: the emulation supports CUBLAS_GEMM_DEFAULT(_TENSOR_OP) only, got " +
                   std::to_string(static_cast<int>(algo)));
  const int base = static_cast<int>(handle->math) & ~static_cast<int>(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
  dropnet::Precision prec;
  switch (computeType) {
    case CUBLAS_COMPUTE_32F:
      prec = base == CUBLAS_TF32_TENSOR_OP_MATH ? dropnet::Precision::TF32 : dropnet::Precision::FP32;
      break;
    case CUBLAS_COMPUTE_32F_PEDANTIC: prec = dropnet::Precision::FP32; break;
    case CUBLAS_COMPUTE_32F_FAST_TF32: prec = dropnet::Precision::TF32; break;
    case CUBLAS_COMPUTE_32F_FAST_16BF: prec = dropnet::Precision::BF16; break;
    default:
      dn_emu::set_error(cudaErrorInvalidValue, "cublasGemmEx: compute type " +
                                                   std::to_string(static_cast<int>(computeType)) +
                                                   " is not emulated for FP32 data");
      return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return gemm_impl("cublasGemmEx", handle, transa, transb, m, n, k, static_cast<const float*>(alpha),
                   static_cast<const float*>(A), lda, static_cast<const float*>(B), ldb,
                   static_cast<const float*>(beta), static_cast<float*>(C), ldc, prec);
}
