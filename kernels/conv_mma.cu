// Tensor-core implicit-GEMM convolution forward (kernels/conv_mma.h). Per group g:
//   y[b, co, pix] = sum_k w[co][k] B[k][(b, pix)] + bias[co],  M = og, N = n * ohw, K = cg * kh * kw,
//   B[(ci, ki, kj)][(b, oy, ox)] = x[b, ci, oy sh - ph + ki, ox sw - pw + kj] (0 outside the image).
// A (w) is a dense K-contiguous tile (load_tile, 16-byte copies when K % 4 == 0); B is gathered with
// 4-byte cp.async, zero-filled in the padding and past the edges. Each thread owns one column
// (b, oy, ox) of the B tile for the whole K loop (its image base and window origin computed once)
// and PER consecutive k rows of each tile, whose (ci, ki, kj) it steps by carries: one counter for
// its first row, advanced by BK per tile with the step's (ci, ki, kj) decomposition precomputed on
// the host; no division in the K loop.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_check.h"
#include "core/error.h"
#include "core/launch.cuh"
#include "kernels/conv_mma.h"
#include "kernels/gemm_mma.cuh"

namespace dropnet {

namespace {

using mma_gemm::SmemOperand;

using Tile64x64 = mma_gemm::Tile<64, 64, 32, 32>;
using Tile32x128 = mma_gemm::Tile<32, 128, 32, 32>;

// 32-bit geometry of one convolution (the host checks that the sizes fit).
struct MmaGeom {
  int n, c, h, w, out_c, out_h, out_w, kh, kw, sh, sw, ph, pw;
  int cg, og, hw, ohw, K, N;
  int step_ci, step_ki, step_kj;  // BK = step_ci * kh * kw + step_ki * kw + step_kj
};

// (ci, ki, kj) of a k, stepped by carries.
struct Tap {
  int ci, ki, kj;
  __device__ __forceinline__ void next(const MmaGeom& q) {
    if (++kj == q.kw) {
      kj = 0;
      if (++ki == q.kh) {
        ki = 0;
        ++ci;
      }
    }
  }
  __device__ __forceinline__ void advance(const MmaGeom& q) {  // += BK
    kj += q.step_kj;
    if (kj >= q.kw) {
      kj -= q.kw;
      ++ki;
    }
    ki += q.step_ki;
    if (ki >= q.kh) {
      ki -= q.kh;
      ++ci;
    }
    ci += q.step_ci;
  }
};

template <class T>
struct ImageGather {
  static constexpr int LANES = T::THREADS / T::BN;     // k rows filled at once
  static constexpr int PER = T::BK / LANES;            // consecutive k rows per thread
  static_assert(T::THREADS % T::BN == 0 && T::BK % LANES == 0, "whole rows per thread");
  const float* img;  // x of this thread's image and group
  int col, kr;       // column and first k row of the tile
  int iy0, ix0;      // window origin
  bool col_valid;
  int k;             // k of row kr in the current tile
  Tap tap;

  __device__ ImageGather(const MmaGeom& q, const float* x, int g, int n0) {
    const int tid = static_cast<int>(threadIdx.x);
    col = tid % T::BN;
    kr = (tid / T::BN) * PER;
    const int nn = n0 + col;
    col_valid = nn < q.N;
    const int b = col_valid ? nn / q.ohw : 0, pix = col_valid ? nn % q.ohw : 0;
    const int oy = pix / q.out_w, ox = pix % q.out_w;
    iy0 = oy * q.sh - q.ph;
    ix0 = ox * q.sw - q.pw;
    img = x + (static_cast<int64_t>(b) * q.c + static_cast<int64_t>(g) * q.cg) * q.hw;
    k = kr;
    const int khw = q.kh * q.kw;
    tap = {kr / khw, (kr % khw) / q.kw, kr % q.kw};  // once per thread
  }

