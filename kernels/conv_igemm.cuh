// Implicit-GEMM convolution kernels: forward, backward-data and backward-filter as block-tiled
// GEMMs (gemm_tile.cuh) whose operand tiles are gathered straight from the tensors, with no
// column buffer in memory. Per group g (cg = c / group, og = out_c / group, khw = kh * kw):
//
//   forward        y[b, co, pix]    M = og, N = n * ohw, K = cg * khw
//                  A = w (og, cg * khw), dense; B[(ci, ki, kj)][(b, pix)] = x at the window tap
//   backward-data  dx[b, ci, iy, ix] M = cg, N = n * h * w, K = og * khw
//                  A[ci][(co, ki, kj)] = w[co, ci, ki, kj]; B[(co, ki, kj)][(b, iy, ix)] = dy at
//                  the output pixel whose window tap (ki, kj) lands on (iy, ix), 0 if none
//   backward-filter dw[co, (ci, ki, kj)] += M = og, N = cg * khw, K = n * ohw, split over grid.z
//                  A[co][(b, pix)] = dy; B[(b, pix)][(ci, ki, kj)] = x at the window tap
//
// Compute skipping (group 1 only): output channels [co0, co0 + og) of out_c. og is then the
// count computed, every offset into w, bias, y and dy starts at channel co0, and out_c stays the
// stride between images; dw rows outside the range are not touched.
//
// Every output element is written by one thread (the filter gradient's K splits go to partial
// tiles reduced in order), so results are deterministic. Epilogues fuse the bias (forward) and
// the beta accumulation (backward). Index arithmetic is 32-bit inside one image / weight tensor
// and 64-bit across images; the host checks the sizes.
//
// Device code only (see gemm_tile.cuh): the CPU emulation test runs these kernels too.
#pragma once

#include <cstdint>

#include "kernels/conv_math.h"
#include "kernels/eltwise_math.h"
#include "kernels/gemm_tile.cuh"
#include "kernels/tile_plan.h"

namespace dropnet {
namespace igemm {

using tile::Acc;
using tile::kBk;
using tile::kPad;
using tile::kThreads;
static_assert(tile_plan::kPlanBk == kBk, "tile_plan.h rounds K splits to the tile's K step");

// 32-bit geometry of one convolution and group, as the kernels use it.
struct Geom {
  int n, c, h, w, out_c, out_h, out_w, kh, kw, sh, sw, ph, pw;
  int cg, og, khw, hw, ohw;
  int g;    // group of this launch
  int co0;  // first output channel computed (compute skipping; 0 with groups)
  // First output channel of this launch's group and range: w, bias, y and dy rows start here.
  DN_HD int co_base() const { return g * og + co0; }
};

// oc: output channels [oc.begin, oc.end) of a group-1 convolution (ConvOutRange, end -1: all).
DN_HD Geom make_geom(const ConvParams& p, int g, int oc_begin = 0, int oc_end = -1) {
  Geom q{};
  q.n = static_cast<int>(p.n), q.c = static_cast<int>(p.c), q.h = static_cast<int>(p.h), q.w = static_cast<int>(p.w);
  q.out_c = static_cast<int>(p.out_c), q.out_h = static_cast<int>(p.out_h), q.out_w = static_cast<int>(p.out_w);
  q.kh = p.kh, q.kw = p.kw, q.sh = p.sh, q.sw = p.sw, q.ph = p.ph, q.pw = p.pw;
  q.cg = q.c / p.group, q.og = q.out_c / p.group, q.khw = q.kh * q.kw, q.hw = q.h * q.w, q.ohw = q.out_h * q.out_w;
  q.g = g;
  if (p.group == 1 && oc_end >= 0) {  // a range is group 1 only (conv_out_range)
    q.co0 = oc_begin;
    q.og = oc_end - oc_begin;
  }
  return q;
}

// A ROWS x kBk operand tile gathered element by element: thread t owns row t % ROWS of the tile
// (fixed for the whole K loop, so MAP precomputes its row once) and k lanes t / ROWS + s * (256 /
// ROWS). MAP: constructed from (geometry, row, valid); at(k) returns op(X)[row][k].
template <int ROWS, class MAP>
struct GatherLoader {
  static_assert(kThreads % ROWS == 0 && kBk % (kThreads / ROWS) == 0, "tile rows must divide the block");
  static constexpr int kLanes = kThreads / ROWS;  // k rows filled per pass
  static constexpr int kPer = kBk / kLanes;
  MAP map;
  bool valid;
  int k_end;
  float reg[kPer];

