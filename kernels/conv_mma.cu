// Tensor-core implicit-GEMM convolution (kernels/conv_mma.h): forward, filter and data gradients.
//
// Forward, per group g:
//   y[b, co, pix] = sum_k w[co][k] B[k][(b, pix)] + bias[co],  M = og, N = n * ohw, K = cg * kh * kw,
//   B[(ci, ki, kj)][(b, oy, ox)] = x[b, ci, oy sh - ph + ki, ox sw - pw + kj] (0 outside the image).
// A (w) is a dense K-contiguous tile (load_tile, 16-byte copies when K % 4 == 0); B is gathered with
// 4-byte cp.async, zero-filled in the padding and past the edges. Each thread owns one column
// (b, oy, ox) of the B tile for the whole K loop (its image base and window origin computed once)
// and PER consecutive k rows of each tile, whose (ci, ki, kj) it steps by carries: one counter for
// its first row, advanced by BK per tile with the step's (ci, ki, kj) decomposition precomputed on
// the host; no division in the K loop.
//
// Filter gradient, per group g: dw[co][(ci, ki, kj)] = sum over k = (b, oy, ox) of dy[b, co, oy, ox]
// x[b, ci, oy sh - ph + ki, ox sw - pw + kj]: M = og, N = cg kh kw, K = n * ohw. Both operands are
// gathered the same way: the dy tile by k lane (a (b, pix) counter per thread), the x tile by column
// (its tap fixed) with a (b, oy, ox) counter stepped by carries.
// A long K is split over grid.z (tile_plan::split_k in steps of BK, as the SIMT path plans it): each
// split starts its counters at its own k and writes an unscaled partial tile, and
// tile::splitk_reduce_kernel sums the partials in split order (deterministic).
//
// Compute skipping (ConvOutRange, group 1 only): output channels [co0, co0 + og) are computed in all
// three directions; every row offset into w, bias, y, dy and dw starts at co0 (MmaGeom::co_base).
// The forward epilogue fuses bias and Activation as conv_igemm.cuh does; the bias gradient of
// conv_backward_mma_cuda is the SIMT path's FP32 bias_backward_cuda.
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "core/cuda_check.h"
#include "core/error.h"
#include "core/launch.cuh"
#include "kernels/conv_mma.h"
#include "kernels/eltwise.h"
#include "kernels/gemm_mma.cuh"
#include "kernels/gemm_tile.cuh"
#include "kernels/tile_plan.h"

