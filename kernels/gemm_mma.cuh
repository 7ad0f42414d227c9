// The tensor-core GEMM mainloop (kernels/mma.cuh): block tiles of BM x BN, K in steps of 16 through
// a 3-stage cp.async pipeline of FP32 shared-memory tiles, warp tiles of WM x WN as m16n8 mma
// fragments with FP32 accumulators. The operands stay FP32 in shared memory (cp.async copies
// bytes); each is rounded (TF32: cvt.rna, BF16: cvt.rn) when loaded into a fragment.
//
// Shared memory keeps each operand as it is stored in global memory:
//   K-contiguous (A, B^T):   [MN][BK + 4]  rows 80 bytes apart: an ldmatrix phase (8 rows of 16
//                                          bytes) and a fragment load hit 32 distinct banks
//   MN-contiguous (A^T, B):  [BK][MN + 8]  a fragment's (k = t, mn = g) loads: 8t + g, distinct banks
// TF32 fragments of a K-contiguous operand come from ldmatrix.x4 (an 8 x 4 FP32 block is exactly a
// fragment register: kernels/mma.cuh); the others from scalar shared loads.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/mma.cuh"
#include "kernels/precision_math.h"

namespace dropnet::mma_gemm {

template <int BM_, int BN_, int WM_, int WN_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_;
  static constexpr int BK = 16, STAGES = 3;
  static constexpr int WARPS_M = BM / WM, WARPS_N = BN / WN, THREADS = WARPS_M * WARPS_N * 32;
  static constexpr int MI = WM / 16, NI = WN / 8;  // mma tiles of a warp
  static_assert(BM % WM == 0 && BN % WN == 0 && WM % 16 == 0 && WN % 16 == 0, "warp tiles of m16 x n16 steps");
};
using Tile128x64 = Tile<128, 64, 64, 32>;
using Tile64x64 = Tile<64, 64, 32, 32>;

// One operand tile (MN x BK) in shared memory; at(s, mn, k) is element (mn, k).
template <bool KContig, int MN, int BK>
struct SmemOperand {
  static constexpr int LD = KContig ? BK + 4 : MN + 8;
  static constexpr int SIZE = KContig ? MN * LD : BK * LD;
  __device__ __forceinline__ static float at(const float* s, int mn, int k) {
    return KContig ? s[mn * LD + k] : s[k * LD + mn];
  }
};

// Issues the cp.async copies of a ROWS x COLS tile (COLS contiguous in global and shared memory)
// from g (the tile's origin, a valid address) into s (row stride lds); elements at or past
// rows_valid / cols_valid are zero-filled. vec: 16-byte copies (g and ldg 16-byte aligned), each
// chunk with the bytes of it in bounds; else 4-byte copies.
template <int ROWS, int COLS, int THREADS>
__device__ __forceinline__ void load_tile(float* s, int lds, const float* g, int64_t ldg, int rows_valid,
                                          int cols_valid, bool vec) {
  const int tid = static_cast<int>(threadIdx.x);
  if (vec) {
    constexpr int CPR = COLS / 4, CHUNKS = ROWS * CPR;
    static_assert(CHUNKS % THREADS == 0, "whole copies per thread");
#pragma unroll
    for (int i = 0; i < CHUNKS / THREADS; ++i) {
      const int chunk = tid + i * THREADS;
      const int r = chunk / CPR, col = (chunk % CPR) * 4;
      const int left = cols_valid - col;
      const int bytes = r < rows_valid ? (left >= 4 ? 16 : left > 0 ? 4 * left : 0) : 0;
      mma::cp_async_cg16(s + r * lds + col, bytes > 0 ? g + r * ldg + col : g, bytes);
    }
  } else {
    constexpr int ELEMS = ROWS * COLS;
    static_assert(ELEMS % THREADS == 0, "whole copies per thread");
#pragma unroll
    for (int i = 0; i < ELEMS / THREADS; ++i) {
      const int e = tid + i * THREADS;
      const int r = e / COLS, col = e % COLS;
      const bool in = r < rows_valid && col < cols_valid;
      mma::cp_async_ca4(s + r * lds + col, in ? g + r * ldg + col : g, in ? 4 : 0);
    }
  }
}

