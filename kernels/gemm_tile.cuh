// The block-level SGEMM machinery shared by the dense SGEMM (gemm.cu) and the implicit-GEMM
// convolution (conv_igemm.cuh): a block of 256 threads owns a BM x BN tile of C (8 x 8 or 4 x 4
// per thread, in 4 x 4 groups 64 rows / columns apart) and walks K in steps of kBk = 8 with
// double-buffered shared memory: the global loads of step t + 1 are issued before the FMAs of
// step t and land in the other buffer, one __syncthreads per step. Both operands sit k-major in
// shared memory (As[k][i], Bs[k][j]) so each thread reads its fragments as float4.
//
// What varies between users is how a tile of op(A) / op(B) is fetched from global memory: a
// loader is any type with `load(k0)` (global -> registers, for k in [k0, k0 + kBk)) and
// `store(sm)` (registers -> shared memory laid out [kBk][ROWS + kPad]); out-of-range elements
// must load as 0.
//
// Device code only, no CUDA headers: the .cu files include the CUDA runtime first; the CPU
// emulation test (tests/testing/cuda_emu.h) includes its shim first and runs these kernels on the
// host, so the indexing is tested without a GPU.
#pragma once

#include <cstdint>

namespace dropnet {
namespace tile {

constexpr int kThreads = 256;
constexpr int kBk = 8;
constexpr int kPad = 4;  // shared-memory row padding: keeps float4 alignment, breaks bank conflicts

// A dense operand tile (ROWS x kBk of op(X), ROWS along M or N) from a stored row-major matrix.
// K_CONTIG: the stored matrix is contiguous along k (A not transposed, B transposed). VEC: rows
// are 16-byte aligned (aligned base, leading dimension a multiple of 4): float4 loads where a
// whole float4 is in range, scalar with bounds checks otherwise.
template <int ROWS, bool K_CONTIG, bool VEC>
struct DenseLoader {
  static constexpr int kVec4 = ROWS * kBk / 4;  // float4 slots in a tile
  static constexpr int kPerThread = (kVec4 + kThreads - 1) / kThreads;
  const float* x;
  int64_t ld;
  int r0, r_end, k_end;
  float4 reg[kPerThread];

  __device__ DenseLoader(const float* x_, int64_t ld_, int r0_, int r_end_, int k_end_)
      : x(x_), ld(ld_), r0(r0_), r_end(r_end_), k_end(k_end_) {}