namespace dropnet {

namespace {

using mma_gemm::SmemOperand;

using Tile64x64 = mma_gemm::Tile<64, 64, 32, 32>;
using Tile32x128 = mma_gemm::Tile<32, 128, 32, 32>;

// v = q * s + r (0 <= r < s) for a known divisor s: what a counter adds or subtracts.
struct QR {
  int q, r;
};
DN_HD QR divmod_floor(int v, int s) {
  int q = v / s, r = v % s;
  if (r < 0) r += s, --q;
  return {q, r};
}

// 32-bit geometry of one convolution (the host checks that the sizes fit).
struct MmaGeom {
  int n, c, h, w, out_c, out_h, out_w, kh, kw, sh, sw, ph, pw;
  int cg, og, hw, ohw, K, N;
  int K2;   // the filter gradient's N (cg * kh * kw); its K is n * ohw
  // Compute skipping (ConvOutRange, group 1 only): output channels [co0, co0 + og) are computed;
  // og is then the count, and out_c stays the stride between images.
  int co0;
  // First output channel of group g's computed rows: w, bias, y, dy and dw rows start here.
  DN_HD int co_base(int g) const { return g * og + co0; }
  // Backward data: BK = step_co * khw + step_ki * kw + step_kj over K = og * kh * kw, and the
  // quotient / remainder by the stride of the window steps it takes.
  int step_co;
  QR one_y, one_x, kh_y, kw_x, ski_y, skj_x;
  int step_ci, step_ki, step_kj;  // BK = step_ci * kh * kw + step_ki * kw + step_kj
  int step_b, step_oy, step_ox;   // BK = step_b * ohw + step_oy * out_w + step_ox
};

// Adds the digits (dh, dm, dl) to the mixed-radix number (h, m, l), m in [0, nm), l in [0, nl),
// carrying; the step's own digits are reduced (dm < nm, dl < nl). The gathers walk K this way
// instead of dividing every k.
__device__ __forceinline__ void carry_add(int& h, int& m, int& l, int nm, int nl, int dh, int dm, int dl) {
  l += dl;
  if (l >= nl) {
    l -= nl;
    ++m;
  }
  m += dm;
  if (m >= nm) {
    m -= nm;
    ++h;
  }
  h += dh;
}

// (ci, ki, kj) of a k, stepped by carries.
struct Tap {
  int ci, ki, kj;
  __device__ __forceinline__ void next(const MmaGeom& q) { carry_add(ci, ki, kj, q.kh, q.kw, 0, 0, 1); }
  __device__ __forceinline__ void advance(const MmaGeom& q) {  // += BK
    carry_add(ci, ki, kj, q.kh, q.kw, q.step_ci, q.step_ki, q.step_kj);
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
                            const float* __restrict__ bias, Activation act, float* __restrict__ y) {
  using SA = SmemOperand<true, T::BM, T::BK>;
  using SB = SmemOperand<false, T::BN, T::BK>;
  __shared__ __align__(16) float smem[T::STAGES * (SA::SIZE + SB::SIZE)];

  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int gi = lane / 4, t = lane % 4;
  const int wm = (warp / T::WARPS_N) * T::WM, wn = (warp % T::WARPS_N) * T::WN;
  const int m0 = static_cast<int>(blockIdx.y) * T::BM, n0 = static_cast<int>(blockIdx.x) * T::BN;
  const int g = static_cast<int>(blockIdx.z);
  const int cb = q.co_base(g);
  const float* wg = w + static_cast<int64_t>(cb) * q.K;  // (og, K) of this group and range

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
      float* yb = y + (static_cast<int64_t>(b) * q.out_c + cb) * q.ohw + pix;
#pragma unroll
      for (int i = 0; i < T::MI; ++i)
#pragma unroll
        for (int r = h; r < 4; r += 2) {
          const int co = m0 + wm + 16 * i + gi + (r >= 2 ? 8 : 0);
          if (co < q.og)  // the SIMT epilogue's arithmetic (conv_igemm.cuh)
            yb[static_cast<int64_t>(co) * q.ohw] = act(acc[i][j][r] + (bias != nullptr ? bias[cb + co] : 0.f));
        }
    }
}

// (b, oy, ox) of a k of the filter gradient's K = n * ohw, stepped by carries.
struct Pixel {
  int b, oy, ox;
  __device__ __forceinline__ void next(const MmaGeom& q) { carry_add(b, oy, ox, q.out_h, q.out_w, 0, 0, 1); }
  __device__ __forceinline__ void advance(const MmaGeom& q) {  // += BK
    carry_add(b, oy, ox, q.out_h, q.out_w, q.step_b, q.step_oy, q.step_ox);
  }
};

// The filter gradient's A tile: A[co][(b, pix)] = dy[b, g og + co, pix], K-contiguous ([BM][BK + 4]).
// Thread t owns k lane t % BK of every tile and rows t / BK + i (THREADS / BK) (consecutive threads
// read consecutive pixels).
template <class T>
struct GradGather {
  static constexpr int LANES = T::THREADS / T::BK;  // rows filled at once
  static_assert(T::THREADS % T::BK == 0 && T::BM % LANES == 0, "whole rows per thread");
  const float* dyg;  // dy at image 0, channel g og + co0
  int kl, row0, k;
  Pixel px;
  __device__ GradGather(const MmaGeom& q, const float* dy, int g, int k_begin) {
    const int tid = static_cast<int>(threadIdx.x);
    kl = tid % T::BK;
    row0 = tid / T::BK;
    k = k_begin + kl;
    dyg = dy + static_cast<int64_t>(q.co_base(g)) * q.ohw;
    const int ohw = q.ohw > 0 ? q.ohw : 1, ow = q.out_w > 0 ? q.out_w : 1;  // (no pixels: K = 0, never loaded)
    px = {k / ohw, (k % ohw) / ow, k % ow};  // once per thread
  }
  __device__ __forceinline__ void load(const MmaGeom& q, const float* dy, int m0, float* s) {
    using SA = SmemOperand<true, T::BM, T::BK>;
    const bool kin = k < q.K;
    const float* pix = dyg + static_cast<int64_t>(px.b) * q.out_c * q.ohw + px.oy * q.out_w + px.ox;
#pragma unroll
    for (int i = 0; i < T::BM / LANES; ++i) {
      const int r = row0 + i * LANES, co = m0 + r;
      const bool in = kin && co < q.og;
      mma::cp_async_ca4(s + r * SA::LD + kl, in ? pix + static_cast<int64_t>(co) * q.ohw : dy, in ? 4 : 0);
    }
    px.advance(q);
    k += T::BK;
  }
};

// The filter gradient's B tile: B[(b, oy, ox)][(ci, ki, kj)] = x at the tap, N-contiguous
// ([BK][BN + 8]). Thread t owns column t % BN (its tap, decomposed once) and PER consecutive k rows.
template <class T>
struct TapGather {
  static constexpr int LANES = T::THREADS / T::BN;
  static constexpr int PER = T::BK / LANES;
  static_assert(T::THREADS % T::BN == 0 && T::BK % LANES == 0, "whole rows per thread");
  const float* chan;  // x at image 0, channel g cg + ci
  int col, kr, k, ki, kj;
  bool col_valid;
  Pixel px;
  __device__ TapGather(const MmaGeom& q, const float* x, int g, int n0, int k_begin) {
    const int tid = static_cast<int>(threadIdx.x);
    col = tid % T::BN;
    kr = (tid / T::BN) * PER;
    const int nn = n0 + col, khw = q.kh * q.kw;
    col_valid = nn < q.K2;
    const int ci = col_valid ? nn / khw : 0;
    ki = col_valid ? (nn % khw) / q.kw : 0;
    kj = col_valid ? nn % q.kw : 0;
    chan = x + (static_cast<int64_t>(g) * q.cg + ci) * q.hw;
    k = k_begin + kr;
    const int ohw = q.ohw > 0 ? q.ohw : 1, ow = q.out_w > 0 ? q.out_w : 1;
    px = {k / ohw, (k % ohw) / ow, k % ow};  // once per thread
  }
  __device__ __forceinline__ void load(const MmaGeom& q, const float* x, float* s) {
    using SB = SmemOperand<false, T::BN, T::BK>;
    Pixel p = px;
#pragma unroll
    for (int i = 0; i < PER; ++i) {
      const int iy = p.oy * q.sh - q.ph + ki, ix = p.ox * q.sw - q.pw + kj;
      const bool in = col_valid && k + i < q.K && static_cast<unsigned>(iy) < static_cast<unsigned>(q.h) &&
                      static_cast<unsigned>(ix) < static_cast<unsigned>(q.w);
      mma::cp_async_ca4(s + (kr + i) * SB::LD + col,
                        in ? chan + static_cast<int64_t>(p.b) * q.c * q.hw + iy * q.w + ix : x, in ? 4 : 0);
      p.next(q);
    }
    px.advance(q);
    k += T::BK;
  }
};

// dw[g og + co][(ci, ki, kj)] = sum over (b, pix) of dy[b, g og + co, pix] x[b, g cg + ci, tap] + beta dw
// (beta == 0 does not read dw). Here q.K is n * ohw and q.K2 = cg * kh * kw the GEMM's N. Group
// blockIdx.z / splits, K split blockIdx.z % splits (k_per_split a multiple of BK): with one split
// the tile goes to dw (rows from co0) as above; otherwise, unscaled, to partial[g splits + s]
// (og x K2, dense), summed in split order into dw by tile::splitk_reduce_kernel.
template <class T, Precision P>
__global__ void __launch_bounds__(T::THREADS)
    conv_filter_grad_mma_kernel(MmaGeom q, const float* __restrict__ x, const float* __restrict__ dy, float beta,
                                int splits, int k_per_split, float* __restrict__ dw, float* __restrict__ partial) {
  using SA = SmemOperand<true, T::BM, T::BK>;
  using SB = SmemOperand<false, T::BN, T::BK>;
  __shared__ __align__(16) float smem[T::STAGES * (SA::SIZE + SB::SIZE)];

  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int gi = lane / 4, t = lane % 4;
  const int wm = (warp / T::WARPS_N) * T::WM, wn = (warp % T::WARPS_N) * T::WN;
  const int m0 = static_cast<int>(blockIdx.y) * T::BM, n0 = static_cast<int>(blockIdx.x) * T::BN;
  const int g = static_cast<int>(blockIdx.z) / splits, sp = static_cast<int>(blockIdx.z) % splits;
  const int k_begin = sp * k_per_split;
  MmaGeom qs = q;  // this split's K range: [k_begin, qs.K)
  qs.K = min(q.K, k_begin + k_per_split);

  GradGather<T> ga(qs, dy, g, k_begin);
  TapGather<T> gb(qs, x, g, n0, k_begin);
  float acc[T::MI][T::NI][4];
  mma_gemm::mma_mainloop<T, P, true, false>(acc, smem, (qs.K - k_begin + T::BK - 1) / T::BK, lane, wm, wn,
                                            [&](float* sa, float* sb, int) {
                                              ga.load(qs, dy, m0, sa);
                                              gb.load(qs, x, sb);
                                            });
  const bool whole = splits == 1;
  float* dwg = whole ? dw + static_cast<int64_t>(q.co_base(g)) * q.K2
                     : partial + (static_cast<int64_t>(g) * splits + sp) * q.og * q.K2;
#pragma unroll
  for (int i = 0; i < T::MI; ++i)
#pragma unroll
    for (int j = 0; j < T::NI; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int co = m0 + wm + 16 * i + gi + (r >= 2 ? 8 : 0);
        const int nn = n0 + wn + 8 * j + 2 * t + (r & 1);
        if (co < q.og && nn < q.K2) {
          float* p = dwg + static_cast<int64_t>(co) * q.K2 + nn;
          *p = !whole || beta == 0.f ? acc[i][j][r] : acc[i][j][r] + beta * *p;
        }
      }
}

// A value kept as q * s + r while it moves by known steps (no division).
struct Coord {
  int q, r;
  __device__ __forceinline__ void sub(QR d, int s) {
    q -= d.q;
    r -= d.r;
    if (r < 0) r += s, --q;
  }
  __device__ __forceinline__ void add(QR d, int s) {
    q += d.q;
    r += d.r;
    if (r >= s) r -= s, ++q;
  }
};

// Backward data's k = (co, ki, kj) for one column (b, iy, ix), with the output pixel its tap reads:
// ty = iy + ph - ki = y.q sh + y.r and tx = ix + pw - kj = x.q sw + x.r; the tap reads dy[oy = y.q,
// ox = x.q] when both remainders are 0 and the pixel is inside the output.
struct DyTap {
  int co, ki, kj;
  Coord y, x;
  __device__ __forceinline__ void next(const MmaGeom& q) {
    ++kj;
    x.sub(q.one_x, q.sw);
    if (kj == q.kw) {
      kj = 0;
      x.add(q.kw_x, q.sw);
      ++ki;
      y.sub(q.one_y, q.sh);
      if (ki == q.kh) {
        ki = 0;
        y.add(q.kh_y, q.sh);
        ++co;
      }
    }
  }
  __device__ __forceinline__ void advance(const MmaGeom& q) {  // += BK
    kj += q.step_kj;
    x.sub(q.skj_x, q.sw);
    if (kj >= q.kw) {
      kj -= q.kw;
      x.add(q.kw_x, q.sw);
      ++ki;
      y.sub(q.one_y, q.sh);
    }
    ki += q.step_ki;
    y.sub(q.ski_y, q.sh);
    if (ki >= q.kh) {
      ki -= q.kh;
      y.add(q.kh_y, q.sh);
      ++co;
    }
    co += q.step_co;
  }
};

// Backward data's A tile: A[ci][(co, ki, kj)] = w[g og + co, ci, ki, kj], K-contiguous. Thread t
// owns k lane t % BK (a (co, ki kw + kj) counter) and rows t / BK + i (THREADS / BK).
template <class T>
struct WeightGather {
  static constexpr int LANES = T::THREADS / T::BK;
  static_assert(T::THREADS % T::BK == 0 && T::BM % LANES == 0, "whole rows per thread");
  const float* wg;  // w at output channel g og + co0
  int kl, row0, k, co, kk;
  __device__ WeightGather(const MmaGeom& q, const float* w, int g) {
    const int tid = static_cast<int>(threadIdx.x), khw = q.kh * q.kw;
    kl = tid % T::BK;
    row0 = tid / T::BK;
    k = kl;
    wg = w + static_cast<int64_t>(q.co_base(g)) * q.cg * khw;
    co = kl / khw, kk = kl % khw;  // once per thread
  }
  __device__ __forceinline__ void load(const MmaGeom& q, const float* w, int m0, float* s) {
    using SA = SmemOperand<true, T::BM, T::BK>;
    const int khw = q.kh * q.kw;
    const bool kin = k < q.K;
    const float* base = wg + static_cast<int64_t>(co) * q.cg * khw + kk;
#pragma unroll
    for (int i = 0; i < T::BM / LANES; ++i) {
      const int r = row0 + i * LANES, ci = m0 + r;
      const bool in = kin && ci < q.cg;
      mma::cp_async_ca4(s + r * SA::LD + kl, in ? base + ci * khw : w, in ? 4 : 0);
    }
    kk += q.step_ki * q.kw + q.step_kj;  // BK mod khw
    if (kk >= khw) kk -= khw, ++co;
    co += q.step_co;
    k += T::BK;
  }
};

// Backward data's B tile: B[(co, ki, kj)][(b, iy, ix)] = dy at the output pixel whose window tap
// (ki, kj) lands on (iy, ix), 0 if none. Thread t owns column t % BN and PER consecutive k rows.
template <class T>
struct DyGather {
  static constexpr int LANES = T::THREADS / T::BN;
  static constexpr int PER = T::BK / LANES;
  static_assert(T::THREADS % T::BN == 0 && T::BK % LANES == 0, "whole rows per thread");
  const float* dyb;  // dy at image b, channel g og + co0
  int col, kr, k;
  bool col_valid;
  DyTap tap;
  __device__ DyGather(const MmaGeom& q, const float* dy, int g, int n0) {
    const int tid = static_cast<int>(threadIdx.x), khw = q.kh * q.kw;
    col = tid % T::BN;
    kr = (tid / T::BN) * PER;
    const int nn = n0 + col;
    col_valid = nn < q.N;
    // Once per thread: the column's image and pixel, its first row's tap and output coordinates.
    const int b = col_valid ? nn / q.hw : 0, pix = col_valid ? nn % q.hw : 0;
    const int iy = pix / q.w, ix = pix % q.w;
    dyb = dy + (static_cast<int64_t>(b) * q.out_c + q.co_base(g)) * q.ohw;
    k = kr;
    tap.co = kr / khw, tap.ki = (kr % khw) / q.kw, tap.kj = kr % q.kw;
    const QR y = divmod_floor(iy + q.ph - tap.ki, q.sh), x = divmod_floor(ix + q.pw - tap.kj, q.sw);
    tap.y = {y.q, y.r};
    tap.x = {x.q, x.r};
  }
  __device__ __forceinline__ void load(const MmaGeom& q, const float* dy, float* s) {
    using SB = SmemOperand<false, T::BN, T::BK>;
    DyTap t = tap;
#pragma unroll
    for (int i = 0; i < PER; ++i) {
      const bool in = col_valid && k + i < q.K && t.y.r == 0 && t.x.r == 0 &&
                      static_cast<unsigned>(t.y.q) < static_cast<unsigned>(q.out_h) &&
                      static_cast<unsigned>(t.x.q) < static_cast<unsigned>(q.out_w);
      mma::cp_async_ca4(s + (kr + i) * SB::LD + col,
                        in ? dyb + static_cast<int64_t>(t.co) * q.ohw + t.y.q * q.out_w + t.x.q : dy, in ? 4 : 0);
      t.next(q);
    }
    tap.advance(q);
    k += T::BK;
  }
};

// dx[b, g cg + ci, pix] = sum over (co, ki, kj) of w[g og + co, ci, ki, kj] dy[b, g og + co, tap's
// pixel] + beta dx (beta == 0 does not read dx). q.K = og * kh * kw, q.N = n * h * w.
template <class T, Precision P>
__global__ void __launch_bounds__(T::THREADS)
    conv_data_grad_mma_kernel(MmaGeom q, const float* __restrict__ w, const float* __restrict__ dy, float beta,
                              float* __restrict__ dx) {
  using SA = SmemOperand<true, T::BM, T::BK>;
  using SB = SmemOperand<false, T::BN, T::BK>;
  __shared__ __align__(16) float smem[T::STAGES * (SA::SIZE + SB::SIZE)];

  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int gi = lane / 4, t = lane % 4;
  const int wm = (warp / T::WARPS_N) * T::WM, wn = (warp % T::WARPS_N) * T::WN;
  const int m0 = static_cast<int>(blockIdx.y) * T::BM, n0 = static_cast<int>(blockIdx.x) * T::BN;
  const int g = static_cast<int>(blockIdx.z);

  WeightGather<T> ga(q, w, g);
  DyGather<T> gb(q, dy, g, n0);
  float acc[T::MI][T::NI][4];
  mma_gemm::mma_mainloop<T, P, true, false>(acc, smem, (q.K + T::BK - 1) / T::BK, lane, wm, wn,
                                            [&](float* sa, float* sb, int) {
                                              ga.load(q, w, m0, sa);
                                              gb.load(q, dy, sb);
                                            });
#pragma unroll
  for (int j = 0; j < T::NI; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int nn = n0 + wn + 8 * j + 2 * t + h;
      if (nn >= q.N) continue;
      const int b = nn / q.hw, pix = nn % q.hw;
      float* xb = dx + (static_cast<int64_t>(b) * q.c + static_cast<int64_t>(g) * q.cg) * q.hw + pix;
#pragma unroll
      for (int i = 0; i < T::MI; ++i)
#pragma unroll
        for (int r = h; r < 4; r += 2) {
          const int ci = m0 + wm + 16 * i + gi + (r >= 2 ? 8 : 0);
          if (ci < q.cg) {
            float* p = xb + static_cast<int64_t>(ci) * q.hw;
            *p = beta == 0.f ? acc[i][j][r] : acc[i][j][r] + beta * *p;
          }
        }
    }
}

template <class T>
void launch_forward(Precision precision, const MmaGeom& q, int groups, const float* x, const float* w, bool vw,
                    const float* bias, Activation act, float* y, cudaStream_t s) {
  const dim3 grid((q.N + T::BN - 1) / T::BN, (q.og + T::BM - 1) / T::BM, groups);
  if (precision == Precision::TF32)
    DN_LAUNCH(conv_forward_mma_kernel<T, Precision::TF32>, grid, T::THREADS, 0, s, q, x, w, vw, bias, act, y);
  else
    DN_LAUNCH(conv_forward_mma_kernel<T, Precision::BF16>, grid, T::THREADS, 0, s, q, x, w, vw, bias, act, y);
}

}  // namespace

namespace {

// oc: the resolved output-channel range (conv_out_range); a partial one is group 1.
MmaGeom make_mma_geom(const char* who, const ConvParams& p, ConvOutRange oc = {0, -1}) {
  DN_CHECK(p.group >= 1 && p.c % p.group == 0 && p.out_c % p.group == 0, "{}: bad groups", who);
  const int64_t k = p.c / p.group * p.kh * p.kw, ncols = p.n * p.out_h * p.out_w;
  DN_CHECK(p.n * p.c * p.h * p.w < INT32_MAX && p.n * p.out_c * p.out_h * p.out_w < INT32_MAX &&
               k * p.out_c < INT32_MAX && ncols < INT32_MAX,
           "{}: sizes beyond 32-bit indexing", who);
  DN_CHECK(p.group <= 65535, "{}: {} groups exceed the grid", who, p.group);
  MmaGeom q{};
  q.n = static_cast<int>(p.n), q.c = static_cast<int>(p.c), q.h = static_cast<int>(p.h), q.w = static_cast<int>(p.w);
  q.out_c = static_cast<int>(p.out_c), q.out_h = static_cast<int>(p.out_h), q.out_w = static_cast<int>(p.out_w);
  q.kh = p.kh, q.kw = p.kw, q.sh = p.sh, q.sw = p.sw, q.ph = p.ph, q.pw = p.pw;
  q.cg = q.c / p.group, q.og = q.out_c / p.group, q.hw = q.h * q.w, q.ohw = q.out_h * q.out_w;
  if (p.group == 1 && oc.end >= 0) {
    q.co0 = static_cast<int>(oc.begin);
    q.og = static_cast<int>(oc.end - oc.begin);
  }
  q.K = static_cast<int>(k), q.N = static_cast<int>(ncols), q.K2 = static_cast<int>(k);
  const int khw = q.kh * q.kw, bk = mma_gemm::Tile64x64::BK;
  q.step_ci = bk / khw, q.step_ki = (bk % khw) / q.kw, q.step_kj = bk % q.kw;
  if (q.ohw > 0) q.step_b = bk / q.ohw, q.step_oy = (bk % q.ohw) / q.out_w, q.step_ox = bk % q.out_w;
  q.step_co = bk / khw;  // step_ki, step_kj as above
  q.one_y = divmod_floor(1, q.sh), q.one_x = divmod_floor(1, q.sw);
  q.kh_y = divmod_floor(q.kh, q.sh), q.kw_x = divmod_floor(q.kw, q.sw);
  q.ski_y = divmod_floor(q.step_ki, q.sh), q.skj_x = divmod_floor(q.step_kj, q.sw);
  return q;
}

ConvMmaTile pick_tile(ConvMmaTile tile, int og) {
  if (tile != ConvMmaTile::Auto) return tile;
  return og % 64 != 0 && og % 32 == 0 ? ConvMmaTile::M32N128 : ConvMmaTile::M64N64;
}

template <class T>
dim3 filter_grad_grid(const MmaGeom& q, int64_t z) {
  return dim3((q.K2 + T::BN - 1) / T::BN, (q.og + T::BM - 1) / T::BM, static_cast<unsigned>(z));
}

// The filter gradient's K split (tile_plan::split_k, as the SIMT path plans it, in steps of the
// tile's BK) for the whole convolution's grid: a channel range splits as the whole does, so each
// computed row is the whole computation's, bit for bit. Returns {splits, k per split}.
std::pair<int, int> filter_grad_split(const ConvParams& p, ConvMmaTile tile) {
  const MmaGeom whole = make_mma_geom("conv_filter_grad_mma_cuda", p);
  const dim3 g = pick_tile(tile, whole.og) == ConvMmaTile::M32N128 ? filter_grad_grid<Tile32x128>(whole, p.group)
                                                                   : filter_grad_grid<Tile64x64>(whole, p.group);
  static_assert(Tile32x128::BK == Tile64x64::BK, "one K step");
  return tile_plan::split_k(int64_t(g.x) * g.y * g.z, whole.N, current_sm_count(), Tile64x64::BK);
}

template <class T>
void launch_filter_grad(Precision precision, const MmaGeom& q, int groups, std::pair<int, int> split, const float* x,
                        const float* dy, float beta, float* dw, cudaStream_t s) {
  const auto [splits, kps] = split;
  const dim3 grid = filter_grad_grid<T>(q, int64_t(groups) * splits);
  DN_CHECK(grid.z <= 65535, "conv_filter_grad_mma_cuda: {} groups x {} splits exceed the grid", groups, splits);
  const int64_t mn = int64_t(q.og) * q.K2;
  float* partial = nullptr;
  if (splits > 1) partial = static_cast<float*>(stream_scratch_alloc(sizeof(float) * grid.z * mn, s));
  if (precision == Precision::TF32)
    DN_LAUNCH(conv_filter_grad_mma_kernel<T, Precision::TF32>, grid, T::THREADS, 0, s, q, x, dy, beta, splits, kps,
              dw, partial);
  else
    DN_LAUNCH(conv_filter_grad_mma_kernel<T, Precision::BF16>, grid, T::THREADS, 0, s, q, x, dy, beta, splits, kps,
              dw, partial);
  if (splits > 1) {
    for (int g = 0; g < groups; ++g)
      DN_LAUNCH(tile::splitk_reduce_kernel, grid_for(mn), 256, 0, s, int64_t(q.og), int64_t(q.K2), splits,
                partial + int64_t(g) * splits * mn, 1.f, beta, dw + int64_t(q.co_base(g)) * q.K2, int64_t(q.K2));
    stream_scratch_free(partial, s);
  }
}

template <class T>
void launch_data_grad(Precision precision, const MmaGeom& q, int groups, const float* w, const float* dy, float beta,
                      float* dx, cudaStream_t s) {
  const dim3 grid((q.N + T::BN - 1) / T::BN, (q.cg + T::BM - 1) / T::BM, groups);
  if (precision == Precision::TF32)
    DN_LAUNCH(conv_data_grad_mma_kernel<T, Precision::TF32>, grid, T::THREADS, 0, s, q, w, dy, beta, dx);
  else
    DN_LAUNCH(conv_data_grad_mma_kernel<T, Precision::BF16>, grid, T::THREADS, 0, s, q, w, dy, beta, dx);
}

void check_precision(Precision precision, const char* who) {
  DN_CHECK(precision == Precision::TF32 || precision == Precision::BF16, "{}: precision must be tf32 or bf16", who);
}

void data_grad(Precision precision, const ConvParams& p, ConvOutRange oc, const float* w, const float* dy, float beta,
               float* dx, cudaStream_t s, ConvMmaTile tile) {
  MmaGeom q = make_mma_geom("conv_data_grad_mma_cuda", p, oc);
  q.K = q.og * q.kh * q.kw;  // the GEMM's K: the computed output channels' taps
  q.N = q.n * q.hw;          // and N: every input pixel
  if (q.N == 0 || q.cg == 0) return;
  if (pick_tile(tile, q.cg) == ConvMmaTile::M32N128)
    launch_data_grad<Tile32x128>(precision, q, p.group, w, dy, beta, dx, s);
  else
    launch_data_grad<Tile64x64>(precision, q, p.group, w, dy, beta, dx, s);
}

void filter_grad(Precision precision, const ConvParams& p, ConvOutRange oc, const float* x, const float* dy,
                 float beta, float* dw, cudaStream_t s, ConvMmaTile tile) {
  MmaGeom q = make_mma_geom("conv_filter_grad_mma_cuda", p, oc);
  if (q.og == 0 || q.K2 == 0) return;
  q.K = q.N;  // the GEMM's K: every output pixel of every image (0: dw = beta dw)
  const std::pair<int, int> split = filter_grad_split(p, tile);
  if (pick_tile(tile, q.og) == ConvMmaTile::M32N128)
    launch_filter_grad<Tile32x128>(precision, q, p.group, split, x, dy, beta, dw, s);
  else
    launch_filter_grad<Tile64x64>(precision, q, p.group, split, x, dy, beta, dw, s);
}

}  // namespace

void conv_data_grad_mma_cuda(Precision precision, const ConvParams& p, const float* w, const float* dy, float beta,
                             float* dx, Stream stream, ConvMmaTile tile) {
  check_precision(precision, "conv_data_grad_mma_cuda");
  data_grad(precision, p, {0, -1}, w, dy, beta, dx, stream, tile);
}

void conv_filter_grad_mma_cuda(Precision precision, const ConvParams& p, const float* x, const float* dy, float beta,
                               float* dw, Stream stream, ConvMmaTile tile) {
  check_precision(precision, "conv_filter_grad_mma_cuda");
  filter_grad(precision, p, {0, -1}, x, dy, beta, dw, stream, tile);
}

void conv_forward_mma_cuda(Precision precision, const ConvParams& p, const float* x, const float* w,
                           const float* bias, float* y, Stream stream, Activation act, ConvOutRange oc,
                           ConvMmaTile tile) {
  check_precision(precision, "conv_forward_mma_cuda");
  oc = conv_out_range(p, oc);
  const MmaGeom q = make_mma_geom("conv_forward_mma_cuda", p, oc);
  if (q.N == 0 || q.og == 0) return;
  // 16-byte weight rows: K % 4 == 0 keeps every row (the range's first included) aligned with w.
  const bool vw = reinterpret_cast<uintptr_t>(w) % 16 == 0 && q.K % 4 == 0;
  cudaStream_t s = stream;
  if (pick_tile(tile, q.og) == ConvMmaTile::M32N128)
    launch_forward<Tile32x128>(precision, q, p.group, x, w, vw, bias, act, y, s);
  else
    launch_forward<Tile64x64>(precision, q, p.group, x, w, vw, bias, act, y, s);
}

void conv_backward_mma_cuda(Precision precision, const ConvParams& p, const float* x, const float* w,
                            const float* dy, float* dw, float* db, float beta, float* dx, Stream stream,
                            ConvOutRange oc, ConvMmaTile tile) {
  check_precision(precision, "conv_backward_mma_cuda");
  oc = conv_out_range(p, oc);
  // The bias gradient is a sum, not a product: the SIMT path's FP32 kernel, over every channel.
  if (db != nullptr) bias_backward_cuda(p.n, p.out_c, p.out_h * p.out_w, dy, db, stream);
  filter_grad(precision, p, oc, x, dy, 1.f, dw, stream, tile);  // dw accumulates
  if (dx != nullptr) data_grad(precision, p, oc, w, dy, beta, dx, stream, tile);
}

}  // namespace dropnet
