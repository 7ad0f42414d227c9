// Tensor-core SGEMM (TF32 or BF16 operands, FP32 accumulation), row-major, the convention of
// kernels/gemm.h: C(M, N) = alpha * op(A) * op(B) + beta * C, A is (K, M) as stored when trans_a,
// B is (N, K) when trans_b; beta == 0 never reads C. The FP32 operands are rounded on the device
// exactly as precision::round (kernels/precision_math.h) rounds them on the CPU.
#pragma once

#include <cstdint>

#include "core/device.h"
#include "kernels/precision_math.h"

namespace dropnet {

#if DROPNET_HAVE_CUDA
// The block tiles of sgemm_mma_cuda (M x N; K steps of 16, 3-stage cp.async pipeline, 4 warps).
enum class MmaTile { Auto, M128N64, M64N64 };

// p is Precision::TF32 or Precision::BF16 (FP32 is sgemm_cuda's). Device pointers, on `stream`.
void sgemm_mma_cuda(Precision p, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                    Stream stream);
// The same with the block tile chosen by the caller (tests, benches); Auto is sgemm_mma_cuda's.
void sgemm_mma_cuda_tile(MmaTile tile, Precision p, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                         float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                         float* c, int64_t ldc, Stream stream);
#endif

}  // namespace dropnet