  // The B tile of the next K tile (calls come in K order) into s ([BK][BN + 8]).
  __device__ __forceinline__ void load(const MmaGeom& q, const float* x, float* s) {
    using SB = SmemOperand<false, T::BN, T::BK>;
    Tap t = tap;
#pragma unroll
    for (int i = 0; i < PER; ++i) {
      const int iy = iy0 + t.ki, ix = ix0 + t.kj;
      const bool in = col_valid && k + i < q.K && static_cast<unsigned>(iy) < static_cast<unsigned>(q.h) &&
                      static_cast<unsigned>(ix) < static_cast<unsigned>(q.w);
      mma::cp_async_ca4(s + (kr + i) * SB::LD + col, in ? img + t.ci * q.hw + iy * q.w + ix : x, in ? 4 : 0);
      t.next(q);
    }
    tap.advance(q);
    k += T::BK;
  }
};

template <class T, Precision P>
__global__ void __launch_bounds__(T::THREADS)
    conv_forward_mma_kernel(MmaGeom q, const float* __restrict__ x, const float* __restrict__ w, bool vw,
                            const float* __restrict__ bias, float* __restrict__ y) {
  using SA = SmemOperand<true, T::BM, T::BK>;
  using SB = SmemOperand<false, T::BN, T::BK>;
  __shared__ __align__(16) float smem[T::STAGES * (SA::SIZE + SB::SIZE)];

  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int gi = lane / 4, t = lane % 4;
  const int wm = (warp / T::WARPS_N) * T::WM, wn = (warp % T::WARPS_N) * T::WN;
  const int m0 = static_cast<int>(blockIdx.y) * T::BM, n0 = static_cast<int>(blockIdx.x) * T::BN;
  const int g = static_cast<int>(blockIdx.z);
  const float* wg = w + static_cast<int64_t>(g) * q.og * q.K;  // (og, K) of this group

  ImageGather<T> gather(q, x, g, n0);
  float acc[T::MI][T::NI][4];
  mma_gemm::mma_mainloop<T, P, true, false>(acc, smem, (q.K + T::BK - 1) / T::BK, lane, wm, wn,
                                            [&](float* sa, float* sb, int kt) {
                                              const int k0 = kt * T::BK;
                                              mma_gemm::load_tile<T::BM, T::BK, T::THREADS>(
                                                  sa, SA::LD, wg + static_cast<int64_t>(m0) * q.K + k0, q.K,
                                                  q.og - m0, q.K - k0, vw);
                                              gather.load(q, x, sb);
                                            });

  // Columns (b, pix) of this thread: 2 per n8 tile, decomposed once each.
#pragma unroll
  for (int j = 0; j < T::NI; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int nn = n0 + wn + 8 * j + 2 * t + h;
      if (nn >= q.N) continue;
      const int b = nn / q.ohw, pix = nn % q.ohw;
      float* yb = y + (static_cast<int64_t>(b) * q.out_c + static_cast<int64_t>(g) * q.og) * q.ohw + pix;
#pragma unroll
      for (int i = 0; i < T::MI; ++i)
#pragma unroll
        for (int r = h; r < 4; r += 2) {
          const int co = m0 + wm + 16 * i + gi + (r >= 2 ? 8 : 0);
          if (co < q.og)
            yb[static_cast<int64_t>(co) * q.ohw] = acc[i][j][r] + (bias != nullptr ? bias[g * q.og + co] : 0.f);
        }
    }
}

template <class T>
void launch_forward(Precision precision, const MmaGeom& q, int groups, const float* x, const float* w, bool vw,
                    const float* bias, float* y, cudaStream_t s) {
  const dim3 grid((q.N + T::BN - 1) / T::BN, (q.og + T::BM - 1) / T::BM, groups);
  if (precision == Precision::TF32)
    DN_LAUNCH(conv_forward_mma_kernel<T, Precision::TF32>, grid, T::THREADS, 0, s, q, x, w, vw, bias, y);
  else
    DN_LAUNCH(conv_forward_mma_kernel<T, Precision::BF16>, grid, T::THREADS, 0, s, q, x, w, vw, bias, y);
}

}  // namespace

void conv_forward_mma_cuda(Precision precision, const ConvParams& p, const float* x, const float* w,
                           const float* bias, float* y, Stream stream, ConvMmaTile tile) {
  DN_CHECK(precision == Precision::TF32 || precision == Precision::BF16,
           "conv_forward_mma_cuda: precision must be tf32 or bf16");
  DN_CHECK(p.group >= 1 && p.c % p.group == 0 && p.out_c % p.group == 0, "conv_forward_mma_cuda: bad groups");
  const int64_t k = p.c / p.group * p.kh * p.kw, ncols = p.n * p.out_h * p.out_w;
  DN_CHECK(p.n * p.c * p.h * p.w < INT32_MAX && p.n * p.out_c * p.out_h * p.out_w < INT64_MAX / 2 &&
               p.c * p.h * p.w < INT32_MAX && k * p.out_c < INT32_MAX && ncols < INT32_MAX,
           "conv_forward_mma_cuda: sizes beyond 32-bit indexing");
  if (ncols == 0 || p.out_c == 0) return;
  MmaGeom q{};
  q.n = static_cast<int>(p.n), q.c = static_cast<int>(p.c), q.h = static_cast<int>(p.h), q.w = static_cast<int>(p.w);
  q.out_c = static_cast<int>(p.out_c), q.out_h = static_cast<int>(p.out_h), q.out_w = static_cast<int>(p.out_w);
  q.kh = p.kh, q.kw = p.kw, q.sh = p.sh, q.sw = p.sw, q.ph = p.ph, q.pw = p.pw;
  q.cg = q.c / p.group, q.og = q.out_c / p.group, q.hw = q.h * q.w, q.ohw = q.out_h * q.out_w;
  q.K = static_cast<int>(k), q.N = static_cast<int>(ncols);
  const int khw = q.kh * q.kw, bk = mma_gemm::Tile64x64::BK;
  q.step_ci = bk / khw, q.step_ki = (bk % khw) / q.kw, q.step_kj = bk % q.kw;
  const bool vw = reinterpret_cast<uintptr_t>(w) % 16 == 0 && q.K % 4 == 0;
  if (tile == ConvMmaTile::Auto) tile = q.og % 64 != 0 && q.og % 32 == 0 ? ConvMmaTile::M32N128 : ConvMmaTile::M64N64;
  cudaStream_t s = stream;
  if (q.K == 0) return;  // unreachable: kh, kw, c >= 1
  if (tile == ConvMmaTile::M32N128)
    launch_forward<Tile32x128>(precision, q, p.group, x, w, vw, bias, y, s);
  else
    launch_forward<Tile64x64>(precision, q, p.group, x, w, vw, bias, y, s);
}

}  // namespace dropnet
