// Host side of the implicit-GEMM convolution (kernels/conv_igemm.cuh): tile size, grid and
// split-K choices, one launch per direction (groups on grid.z).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>

#include "core/cuda_check.h"
#include "core/launch.cuh"
#include "kernels/conv.h"
#include "kernels/conv_mma.h"
#include "kernels/conv_igemm.cuh"
#include "kernels/tile_plan.h"
#include "kernels/eltwise.h"

namespace dropnet {

namespace {

using tile::kThreads;

void check_sizes(const ConvParams& p) {
  const int64_t per_image = std::max(p.c * p.h * p.w, p.out_c * p.out_h * p.out_w);
  const int64_t biggest = std::max(p.n * per_image, p.out_c * (p.c / p.group) * p.kh * p.kw);
  if (biggest >= INT_MAX)
    input_error("conv (implicit GEMM, x ({}, {}, {}, {}), {} outputs): a tensor of {} elements exceeds its 32-bit "
                "indexing. Set `algo: im2col` on this layer (it works through the batch in chunks with 64-bit "
                "indexing; engine native or cublas), or lower batch_size to at most {}",
                p.n, p.c, p.h, p.w, p.out_c, biggest, std::max<int64_t>(1, (INT_MAX - 1) / per_image));
  DN_CHECK(p.group <= 65535, "implicit-GEMM conv: {} groups exceed the grid", p.group);
}

dim3 dims(const tile_plan::Grid& g) { return dim3(g.x, g.y, g.z); }

// The geometry the tiles are planned for: the computed output channels only.
ConvParams planned(const ConvParams& p, ConvOutRange oc) {
  ConvParams q = p;
  q.out_c = oc.end - oc.begin;
  return q;
}

}  // namespace

void conv_forward_igemm_cuda(const ConvParams& p, const float* x, const float* w, const float* bias, float* y,
                             Stream stream, Activation act, ConvOutRange oc) {
  if (p.prec != Precision::FP32) {  // tf32 / bf16: the tensor-core kernels (kernels/conv_mma.h)
    conv_forward_mma_cuda(p.prec, p, x, w, bias, y, stream, act, oc);
    return;
  }
  check_sizes(p);
  oc = conv_out_range(p, oc);
  const int b = static_cast<int>(oc.begin), e = static_cast<int>(oc.end);
  const tile_plan::Grid g = tile_plan::plan_conv(planned(p, oc), current_sm_count()).fwd;
  // float4 rows of w: K a multiple of 4 and the first computed row 16-byte aligned.
  const bool va = g.k % 4 == 0 && reinterpret_cast<uintptr_t>(w + oc.begin * g.k) % 16 == 0;
  if (g.tile == 128) {
    if (va) DN_LAUNCH(igemm::conv_fwd_kernel<128, 128, true>, dims(g), kThreads, 0, stream, p, b, e, x, w, bias, act, y);
    else DN_LAUNCH(igemm::conv_fwd_kernel<128, 128, false>, dims(g), kThreads, 0, stream, p, b, e, x, w, bias, act, y);
  } else {
    if (va) DN_LAUNCH(igemm::conv_fwd_kernel<64, 64, true>, dims(g), kThreads, 0, stream, p, b, e, x, w, bias, act, y);
    else DN_LAUNCH(igemm::conv_fwd_kernel<64, 64, false>, dims(g), kThreads, 0, stream, p, b, e, x, w, bias, act, y);
  }
}

void conv_backward_igemm_cuda(const ConvParams& p, const float* x, const float* w, const float* dy, float* dw,
                              float* db, float beta, float* dx, Stream stream, ConvOutRange oc) {
  if (p.prec != Precision::FP32) {
    conv_backward_mma_cuda(p.prec, p, x, w, dy, dw, db, beta, dx, stream, oc);
    return;
  }
  check_sizes(p);
  oc = conv_out_range(p, oc);
  const int b = static_cast<int>(oc.begin), e = static_cast<int>(oc.end);
  tile_plan::ConvPlan pl = tile_plan::plan_conv(planned(p, oc), current_sm_count());
  if (oc.end - oc.begin < p.out_c) {
    // The filter gradient's K splits as for the whole convolution: each partial sums the same
    // K range, so a computed row is the whole computation's, bit for bit.
    const tile_plan::ConvPlan whole = tile_plan::plan_conv(p, current_sm_count());
    pl.splits = whole.splits;
    pl.k_per_split = whole.k_per_split;
    pl.bwd_filter.z = static_cast<unsigned>(int64_t(p.group) * pl.splits);
  }
  if (db != nullptr) bias_backward_cuda(p.n, p.out_c, p.out_h * p.out_w, dy, db, stream);

  const tile_plan::Grid& gf = pl.bwd_filter;
  DN_CHECK(gf.z <= 65535, "implicit-GEMM conv: {} groups x {} splits exceed the grid", p.group, pl.splits);
  const int64_t mn = gf.m * gf.n;
  float* partial = nullptr;
  if (pl.splits > 1) partial = static_cast<float*>(stream_scratch_alloc(sizeof(float) * gf.z * mn, stream));
  if (gf.tile == 128)
    DN_LAUNCH(igemm::conv_bwd_filter_kernel<128, 128>, dims(gf), kThreads, 0, stream, p, b, e, x, dy, pl.splits,
              pl.k_per_split, dw, partial);
  else
    DN_LAUNCH(igemm::conv_bwd_filter_kernel<64, 64>, dims(gf), kThreads, 0, stream, p, b, e, x, dy, pl.splits,
              pl.k_per_split, dw, partial);
  if (pl.splits > 1) {
    for (int g = 0; g < p.group; ++g) {
      DN_LAUNCH(tile::splitk_reduce_kernel, grid_for(mn), 256, 0, stream, gf.m, gf.n, pl.splits,
                partial + g * pl.splits * mn, 1.f, 1.f, dw + g * mn + oc.begin * gf.n, gf.n);
    }
    stream_scratch_free(partial, stream);
  }

  if (dx != nullptr) {
    const tile_plan::Grid& gd = pl.bwd_data;
    if (gd.tile == 128)
      DN_LAUNCH(igemm::conv_bwd_data_kernel<128, 128>, dims(gd), kThreads, 0, stream, p, b, e, w, dy, beta, dx);
    else
      DN_LAUNCH(igemm::conv_bwd_data_kernel<64, 64>, dims(gd), kThreads, 0, stream, p, b, e, w, dy, beta, dx);
  }
}

}  // namespace dropnet
