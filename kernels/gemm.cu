// CUDA SGEMM, row-major (kernels/gemm.h): a hand-written tiled kernel and the cuBLAS wrapper.
//
// sgemm_cuda computes C row-major directly (no C^T trick): a block of 256 threads owns a BM x BN
// tile of C (128 x 128, 8 x 8 per thread; 64 x 64, 4 x 4 per thread when the 128-tile grid would
// leave SMs idle) and walks K in steps of BK = 8 with double-buffered shared memory: the global
// loads of step t + 1 are issued before the FMAs of step t and land in the other buffer, one
// __syncthreads per step. Both operands are stored k-major in shared memory (As[k][i], Bs[k][j]),
// so each thread reads its 4-wide row and column fragments as float4. Global loads are float4
// along the contiguous dimension of the stored matrix when the pointer is 16-byte aligned and the
// leading dimension a multiple of 4 (the host picks the instantiation), scalar with bounds checks
// otherwise and at edges; transposed layouts are transposed on the way into shared memory.
// When the grid is small and K long (weight gradients: 20 x 25 x 36864), K is split over
// grid.z into partial tiles in a stream-ordered workspace, summed in a fixed order by a second
// kernel: deterministic, unlike atomics.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <mutex>
#include <vector>

#include "core/cuda_check.h"
#include "kernels/cublas_check.h"
#include "kernels/gemm.h"

namespace dropnet {

namespace {

constexpr int kThreads = 256;
constexpr int kBk = 8;
constexpr int kPad = 4;  // shared-memory row padding: keeps float4 alignment, breaks bank conflicts

// Loads of one operand tile (ROWS x kBk of op(X), ROWS along M or N) into registers.
// K_CONTIG: the stored matrix is contiguous along k (A not transposed, B transposed).
template <int ROWS, bool K_CONTIG, bool VEC>
struct TileLoader {
  static constexpr int kVec4 = ROWS * kBk / 4;                     // float4 slots in a tile
  static constexpr int kPerThread = (kVec4 + kThreads - 1) / kThreads;
  float4 reg[kPerThread];

  // x: stored matrix, ld: its row stride; rows [r0, r_end) of op(X)'s M/N dim, k in [k0, k_end).
  __device__ __forceinline__ void load(const float* __restrict__ x, int64_t ld, int r0, int r_end, int k0,
                                       int k_end) {
#pragma unroll
    for (int s = 0; s < kPerThread; ++s) {
      const int f = threadIdx.x + s * kThreads;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (f < kVec4) {
        int r, k;
        if (K_CONTIG) {  // 4 consecutive k of one row
          r = r0 + f / (kBk / 4);
          k = k0 + (f % (kBk / 4)) * 4;
        } else {  // 4 consecutive rows of one k
          k = k0 + f / (ROWS / 4);
          r = r0 + (f % (ROWS / 4)) * 4;
        }
        if (K_CONTIG) {
          if (r < r_end) {
            const float* p = x + int64_t(r) * ld + k;
            if (VEC && k + 3 < k_end) {
              v = *reinterpret_cast<const float4*>(p);
            } else {
              if (k + 0 < k_end) v.x = p[0];
              if (k + 1 < k_end) v.y = p[1];
              if (k + 2 < k_end) v.z = p[2];
              if (k + 3 < k_end) v.w = p[3];
            }
          }
        } else {
          if (k < k_end) {
            const float* p = x + int64_t(k) * ld + r;
            if (VEC && r + 3 < r_end) {
              v = *reinterpret_cast<const float4*>(p);
            } else {
              if (r + 0 < r_end) v.x = p[0];
              if (r + 1 < r_end) v.y = p[1];
              if (r + 2 < r_end) v.z = p[2];
              if (r + 3 < r_end) v.w = p[3];
            }
          }
        }
      }
      reg[s] = v;
    }
  }

