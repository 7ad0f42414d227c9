// CUDA SGEMM, row-major (kernels/gemm.h): a hand-written tiled kernel and the cuBLAS wrapper.
//
// sgemm_cuda computes C row-major directly (no C^T trick) with the block-level tile machinery of
// gemm_tile.cuh: 128 x 128 tiles (8 x 8 per thread), or 64 x 64 (4 x 4) when the 128-tile grid
// would leave SMs idle. Global loads are float4 along the contiguous dimension of the stored
// matrix when the pointer is 16-byte aligned and the leading dimension a multiple of 4 (the host
// picks the instantiation), scalar with bounds checks otherwise and at edges; transposed layouts
// are transposed on the way into shared memory. When the grid is small and K long (weight
// gradients: 20 x 25 x 36864), K is split over grid.z into partial tiles in a stream-ordered
// workspace, summed in a fixed order by a second kernel: deterministic, unlike atomics.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "core/cuda_check.h"
#include "core/launch.cuh"
#include "kernels/cublas_api.h"
#include "kernels/gemm.h"
#include "kernels/gemm_check.h"
#include "kernels/gemm_mma.h"
#include "kernels/gemm_tile.cuh"
#include "kernels/tile_plan.h"

namespace dropnet {

namespace {

using tile::kThreads;
using tile::sgemm_tiled_kernel;
using tile::splitk_reduce_kernel;

// C = beta * C (k == 0 or alpha == 0); beta == 0 writes zeros without reading C.
__global__ void scale_kernel(int64_t m, int64_t n, float beta, float* __restrict__ c, int64_t ldc) {
  const int64_t total = m * n;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    float* p = c + (idx / n) * ldc + idx % n;
    *p = beta == 0.f ? 0.f : beta * *p;
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <int BM, int BN, bool TA, bool TB, bool VA, bool VB>
void launch_tiled(dim3 grid, cudaStream_t s, int m, int n, int k, int kps, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, int64_t split_stride,
                  bool vec_c) {
  DN_LAUNCH(sgemm_tiled_kernel<BM, BN, TA, TB, VA, VB>, grid, kThreads, 0, s, m, n, k, kps, alpha, a, lda, b, ldb,
            beta, c, ldc, split_stride, vec_c);
}

// Runtime flags -> template instantiation.
template <int BM, int BN>
void dispatch_tiled(bool ta, bool tb, bool va, bool vb, dim3 grid, cudaStream_t s, int m, int n, int k, int kps,
                    float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc, int64_t split_stride, bool vec_c) {
#define DN_GEMM_CASE(TA, TB, VA, VB)                                                                  \
  if (ta == TA && tb == TB && va == VA && vb == VB)                                                   \
    return launch_tiled<BM, BN, TA, TB, VA, VB>(grid, s, m, n, k, kps, alpha, a, lda, b, ldb, beta, c, ldc, \
                                                split_stride, vec_c);
  DN_GEMM_CASE(false, false, false, false)
  DN_GEMM_CASE(false, false, false, true)
  DN_GEMM_CASE(false, false, true, false)
  DN_GEMM_CASE(false, false, true, true)
  DN_GEMM_CASE(false, true, false, false)
  DN_GEMM_CASE(false, true, false, true)
  DN_GEMM_CASE(false, true, true, false)
  DN_GEMM_CASE(false, true, true, true)
  DN_GEMM_CASE(true, false, false, false)
  DN_GEMM_CASE(true, false, false, true)
  DN_GEMM_CASE(true, false, true, false)
  DN_GEMM_CASE(true, false, true, true)
  DN_GEMM_CASE(true, true, false, false)
  DN_GEMM_CASE(true, true, false, true)
  DN_GEMM_CASE(true, true, true, false)
  DN_GEMM_CASE(true, true, true, true)
#undef DN_GEMM_CASE
}

}  // namespace

void sgemm_cuda(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, Stream stream) {
  sgemm_cuda_prec(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, Precision::FP32, stream);
}

void sgemm_cuda_prec(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                     int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, Precision prec,
                     Stream stream) {
  gemm_check_args("sgemm_cuda", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, /*int32_sizes=*/true);
  if (m == 0 || n == 0) return;
  if (prec != Precision::FP32) {  // tf32 / bf16: the tensor-core kernel (kernels/gemm_mma.h)
    sgemm_mma_cuda(prec, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, stream);
    return;
  }
  cudaStream_t s = stream;
  if (k == 0 || alpha == 0.f) {
    DN_LAUNCH(scale_kernel, grid_for(m * n), 256, 0, s, m, n, beta, c, ldc);
    return;
  }
  const int sms = current_sm_count();

  // float4 loads need 16-byte aligned rows: aligned base and a leading dimension divisible by 4.
  const bool va = aligned16(a) && lda % 4 == 0;
  const bool vb = aligned16(b) && ldb % 4 == 0;
  const bool vc = aligned16(c) && ldc % 4 == 0;

  const tile_plan::GemmPlan pl = tile_plan::plan_gemm(m, n, k, sms);
  const bool big = pl.tile == 128;
  DN_CHECK(pl.y <= 65535, "sgemm_cuda: m={} exceeds the grid", m);
  const int splits = pl.splits, kps = pl.k_per_split;
  const dim3 grid(pl.x, pl.y, static_cast<unsigned>(splits));

  float* out = c;
  int64_t out_ld = ldc, split_stride = 0;
  float out_alpha = alpha, out_beta = beta;
  bool out_vec = vc;
  if (splits > 1) {
    out = static_cast<float*>(stream_scratch_alloc(sizeof(float) * splits * m * n, s));
    out_ld = n;
    split_stride = m * n;
    out_alpha = 1.f;
    out_beta = 0.f;
    out_vec = n % 4 == 0;
  }
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  if (big)
    dispatch_tiled<128, 128>(trans_a, trans_b, va, vb, grid, s, mi, ni, ki, kps, out_alpha, a, lda, b, ldb,
                             out_beta, out, out_ld, split_stride, out_vec);
  else
    dispatch_tiled<64, 64>(trans_a, trans_b, va, vb, grid, s, mi, ni, ki, kps, out_alpha, a, lda, b, ldb,
                           out_beta, out, out_ld, split_stride, out_vec);
  if (splits > 1) {
    DN_LAUNCH(splitk_reduce_kernel, grid_for(m * n), 256, 0, s, m, n, splits, out, alpha, beta, c, ldc);
    stream_scratch_free(out, s);
  }
}

namespace {

// One cuBLAS handle per (host thread, device): a handle must not be used by two threads at once
// (cublasSetStream on a shared handle would race). Handles live until exit (destroying them in
// thread-exit order can run after the driver has shut down).
cublasHandle_t cublas_handle(int device) {
  thread_local std::vector<cublasHandle_t> handles;
  if (device >= int(handles.size())) handles.resize(device + 1, nullptr);
  if (handles[device] == nullptr) {
    DN_CUBLAS_CHECK(cublas().create(&handles[device]));
    // FP32 throughout: CUBLAS_DEFAULT_MATH never uses TF32 tensor cores for SGEMM (that takes
    // CUBLAS_TF32_TENSOR_OP_MATH), and unlike CUBLAS_PEDANTIC_MATH it keeps the fast FP32 kernels.
    DN_CUBLAS_CHECK(cublas().set_math_mode(handles[device], CUBLAS_DEFAULT_MATH));
  }
  return handles[device];
}

}  // namespace

void sgemm_cublas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, Stream stream) {
  sgemm_cublas_prec(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, Precision::FP32, stream);
}

void sgemm_cublas_prec(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                       int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, Precision prec,
                       Stream stream) {
  gemm_check_args("sgemm_cublas", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, /*int32_sizes=*/true);
  if (m == 0 || n == 0) return;
  cudaStream_t s = stream;
  if (k == 0) {  // keep beta == 0 from reading C, as the native kernel does
    DN_LAUNCH(scale_kernel, grid_for(m * n), 256, 0, s, m, n, beta, c, ldc);
    return;
  }
  int device = 0;
  DN_CUDA_CHECK(cudaGetDevice(&device));
  cublasHandle_t h = cublas_handle(device);
  DN_CUBLAS_CHECK(cublas().set_stream(h, s));
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the stored row-major
  // matrices, read column-major, are already the transposes cuBLAS needs.
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int ni = static_cast<int>(n), mi = static_cast<int>(m), ki = static_cast<int>(k);
  if (prec == Precision::FP32) {
    DN_CUBLAS_CHECK(cublas().sgemm(h, op_b, op_a, ni, mi, ki, &alpha, b, static_cast<int>(ldb), a,
                                   static_cast<int>(lda), &beta, c, static_cast<int>(ldc)));
    return;
  }
  // FP32 data and accumulation; the compute type lets the tensor cores round the operands to
  // TF32 / BF16 (per call: the handle's math mode stays FP32 for the fp32 layers sharing it).
  const cublasComputeType_t compute =
      prec == Precision::TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_FAST_16BF;
  DN_CUBLAS_CHECK(cublas().gemm_ex(h, op_b, op_a, ni, mi, ki, &alpha, b, CUDA_R_32F, static_cast<int>(ldb), a,
                                   CUDA_R_32F, static_cast<int>(lda), &beta, c, CUDA_R_32F, static_cast<int>(ldc),
                                   compute, CUBLAS_GEMM_DEFAULT));
}

}  // namespace dropnet
