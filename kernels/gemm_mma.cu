// Tensor-core SGEMM launcher (kernels/gemm_mma.h): picks the block tile and the instantiation of
// sgemm_mma_kernel (kernels/gemm_mma.cuh) for the precision and the transposes.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_check.h"
#include "core/error.h"
#include "core/launch.cuh"
#include "kernels/gemm_check.h"
#include "kernels/gemm_mma.cuh"
#include "kernels/gemm_mma.h"

namespace dropnet {

namespace {

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

struct MmaArgs {
  int m, n, k;
  float alpha;
  const float* a;
  int64_t lda;
  bool va;
  const float* b;
  int64_t ldb;
  bool vb;
  float beta;
  float* c;
  int64_t ldc;
};

template <class T, Precision P, bool TA, bool TB>
void launch(const MmaArgs& x, cudaStream_t s) {
  const dim3 grid((x.n + T::BN - 1) / T::BN, (x.m + T::BM - 1) / T::BM);
  DN_LAUNCH(mma_gemm::sgemm_mma_kernel<T, P, TA, TB>, grid, T::THREADS, 0, s, x.m, x.n, x.k, x.alpha, x.a, x.lda,
            x.va, x.b, x.ldb, x.vb, x.beta, x.c, x.ldc);
}

template <class T, Precision P>
void dispatch_transposes(bool ta, bool tb, const MmaArgs& x, cudaStream_t s) {
  if (!ta && !tb) return launch<T, P, false, false>(x, s);
  if (!ta && tb) return launch<T, P, false, true>(x, s);
  if (ta && !tb) return launch<T, P, true, false>(x, s);
  return launch<T, P, true, true>(x, s);
}

template <class T>
void dispatch_precision(Precision p, bool ta, bool tb, const MmaArgs& x, cudaStream_t s) {
  if (p == Precision::TF32) return dispatch_transposes<T, Precision::TF32>(ta, tb, x, s);
  return dispatch_transposes<T, Precision::BF16>(ta, tb, x, s);
}

}  // namespace

void sgemm_mma_cuda_tile(MmaTile tile, Precision p, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                         float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                         float* c, int64_t ldc, Stream stream) {
  gemm_check_args("sgemm_mma_cuda", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, /*int32_sizes=*/true);
  DN_CHECK(p == Precision::TF32 || p == Precision::BF16, "sgemm_mma_cuda: precision must be tf32 or bf16");
  if (m == 0 || n == 0) return;
  DN_CHECK((m + 63) / 64 <= 65535, "sgemm_mma_cuda: m={} exceeds the grid", m);
  if (tile == MmaTile::Auto) {
    // The larger tile when its grid still fills every SM, else the smaller one for more blocks.
    const int64_t big_blocks = ((m + 127) / 128) * ((n + 63) / 64);
    tile = big_blocks >= current_sm_count() ? MmaTile::M128N64 : MmaTile::M64N64;
  }
  // alpha == 0 reads neither A nor B (k = 0: the result is beta * C).
  const bool no_product = k == 0 || alpha == 0.f;
  const MmaArgs x{static_cast<int>(m), static_cast<int>(n), no_product ? 0 : static_cast<int>(k), alpha, a, lda,
                  aligned16(a) && lda % 4 == 0, b, ldb, aligned16(b) && ldb % 4 == 0, beta, c, ldc};
  cudaStream_t s = stream;
  if (tile == MmaTile::M128N64)
    dispatch_precision<mma_gemm::Tile128x64>(p, trans_a, trans_b, x, s);
  else
    dispatch_precision<mma_gemm::Tile64x64>(p, trans_a, trans_b, x, s);
}

void sgemm_mma_cuda(Precision p, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                    Stream stream) {
  sgemm_mma_cuda_tile(MmaTile::Auto, p, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, stream);
}

}  // namespace dropnet