  __device__ GatherLoader(const MAP& m, bool valid_, int k_end_) : map(m), valid(valid_), k_end(k_end_) {}

  __device__ __forceinline__ void load(int k0) {
#pragma unroll
    for (int s = 0; s < kPer; ++s) {
      const int k = k0 + int(threadIdx.x) / ROWS + s * kLanes;
      reg[s] = valid && k < k_end ? map.at(k) : 0.f;
    }
  }
  __device__ __forceinline__ void store(float* __restrict__ sm) const {
    const int lane = int(threadIdx.x) / ROWS, row = int(threadIdx.x) % ROWS;
#pragma unroll
    for (int s = 0; s < kPer; ++s) sm[(lane + s * kLanes) * (ROWS + kPad) + row] = reg[s];
  }
};

// Forward B: row j = (b, oy, ox) output pixel, k = (ci, ki, kj) window tap of the group's input.
struct FwdInput {
  const float* base;  // x + (b * c + g * cg) * hw
  int iy0, ix0;       // window origin (may be negative: padding)
  Geom q;
  __device__ FwdInput(const Geom& geo, const float* x, int j, bool valid) : base(x), iy0(0), ix0(0), q(geo) {
    if (!valid) return;
    const int b = j / geo.ohw, pix = j % geo.ohw;
    iy0 = (pix / geo.out_w) * geo.sh - geo.ph;
    ix0 = (pix % geo.out_w) * geo.sw - geo.pw;
    base = x + (int64_t(b) * geo.c + int64_t(geo.g) * geo.cg) * geo.hw;
  }
  __device__ __forceinline__ float at(int k) const {
    const int ci = k / q.khw, r = k % q.khw;
    const int iy = iy0 + r / q.kw, ix = ix0 + r % q.kw;
    return iy >= 0 && iy < q.h && ix >= 0 && ix < q.w ? base[ci * q.hw + iy * q.w + ix] : 0.f;
  }
};

// Backward-data A: row = ci (input channel in the group), k = (co, ki, kj).
struct BwdDataWeight {
  const float* base;  // w + ((g * og + co0) * cg + ci) * khw
  Geom q;
  __device__ BwdDataWeight(const Geom& geo, const float* w, int ci, bool valid)
      : base(w + (valid ? (int64_t(geo.co_base()) * geo.cg + ci) * geo.khw : 0)), q(geo) {}
  __device__ __forceinline__ float at(int k) const {
    const int co = k / q.khw, r = k % q.khw;
    return base[int64_t(co) * q.cg * q.khw + r];
  }
};

// Backward-data B: row j = (b, iy, ix) input pixel, k = (co, ki, kj): dy at the output pixel
// whose tap (ki, kj) reads (iy, ix), 0 when no output pixel does (stride, borders).
struct BwdDataGrad {
  const float* base;  // dy + (b * out_c + g * og + co0) * ohw
  int ty0, tx0;       // iy + ph, ix + pw
  Geom q;
  __device__ BwdDataGrad(const Geom& geo, const float* dy, int j, bool valid) : base(dy), ty0(0), tx0(0), q(geo) {
    if (!valid) return;
    const int b = j / geo.hw, pix = j % geo.hw;
    ty0 = pix / geo.w + geo.ph;
    tx0 = pix % geo.w + geo.pw;
    base = dy + (int64_t(b) * geo.out_c + geo.co_base()) * geo.ohw;
  }
  __device__ __forceinline__ float at(int k) const {
    const int co = k / q.khw, r = k % q.khw;
    const int ty = ty0 - r / q.kw, tx = tx0 - r % q.kw;
    if (ty < 0 || tx < 0 || ty % q.sh != 0 || tx % q.sw != 0) return 0.f;
    const int oy = ty / q.sh, ox = tx / q.sw;
    return oy < q.out_h && ox < q.out_w ? base[co * q.ohw + oy * q.out_w + ox] : 0.f;
  }
};

// Backward-filter A: row = co (output channel in the group), k = (b, pix).
struct BwdFilterGrad {
  const float* base;  // dy + (g * og + co0 + co) * ohw
  Geom q;
  __device__ BwdFilterGrad(const Geom& geo, const float* dy, int co, bool valid)
      : base(dy + (valid ? (int64_t(geo.co_base()) + co) * geo.ohw : 0)), q(geo) {}
  __device__ __forceinline__ float at(int k) const {
    const int b = k / q.ohw, pix = k % q.ohw;
    return base[int64_t(b) * q.out_c * q.ohw + pix];
  }
};

// Backward-filter B: row j = (ci, ki, kj) weight tap, k = (b, oy, ox).
struct BwdFilterInput {
  const float* base;  // x + (g * cg + ci) * hw
  int ki_off, kj_off;  // ki - ph, kj - pw
  Geom q;
  __device__ BwdFilterInput(const Geom& geo, const float* x, int j, bool valid)
      : base(x), ki_off(0), kj_off(0), q(geo) {
    if (!valid) return;
    const int ci = j / geo.khw, r = j % geo.khw;
    ki_off = r / geo.kw - geo.ph;
    kj_off = r % geo.kw - geo.pw;
    base = x + (int64_t(geo.g) * geo.cg + ci) * geo.hw;
  }
  __device__ __forceinline__ float at(int k) const {
    const int b = k / q.ohw, pix = k % q.ohw;
    const int iy = (pix / q.out_w) * q.sh + ki_off, ix = (pix % q.out_w) * q.sw + kj_off;
    return iy >= 0 && iy < q.h && ix >= 0 && ix < q.w ? base[int64_t(b) * q.c * q.hw + iy * q.w + ix] : 0.f;
  }
};

// y = act(W x + bias) for group blockIdx.z. VA: w rows are float4-loadable (cg * khw % 4 == 0, aligned).
template <int BM, int BN, bool VA>
__global__ void __launch_bounds__(kThreads, 2)
    conv_fwd_kernel(ConvParams p, int oc_begin, int oc_end, const float* __restrict__ x, const float* __restrict__ w,
                    const float* __restrict__ bias, Activation act, float* __restrict__ y) {
  __shared__ __align__(16) float as[2][kBk][BM + kPad];
  __shared__ __align__(16) float bs[2][kBk][BN + kPad];
  const Geom q = make_geom(p, blockIdx.z, oc_begin, oc_end);
  const int m = q.og, n = q.n * q.ohw, k = q.cg * q.khw;
  const int i0 = blockIdx.y * BM, j0 = blockIdx.x * BN;
  const int jr = j0 + int(threadIdx.x) % BN;
  tile::DenseLoader<BM, true, VA> la(w + int64_t(q.co_base()) * k, k, i0, m, k);
  GatherLoader<BN, FwdInput> lb(FwdInput(q, x, jr, jr < n), jr < n, k);
  Acc<BM, BN> acc;
  tile::mainloop<BM, BN>(la, lb, 0, k, acc, &as[0][0][0], &bs[0][0][0]);
  tile::for_each_output(acc, i0, j0, m, n, [&](int i, int j, float v) {
    const int co = q.co_base() + i, b = j / q.ohw, pix = j % q.ohw;
    y[(int64_t(b) * q.out_c + co) * q.ohw + pix] = act(v + (bias != nullptr ? bias[co] : 0.f));
  });
}

// dx = beta * dx + W^T dy (scattered back through the windows), group blockIdx.z.
template <int BM, int BN>
__global__ void __launch_bounds__(kThreads, 2)
    conv_bwd_data_kernel(ConvParams p, int oc_begin, int oc_end, const float* __restrict__ w,
                         const float* __restrict__ dy, float beta, float* __restrict__ dx) {
  __shared__ __align__(16) float as[2][kBk][BM + kPad];
  __shared__ __align__(16) float bs[2][kBk][BN + kPad];
  const Geom q = make_geom(p, blockIdx.z, oc_begin, oc_end);
  const int m = q.cg, n = q.n * q.hw, k = q.og * q.khw;
  const int i0 = blockIdx.y * BM, j0 = blockIdx.x * BN;
  const int ir = i0 + int(threadIdx.x) % BM, jr = j0 + int(threadIdx.x) % BN;
  GatherLoader<BM, BwdDataWeight> la(BwdDataWeight(q, w, ir, ir < m), ir < m, k);
  GatherLoader<BN, BwdDataGrad> lb(BwdDataGrad(q, dy, jr, jr < n), jr < n, k);
  Acc<BM, BN> acc;
  tile::mainloop<BM, BN>(la, lb, 0, k, acc, &as[0][0][0], &bs[0][0][0]);
  tile::for_each_output(acc, i0, j0, m, n, [&](int i, int j, float v) {
    const int b = j / q.hw, pix = j % q.hw;
    float* o = dx + (int64_t(b) * q.c + q.g * q.cg + i) * q.hw + pix;
    *o = beta == 0.f ? v : fmaf(beta, *o, v);
  });
}

// Filter gradient of group blockIdx.z / splits over k in split blockIdx.z % splits. splits == 1:
// dw += the tile directly. Otherwise the tile goes to partial[(g * splits + s)] (og x cg*khw,
// dense), to be summed in order into dw by tile::splitk_reduce_kernel.
template <int BM, int BN>
__global__ void __launch_bounds__(kThreads, 2)
    conv_bwd_filter_kernel(ConvParams p, int oc_begin, int oc_end, const float* __restrict__ x,
                           const float* __restrict__ dy, int splits, int k_per_split, float* __restrict__ dw,
                           float* __restrict__ partial) {
  __shared__ __align__(16) float as[2][kBk][BM + kPad];
  __shared__ __align__(16) float bs[2][kBk][BN + kPad];
  const int g = blockIdx.z / splits, s = blockIdx.z % splits;
  const Geom q = make_geom(p, g, oc_begin, oc_end);
  const int m = q.og, n = q.cg * q.khw, k = q.n * q.ohw;
  const int k_begin = s * k_per_split, k_end = min(k, k_begin + k_per_split);
  const int i0 = blockIdx.y * BM, j0 = blockIdx.x * BN;
  const int ir = i0 + int(threadIdx.x) % BM, jr = j0 + int(threadIdx.x) % BN;
  GatherLoader<BM, BwdFilterGrad> la(BwdFilterGrad(q, dy, ir, ir < m), ir < m, k_end);
  GatherLoader<BN, BwdFilterInput> lb(BwdFilterInput(q, x, jr, jr < n), jr < n, k_end);
  Acc<BM, BN> acc;
  tile::mainloop<BM, BN>(la, lb, k_begin, k_end, acc, &as[0][0][0], &bs[0][0][0]);
  float* out = splits == 1 ? dw + int64_t(q.co_base()) * n : partial + (int64_t(g) * splits + s) * m * n;
  tile::for_each_output(acc, i0, j0, m, n, [&](int i, int j, float v) {
    float* o = out + int64_t(i) * n + j;
    *o = splits == 1 ? *o + v : v;
  });
}

}  // namespace igemm
}  // namespace dropnet