  __device__ __forceinline__ void load(int k0) {
#pragma unroll
    for (int s = 0; s < kPerThread; ++s) {
      const int f = threadIdx.x + s * kThreads;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (f < kVec4) {
        if (K_CONTIG) {  // 4 consecutive k of one row
          const int r = r0 + f / (kBk / 4), k = k0 + (f % (kBk / 4)) * 4;
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
        } else {  // 4 consecutive rows of one k
          const int k = k0 + f / (ROWS / 4), r = r0 + (f % (ROWS / 4)) * 4;
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

// The per-thread accumulator of a BM x BN tile: thread (ty, tx) of the 16 x 16 grid owns rows
// g * 64 + ty * 4 + [0, 4) and columns h * 64 + tx * 4 + [0, 4).
template <int BM, int BN>
struct Acc {
  static_assert(BM % 64 == 0 && BN % 64 == 0, "tiles are multiples of 64");
  static constexpr int GM = BM / 64, GN = BN / 64;
  float v[GM * 4][GN * 4];
  // Tile-relative row / column of accumulator element [r][q].
  __device__ __forceinline__ static int row(int r) { return (r / 4) * 64 + (threadIdx.x / 16) * 4 + r % 4; }
  __device__ __forceinline__ static int col(int q) { return (q / 4) * 64 + (threadIdx.x % 16) * 4 + q % 4; }
};

// Calls f(i, j, value) for each of this thread's accumulator elements that lies inside the m x n
// output (i, j counted from the tile origin i0, j0 of the whole output).
template <int BM, int BN, class F>
__device__ __forceinline__ void for_each_output(const Acc<BM, BN>& acc, int i0, int j0, int m, int n, F&& f) {
#pragma unroll
  for (int r = 0; r < Acc<BM, BN>::GM * 4; ++r) {
    const int i = i0 + Acc<BM, BN>::row(r);
    if (i >= m) continue;
#pragma unroll
    for (int c = 0; c < Acc<BM, BN>::GN * 4; ++c) {
      const int j = j0 + Acc<BM, BN>::col(c);
      if (j < n) f(i, j, acc.v[r][c]);
    }
  }
}

// acc = sum over k in [k_begin, k_end) of op(A)[i][k] op(B)[k][j] for the block's tile. `as` and
// `bs` are the block's shared buffers, [2][kBk][BM + kPad] and [2][kBk][BN + kPad].
template <int BM, int BN, class LA, class LB>
__device__ __forceinline__ void mainloop(LA& la, LB& lb, int k_begin, int k_end, Acc<BM, BN>& acc, float* as,
                                         float* bs) {
  constexpr int GM = Acc<BM, BN>::GM, GN = Acc<BM, BN>::GN;
  constexpr int kAs = kBk * (BM + kPad), kBs = kBk * (BN + kPad);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
  for (int r = 0; r < GM * 4; ++r)
#pragma unroll
    for (int q = 0; q < GN * 4; ++q) acc.v[r][q] = 0.f;

  int buf = 0;
  if (k_begin < k_end) {
    la.load(k_begin);
    lb.load(k_begin);
    la.store(as);
    lb.store(bs);
  }
  __syncthreads();
  for (int k0 = k_begin; k0 < k_end; k0 += kBk) {
    const bool has_next = k0 + kBk < k_end;
    if (has_next) {  // in flight while this step's FMAs run
      la.load(k0 + kBk);
      lb.load(k0 + kBk);
    }
    const float* a_s = as + buf * kAs;
    const float* b_s = bs + buf * kBs;
#pragma unroll
    for (int kk = 0; kk < kBk; ++kk) {
      float fa[GM * 4], fb[GN * 4];
#pragma unroll
      for (int g = 0; g < GM; ++g) {
        const float4 v = *reinterpret_cast<const float4*>(a_s + kk * (BM + kPad) + g * 64 + ty * 4);
        fa[g * 4 + 0] = v.x;
        fa[g * 4 + 1] = v.y;
        fa[g * 4 + 2] = v.z;
        fa[g * 4 + 3] = v.w;
      }
#pragma unroll
      for (int h = 0; h < GN; ++h) {
        const float4 v = *reinterpret_cast<const float4*>(b_s + kk * (BN + kPad) + h * 64 + tx * 4);
        fb[h * 4 + 0] = v.x;
        fb[h * 4 + 1] = v.y;
        fb[h * 4 + 2] = v.z;
        fb[h * 4 + 3] = v.w;
      }
#pragma unroll
      for (int r = 0; r < GM * 4; ++r)
#pragma unroll
        for (int q = 0; q < GN * 4; ++q) acc.v[r][q] = fmaf(fa[r], fb[q], acc.v[r][q]);
    }
    if (has_next) {
      la.store(as + (buf ^ 1) * kAs);
      lb.store(bs + (buf ^ 1) * kBs);
    }
    __syncthreads();
    buf ^= 1;
  }
}

// C tile = alpha * op(A) op(B) over k in [z * k_per_split, ...) + beta * C (beta == 0: C is not
// read). vec_c: C rows are 16-byte aligned, so full float4 stores.
template <int BM, int BN, bool TA, bool TB, bool VA, bool VB>
__global__ void __launch_bounds__(kThreads)
    sgemm_tiled_kernel(int m, int n, int k, int k_per_split, float alpha, const float* __restrict__ a,
                       int64_t lda, const float* __restrict__ b, int64_t ldb, float beta, float* __restrict__ c,
                       int64_t ldc, int64_t split_stride, bool vec_c) {
  __shared__ __align__(16) float as[2][kBk][BM + kPad];
  __shared__ __align__(16) float bs[2][kBk][BN + kPad];
  const int i0 = blockIdx.y * BM, j0 = blockIdx.x * BN;
  const int k_begin = blockIdx.z * k_per_split;
  const int k_end = min(k, k_begin + k_per_split);
  c += blockIdx.z * split_stride;

  DenseLoader<BM, !TA, VA> la(a, lda, i0, m, k_end);
  DenseLoader<BN, TB, VB> lb(b, ldb, j0, n, k_end);
  Acc<BM, BN> acc;
  mainloop<BM, BN>(la, lb, k_begin, k_end, acc, &as[0][0][0], &bs[0][0][0]);

  constexpr int GM = Acc<BM, BN>::GM, GN = Acc<BM, BN>::GN;
#pragma unroll
  for (int r = 0; r < GM * 4; ++r) {
    const int i = i0 + Acc<BM, BN>::row(r);
    if (i >= m) continue;
    float* crow = c + int64_t(i) * ldc;
#pragma unroll
    for (int h = 0; h < GN; ++h) {
      const int j = j0 + Acc<BM, BN>::col(h * 4);
      const float* v = &acc.v[r][h * 4];
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

// C = alpha * sum_s partial[s] + beta * C, summed in split order (deterministic); the partials
// are dense m x n, `splits` of them.
// static: a non-template kernel defined in a header included by several .cu files.
static __global__ void splitk_reduce_kernel(int64_t m, int64_t n, int splits, const float* __restrict__ partial,
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

}  // namespace tile
}  // namespace dropnet