// One BK step of a stage: the warp's MI x NI mma tiles accumulate op(A)[wm.., k] op(B)[k, wn..] from
// shared memory. AK / BK_: the A / B tile is K-contiguous (SmemOperand).
template <class T, Precision P, bool AK, bool BKc>
__device__ __forceinline__ void mma_stage(float (&acc)[T::MI][T::NI][4], const float* sa, const float* sb, int lane,
                                          int wm, int wn) {
  static_assert(P == Precision::TF32 || P == Precision::BF16, "tensor-core precisions");
  using SA = SmemOperand<AK, T::BM, T::BK>;
  using SB = SmemOperand<BKc, T::BN, T::BK>;
  const int g = lane / 4, t = lane % 4;
  if constexpr (P == Precision::TF32) {
#pragma unroll
    for (int ks = 0; ks < T::BK; ks += 8) {
      uint32_t af[T::MI][4], bf[T::NI][2];
#pragma unroll
      for (int i = 0; i < T::MI; ++i) {
        const int row = wm + 16 * i + g;
        if constexpr (AK) {
          // Matrices 0..3: rows 0-7 / 8-15 of the m16 tile, k 0-3 / 4-7: a0, a1, a2, a3.
          mma::ldmatrix_x4(af[i], sa + (wm + 16 * i + lane % 8 + 8 * ((lane / 8) % 2)) * SA::LD + ks + 4 * (lane / 16));
#pragma unroll
          for (int r = 0; r < 4; ++r) af[i][r] = mma::cvt_tf32(__uint_as_float(af[i][r]));
        } else {
          af[i][0] = mma::cvt_tf32(SA::at(sa, row, ks + t));
          af[i][1] = mma::cvt_tf32(SA::at(sa, row + 8, ks + t));
          af[i][2] = mma::cvt_tf32(SA::at(sa, row, ks + t + 4));
          af[i][3] = mma::cvt_tf32(SA::at(sa, row + 8, ks + t + 4));
        }
      }
#pragma unroll
      for (int j = 0; j < T::NI; ++j) {
        if constexpr (BKc) {
          if (j % 2 == 0) {
            // Matrices 0..3: n 0-7 k 0-3 (b0 of tile j), n 0-7 k 4-7 (b1), n 8-15 k 0-3 / 4-7 (tile j + 1).
            uint32_t r4[4];
            mma::ldmatrix_x4(r4, sb + (wn + 8 * j + lane % 8 + 8 * (lane / 16)) * SB::LD + ks + 4 * ((lane / 8) % 2));
            bf[j][0] = mma::cvt_tf32(__uint_as_float(r4[0]));
            bf[j][1] = mma::cvt_tf32(__uint_as_float(r4[1]));
            bf[j + 1][0] = mma::cvt_tf32(__uint_as_float(r4[2]));
            bf[j + 1][1] = mma::cvt_tf32(__uint_as_float(r4[3]));
          }
        } else {
          const int col = wn + 8 * j + g;
          bf[j][0] = mma::cvt_tf32(SB::at(sb, col, ks + t));
          bf[j][1] = mma::cvt_tf32(SB::at(sb, col, ks + t + 4));
        }
      }
#pragma unroll
      for (int i = 0; i < T::MI; ++i)
#pragma unroll
        for (int j = 0; j < T::NI; ++j) mma::mma_m16n8k8_tf32(acc[i][j], af[i], bf[j]);
    }
  } else {
    uint32_t af[T::MI][4], bf[T::NI][2];
#pragma unroll
    for (int i = 0; i < T::MI; ++i) {
      const int row = wm + 16 * i + g;
      af[i][0] = mma::pack_bf16x2(SA::at(sa, row, 2 * t), SA::at(sa, row, 2 * t + 1));
      af[i][1] = mma::pack_bf16x2(SA::at(sa, row + 8, 2 * t), SA::at(sa, row + 8, 2 * t + 1));
      af[i][2] = mma::pack_bf16x2(SA::at(sa, row, 2 * t + 8), SA::at(sa, row, 2 * t + 9));
      af[i][3] = mma::pack_bf16x2(SA::at(sa, row + 8, 2 * t + 8), SA::at(sa, row + 8, 2 * t + 9));
    }
#pragma unroll
    for (int j = 0; j < T::NI; ++j) {
      const int col = wn + 8 * j + g;
      bf[j][0] = mma::pack_bf16x2(SB::at(sb, col, 2 * t), SB::at(sb, col, 2 * t + 1));
      bf[j][1] = mma::pack_bf16x2(SB::at(sb, col, 2 * t + 8), SB::at(sb, col, 2 * t + 9));
    }
#pragma unroll
    for (int i = 0; i < T::MI; ++i)
#pragma unroll
      for (int j = 0; j < T::NI; ++j) mma::mma_m16n8k16_bf16(acc[i][j], af[i], bf[j]);
  }
}