  // Into shared memory laid out [kBk][ROWS + kPad].
  __device__ __forceinline__ void store(float* __restrict__ sm) const {
#pragma unroll
    for (int s = 0; s < kPerThread; ++s) {
      const int f = threadIdx.x + s * kThreads;
      if (f >= kVec4) continue;
      if (K_CONTIG) {
        const int r = f / (kBk / 4), k = (f % (kBk / 4)) * 4;
        sm[(k + 0) * (ROWS + kPad) + r] = reg[s].x;
        sm[(k + 1) * (ROWS + kPad) + r] = reg[s].y;
        sm[(k + 2) * (ROWS + kPad) + r] = reg[s].z;
        sm[(k + 3) * (ROWS + kPad) + r] = reg[s].w;
      } else {
        const int k = f / (ROWS / 4), r = (f % (ROWS / 4)) * 4;
        *reinterpret_cast<float4*>(sm + k * (ROWS + kPad) + r) = reg[s];
      }
    }
  }
};

// C tile = alpha * op(A) op(B) over k in [z * k_per_split, ...) + beta * C. Thread (ty, tx) of
// the 16 x 16 grid owns rows g*64 + ty*4 + [0, 4) and columns h*64 + tx*4 + [0, 4).
template <int BM, int BN, bool TA, bool TB, bool VA, bool VB>
__global__ void __launch_bounds__(kThreads)
    sgemm_tiled_kernel(int m, int n, int k, int k_per_split, float alpha, const float* __restrict__ a,
                       int64_t lda, const float* __restrict__ b, int64_t ldb, float beta, float* __restrict__ c,
                       int64_t ldc, int64_t split_stride, bool vec_c) {
  static_assert(BM % 64 == 0 && BN % 64 == 0, "tiles are multiples of 64");
  constexpr int GM = BM / 64, GN = BN / 64;  // 4-row / 4-column groups per thread
  __shared__ __align__(16) float as[2][kBk][BM + kPad];
  __shared__ __align__(16) float bs[2][kBk][BN + kPad];

  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int i0 = blockIdx.y * BM, j0 = blockIdx.x * BN;
  const int k_begin = blockIdx.z * k_per_split;
  const int k_end = min(k, k_begin + k_per_split);
  c += blockIdx.z * split_stride;

  TileLoader<BM, !TA, VA> la;
  TileLoader<BN, TB, VB> lb;
  float acc[GM * 4][GN * 4];
#pragma unroll
  for (int r = 0; r < GM * 4; ++r)
#pragma unroll
    for (int q = 0; q < GN * 4; ++q) acc[r][q] = 0.f;

  int buf = 0;
  if (k_begin < k_end) {
    la.load(a, lda, i0, m, k_begin, k_end);
    lb.load(b, ldb, j0, n, k_begin, k_end);
    la.store(&as[0][0][0]);
    lb.store(&bs[0][0][0]);
  }
  __syncthreads();
  for (int k0 = k_begin; k0 < k_end; k0 += kBk) {
    const bool has_next = k0 + kBk < k_end;
    if (has_next) {  // in flight while this step's FMAs run
      la.load(a, lda, i0, m, k0 + kBk, k_end);
      lb.load(b, ldb, j0, n, k0 + kBk, k_end);
    }
#pragma unroll
    for (int kk = 0; kk < kBk; ++kk) {
      float fa[GM * 4], fb[GN * 4];
#pragma unroll
      for (int g = 0; g < GM; ++g) {
        const float4 v = *reinterpret_cast<const float4*>(&as[buf][kk][g * 64 + ty * 4]);
        fa[g * 4 + 0] = v.x;
        fa[g * 4 + 1] = v.y;
        fa[g * 4 + 2] = v.z;
        fa[g * 4 + 3] = v.w;
      }
#pragma unroll
      for (int h = 0; h < GN; ++h) {
        const float4 v = *reinterpret_cast<const float4*>(&bs[buf][kk][h * 64 + tx * 4]);
        fb[h * 4 + 0] = v.x;
        fb[h * 4 + 1] = v.y;
        fb[h * 4 + 2] = v.z;
        fb[h * 4 + 3] = v.w;
      }
#pragma unroll
      for (int r = 0; r < GM * 4; ++r)
#pragma unroll
        for (int q = 0; q < GN * 4; ++q) acc[r][q] = fmaf(fa[r], fb[q], acc[r][q]);
    }
    if (has_next) {
      la.store(&as[buf ^ 1][0][0]);
      lb.store(&bs[buf ^ 1][0][0]);
    }
    __syncthreads();
    buf ^= 1;
  }

#pragma unroll
  for (int g = 0; g < GM; ++g)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int i = i0 + g * 64 + ty * 4 + r;
      if (i >= m) continue;
      float* crow = c + int64_t(i) * ldc;
#pragma unroll
      for (int h = 0; h < GN; ++h) {
        const int j = j0 + h * 64 + tx * 4;
        float v[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) v[q] = acc[g * 4 + r][h * 4 + q];
        if (vec_c && j + 3 < n) {
          float4 out = make_float4(alpha * v[0], alpha * v[1], alpha * v[2], alpha * v[3]);
          if (beta != 0.f) {
            const float4 old = *reinterpret_cast<const float4*>(crow + j);
            out.x = fmaf(beta, old.x, out.x);
            out.y = fmaf(beta, old.y, out.y);
            out.z = fmaf(beta, old.z, out.z);
            out.w = fmaf(beta, old.w, out.w);
          }
          *reinterpret_cast<float4*>(crow + j) = out;
        } else {
#pragma unroll
          for (int q = 0; q < 4; ++q)
            if (j + q < n) crow[j + q] = beta == 0.f ? alpha * v[q] : fmaf(beta, crow[j + q], alpha * v[q]);
        }
      }
    }
}

// C = alpha * sum_s partial[s] + beta * C; the partials are dense m x n, `splits` of them.
__global__ void splitk_reduce_kernel(int64_t m, int64_t n, int splits, const float* __restrict__ partial,
                                     float alpha, float beta, float* __restrict__ c, int64_t ldc) {
  const int64_t total = m * n;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int z = 0; z < splits; ++z) s += partial[z * total + idx];
    float* p = c + (idx / n) * ldc + idx % n;
    *p = beta == 0.f ? alpha * s : fmaf(beta, *p, alpha * s);
  }
}

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
  sgemm_tiled_kernel<BM, BN, TA, TB, VA, VB>
      <<<grid, kThreads, 0, s>>>(m, n, k, kps, alpha, a, lda, b, ldb, beta, c, ldc, split_stride, vec_c);
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

