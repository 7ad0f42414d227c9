// The emulated cuBLAS's reduced-precision paths (emu/include/cublas_v2.h): CUBLAS_TF32_TENSOR_OP_MATH
// makes cublasSgemm (and cublasGemmEx at CUBLAS_COMPUTE_32F) round A and B to TF32;
// CUBLAS_COMPUTE_32F_FAST_TF32 / _FAST_16BF round to TF32 / BF16 whatever the math mode;
// _32F_PEDANTIC never rounds; other compute and data types are CUBLAS_STATUS_NOT_SUPPORTED.
// One-element products whose operand has bits below the TF32 / BF16 mantissa show each rounding.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

namespace {

// c = a * 1 through the given call, read back.
template <typename F>
float product(float a, F&& call) {
  float *da = nullptr, *db = nullptr, *dc = nullptr;
  const float one = 1.f;
  EXPECT_EQ(cudaMalloc(&da, sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&db, sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&dc, sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(da, &a, sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(db, &one, sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(call(da, db, dc), CUBLAS_STATUS_SUCCESS);
  float c = 0.f;
  EXPECT_EQ(cudaMemcpy(&c, dc, sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  return c;
}

TEST(EmulatedCublasTf32Bf16, MathModeAndComputeTypesRoundTheOperands) {
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const float alpha = 1.f, beta = 0.f;
  const auto sgemm = [&](float* a, float* b, float* c) {
    return cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &alpha, a, 1, b, 1, &beta, c, 1);
  };
  const auto gemm_ex = [&](cublasComputeType_t t) {
    return [&, t](float* a, float* b, float* c) {
      return cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &alpha, a, CUDA_R_32F, 1, b, CUDA_R_32F, 1, &beta, c,
                          CUDA_R_32F, 1, t, CUBLAS_GEMM_DEFAULT);
    };
  };
  const float x = 1.f + 0x1p-20f;                // below TF32's 10 mantissa bits
  const float y = 1.f + 0x1p-7f + 0x1p-20f;      // BF16 keeps 1 + 2^-7
  EXPECT_EQ(product(x, sgemm), x);               // default math: FP32
  EXPECT_EQ(product(x, gemm_ex(CUBLAS_COMPUTE_32F)), x);
  EXPECT_EQ(product(x, gemm_ex(CUBLAS_COMPUTE_32F_FAST_TF32)), 1.f);
  EXPECT_EQ(product(y, gemm_ex(CUBLAS_COMPUTE_32F_FAST_16BF)), 1.f + 0x1p-7f);
  ASSERT_EQ(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(product(x, sgemm), 1.f);
  EXPECT_EQ(product(x, gemm_ex(CUBLAS_COMPUTE_32F)), 1.f);
  EXPECT_EQ(product(x, gemm_ex(CUBLAS_COMPUTE_32F_PEDANTIC)), x);

  float *a = nullptr, *c = nullptr;
  ASSERT_EQ(cudaMalloc(&a, sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&c, sizeof(float)), cudaSuccess);
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &alpha, a, CUDA_R_32F, 1, a, CUDA_R_32F, 1, &beta, c,
                         CUDA_R_32F, 1, CUBLAS_COMPUTE_16F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &alpha, a, CUDA_R_16BF, 1, a, CUDA_R_32F, 1, &beta,
                         c, CUDA_R_32F, 1, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &alpha, a, CUDA_R_32F, 0, a, CUDA_R_32F, 1, &beta, c,
                         CUDA_R_32F, 1, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_INVALID_VALUE);  // lda 0: the same argument checks as cublasSgemm
  cudaGetLastError();
  cudaFree(a);
  cudaFree(c);
  EXPECT_EQ(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
}

}  // namespace