// The pipelined K loop of a block: load_stage(sa, sb, kt) issues the cp.async copies of K tile kt
// into a stage's A and B tiles (its threads' copies only); `smem` holds STAGES stages. Leaves the
// warp's accumulators in acc (zeroed here).
template <class T, Precision P, bool AK, bool BKc, class LoadStage>
__device__ __forceinline__ void mma_mainloop(float (&acc)[T::MI][T::NI][4], float* smem, int ktiles, int lane,
                                             int wm, int wn, const LoadStage& load_stage) {
  constexpr int STAGE = SmemOperand<AK, T::BM, T::BK>::SIZE + SmemOperand<BKc, T::BN, T::BK>::SIZE;
  constexpr int A_SIZE = SmemOperand<AK, T::BM, T::BK>::SIZE;
#pragma unroll
  for (int i = 0; i < T::MI; ++i)
#pragma unroll
    for (int j = 0; j < T::NI; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

  // Prologue: tiles 0 .. STAGES-2 in flight (a group is committed even when empty, so that
  // wait_group counts tiles).
#pragma unroll
  for (int s = 0; s < T::STAGES - 1; ++s) {
    if (s < ktiles) load_stage(smem + s * STAGE, smem + s * STAGE + A_SIZE, s);
    mma::cp_async_commit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    mma::cp_async_wait<T::STAGES - 2>();  // this thread's copies of tile kt have landed
    __syncthreads();                      // everyone's have, and stage (kt - 1) % STAGES is free
    const int next = kt + T::STAGES - 1;
    if (next < ktiles) {
      float* st = smem + (next % T::STAGES) * STAGE;
      load_stage(st, st + A_SIZE, next);
    }
    mma::cp_async_commit();
    const float* st = smem + (kt % T::STAGES) * STAGE;
    mma_stage<T, P, AK, BKc>(acc, st, st + A_SIZE, lane, wm, wn);
  }
  mma::cp_async_wait<0>();  // no copy outlives the block (the trailing groups are empty)
}

// C = alpha * op(A) op(B) + beta * C on one BM x BN block tile (blockIdx.y, blockIdx.x).
// TA: A stored (K, M) (M contiguous); TB: B stored (N, K) (K contiguous). va / vb: the operand's
// base is 16-byte aligned and its leading dimension a multiple of 4. k == 0 leaves beta * C.
template <class T, Precision P, bool TA, bool TB>
__global__ void __launch_bounds__(T::THREADS)
    sgemm_mma_kernel(int m, int n, int k, float alpha, const float* __restrict__ a, int64_t lda, bool va,
                     const float* __restrict__ b, int64_t ldb, bool vb, float beta, float* __restrict__ c,
                     int64_t ldc) {
  using SA = SmemOperand<!TA, T::BM, T::BK>;
  using SB = SmemOperand<TB, T::BN, T::BK>;
  constexpr int BK = T::BK;
  __shared__ __align__(16) float smem[T::STAGES * (SA::SIZE + SB::SIZE)];

  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int g = lane / 4, t = lane % 4;
  const int wm = (warp / T::WARPS_N) * T::WM, wn = (warp % T::WARPS_N) * T::WN;
  const int m0 = static_cast<int>(blockIdx.y) * T::BM, n0 = static_cast<int>(blockIdx.x) * T::BN;

  float acc[T::MI][T::NI][4];
  mma_mainloop<T, P, !TA, TB>(acc, smem, (k + BK - 1) / BK, lane, wm, wn, [&](float* sa, float* sb, int kt) {
    const int k0 = kt * BK;
    if constexpr (!TA)
      load_tile<T::BM, BK, T::THREADS>(sa, SA::LD, a + m0 * lda + k0, lda, m - m0, k - k0, va);
    else
      load_tile<BK, T::BM, T::THREADS>(sa, SA::LD, a + k0 * lda + m0, lda, k - k0, m - m0, va);
    if constexpr (TB)
      load_tile<T::BN, BK, T::THREADS>(sb, SB::LD, b + n0 * ldb + k0, ldb, n - n0, k - k0, vb);
    else
      load_tile<BK, T::BN, T::THREADS>(sb, SB::LD, b + k0 * ldb + n0, ldb, k - k0, n - n0, vb);
  });

#pragma unroll
  for (int i = 0; i < T::MI; ++i)
#pragma unroll
    for (int j = 0; j < T::NI; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int row = m0 + wm + 16 * i + g + (r >= 2 ? 8 : 0);
        const int col = n0 + wn + 8 * j + 2 * t + (r & 1);
        if (row < m && col < n) {
          float* p = c + row * ldc + col;
          *p = beta == 0.f ? alpha * acc[i][j][r] : alpha * acc[i][j][r] + beta * *p;
        }
      }
}

}  // namespace dropnet::mma_gemm