int sm_count(int device) {
  static std::mutex mu;
  static std::vector<int> counts;
  std::lock_guard<std::mutex> lock(mu);
  if (device >= int(counts.size())) counts.resize(device + 1, 0);
  if (counts[device] == 0)
    DN_CUDA_CHECK(cudaDeviceGetAttribute(&counts[device], cudaDevAttrMultiProcessorCount, device));
  return counts[device];
}

// The split-K workspace comes from the device's stream-ordered pool (cudaMallocAsync on the
// GEMM's stream, freed on it after the reduction), so it is safe whatever stream is used; the
// pool keeps its memory (release threshold raised once per device) so steady state does not
// return to the driver.
void keep_pool_memory(int device) {
  static std::mutex mu;
  static std::vector<bool> done;
  std::lock_guard<std::mutex> lock(mu);
  if (device >= int(done.size())) done.resize(device + 1, false);
  if (done[device]) return;
  cudaMemPool_t pool;
  DN_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t threshold = UINT64_MAX;
  DN_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  done[device] = true;
}

void check_args(const char* who, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                const float* b, int64_t ldb, const float* c, int64_t ldc) {
  DN_CHECK(m >= 0 && n >= 0 && k >= 0, "{}: negative size m={} n={} k={}", who, m, n, k);
  DN_CHECK(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX,
           "{}: sizes beyond 32-bit integers (m={} n={} k={})", who, m, n, k);
  if (m == 0 || n == 0) return;
  DN_CHECK(ldc >= n && c != nullptr, "{}: ldc={} < n={} or null C", who, ldc, n);
  if (k == 0) return;
  DN_CHECK(lda >= std::max<int64_t>(1, ta ? m : k) && a != nullptr, "{}: lda={} too small for op(A) ({}, {}){}",
           who, lda, m, k, ta ? " transposed" : "");
  DN_CHECK(ldb >= std::max<int64_t>(1, tb ? k : n) && b != nullptr, "{}: ldb={} too small for op(B) ({}, {}){}",
           who, ldb, k, n, tb ? " transposed" : "");
}

}  // namespace

void sgemm_cuda(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, Stream stream) {
  check_args("sgemm_cuda", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
  if (m == 0 || n == 0) return;
  cudaStream_t s = stream;
  if (k == 0 || alpha == 0.f) {
    scale_kernel<<<grid_for(m * n), 256, 0, s>>>(m, n, beta, c, ldc);
    DN_CUDA_LAUNCH_CHECK();
    return;
  }
  int device = 0;
  DN_CUDA_CHECK(cudaGetDevice(&device));
  const int sms = sm_count(device);

  // float4 loads need 16-byte aligned rows: aligned base and a leading dimension divisible by 4.
  const bool va = aligned16(a) && lda % 4 == 0;
  const bool vb = aligned16(b) && ldb % 4 == 0;
  const bool vc = aligned16(c) && ldc % 4 == 0;

  const int64_t tiles128 = ((m + 127) / 128) * ((n + 127) / 128);
  const bool big = tiles128 >= sms;
  const int bm = big ? 128 : 64, bn = big ? 128 : 64;
  const int64_t tiles = ((m + bm - 1) / bm) * ((n + bn - 1) / bn);
  DN_CHECK((m + bm - 1) / bm <= 65535, "sgemm_cuda: m={} exceeds the grid", m);

  // Split K while the grid covers less than ~2 waves' worth of blocks and every split keeps at
  // least 256 k (32 steps) to amortize its partial tile.
  int splits = 1;
  if (tiles < 2 * sms && k >= 512) {
    const int64_t want = (2 * sms + tiles - 1) / tiles;
    splits = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({want, k / 256, 64})));
  }
  const int kps = static_cast<int>(((k + splits - 1) / splits + kBk - 1) / kBk * kBk);
  splits = static_cast<int>((k + kps - 1) / kps);
  dim3 grid(static_cast<unsigned>((n + bn - 1) / bn), static_cast<unsigned>((m + bm - 1) / bm),
            static_cast<unsigned>(splits));

  float* out = c;
  int64_t out_ld = ldc, split_stride = 0;
  float out_alpha = alpha, out_beta = beta;
  bool out_vec = vc;
  if (splits > 1) {
    keep_pool_memory(device);
    DN_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&out), sizeof(float) * splits * m * n, s));
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
  DN_CUDA_LAUNCH_CHECK();
  if (splits > 1) {
    splitk_reduce_kernel<<<grid_for(m * n), 256, 0, s>>>(m, n, splits, out, alpha, beta, c, ldc);
    DN_CUDA_LAUNCH_CHECK();
    DN_CUDA_CHECK(cudaFreeAsync(out, s));
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
    DN_CUBLAS_CHECK(cublasCreate(&handles[device]));
    // FP32 throughout: CUBLAS_DEFAULT_MATH never uses TF32 tensor cores for SGEMM (that takes
    // CUBLAS_TF32_TENSOR_OP_MATH), and unlike CUBLAS_PEDANTIC_MATH it keeps the fast FP32 kernels.
    DN_CUBLAS_CHECK(cublasSetMathMode(handles[device], CUBLAS_DEFAULT_MATH));
  }
  return handles[device];
}

}  // namespace

void sgemm_cublas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, Stream stream) {
  check_args("sgemm_cublas", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
  if (m == 0 || n == 0) return;
  cudaStream_t s = stream;
  if (k == 0) {  // keep beta == 0 from reading C, as the native kernel does
    scale_kernel<<<grid_for(m * n), 256, 0, s>>>(m, n, beta, c, ldc);
    DN_CUDA_LAUNCH_CHECK();
    return;
  }
  int device = 0;
  DN_CUDA_CHECK(cudaGetDevice(&device));
  cublasHandle_t h = cublas_handle(device);
  DN_CUBLAS_CHECK(cublasSetStream(h, s));
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the stored row-major
  // matrices, read column-major, are already the transposes cuBLAS needs.
  DN_CUBLAS_CHECK(cublasSgemm(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                              static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, b,
                              static_cast<int>(ldb), a, static_cast<int>(lda), &beta, c, static_cast<int>(ldc)));
}

}  // namespace dropnet
