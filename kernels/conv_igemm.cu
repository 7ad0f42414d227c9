// Host side of the implicit-GEMM convolution (kernels/conv_igemm.cuh): tile size, grid and
// split-K choices, one launch per direction (groups on grid.z).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>

#include "core/cuda_check.h"
#include "kernels/conv.h"
#include "kernels/conv_igemm.cuh"
#include "kernels/eltwise.h"

namespace dropnet {

namespace {

using tile::kBk;
using tile::kThreads;

void check_sizes(const ConvParams& p) {
  const int64_t biggest = std::max({p.n * p.c * p.h * p.w, p.n * p.out_c * p.out_h * p.out_w,
                                    p.out_c * (p.c / p.group) * p.kh * p.kw});
  DN_CHECK(biggest < INT_MAX && p.group <= 65535,
           "implicit-GEMM conv: a tensor of {} elements (or {} groups) exceeds its 32-bit indexing; use engine "
           "cudnn or algo im2col",
           biggest, p.group);
}

// 128 x 128 tiles when M is large enough and they still fill every SM, else 64 x 64.
bool big_tiles(int64_t m, int64_t n, int64_t groups) {
  return m >= 128 && ((m + 127) / 128) * ((n + 127) / 128) * groups >= current_sm_count();
}

dim3 grid_of(int64_t m, int64_t n, int tile, int64_t z) {
  return dim3(static_cast<unsigned>((n + tile - 1) / tile), static_cast<unsigned>((m + tile - 1) / tile),
              static_cast<unsigned>(z));
}

}  // namespace

void conv_forward_igemm_cuda(const ConvParams& p, const float* x, const float* w, const float* bias, float* y,
                             Stream stream) {
  check_sizes(p);
  const int64_t m = p.out_c / p.group, n = p.n * p.out_h * p.out_w, k = (p.c / p.group) * p.kh * p.kw;
  const bool va = k % 4 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
  if (big_tiles(m, n, p.group)) {
    if (va) igemm::conv_fwd_kernel<128, 128, true><<<grid_of(m, n, 128, p.group), kThreads, 0, stream>>>(p, x, w, bias, y);
    else igemm::conv_fwd_kernel<128, 128, false><<<grid_of(m, n, 128, p.group), kThreads, 0, stream>>>(p, x, w, bias, y);
  } else {
    if (va) igemm::conv_fwd_kernel<64, 64, true><<<grid_of(m, n, 64, p.group), kThreads, 0, stream>>>(p, x, w, bias, y);
    else igemm::conv_fwd_kernel<64, 64, false><<<grid_of(m, n, 64, p.group), kThreads, 0, stream>>>(p, x, w, bias, y);
  }
  DN_CUDA_LAUNCH_CHECK();
}

void conv_backward_igemm_cuda(const ConvParams& p, const float* x, const float* w, const float* dy, float* dw,
                              float* db, float beta, float* dx, Stream stream) {
  check_sizes(p);
  const int64_t ohw = p.out_h * p.out_w, cg = p.c / p.group, og = p.out_c / p.group, kg = cg * p.kh * p.kw;
  if (db != nullptr) bias_backward_cuda(p.n, p.out_c, ohw, dy, db, stream);

  // Filter gradient: M = og, N = kg, K = n * ohw (long). Split K until the grid covers ~2 waves,
  // each split keeping at least 256 k; partial tiles are summed in order (deterministic).
  {
    const int64_t m = og, n = kg, k = p.n * ohw;
    const bool big = big_tiles(m, n, p.group);
    const int t = big ? 128 : 64;
    const int64_t tiles = ((m + t - 1) / t) * ((n + t - 1) / t) * p.group;
    const int sms = current_sm_count();
    int splits = 1;
    if (tiles < 2 * sms && k >= 512)
      splits = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({(2 * sms + tiles - 1) / tiles, k / 256, 64})));
    const int kps = static_cast<int>(((k + splits - 1) / splits + kBk - 1) / kBk * kBk);
    splits = static_cast<int>((k + kps - 1) / kps);
    DN_CHECK(int64_t(splits) * p.group <= 65535, "implicit-GEMM conv: {} groups x {} splits exceed the grid",
             p.group, splits);
    float* partial = nullptr;
    if (splits > 1) partial = static_cast<float*>(stream_scratch_alloc(sizeof(float) * p.group * splits * m * n, stream));
    const dim3 grid = grid_of(m, n, t, int64_t(p.group) * splits);
    if (big) igemm::conv_bwd_filter_kernel<128, 128><<<grid, kThreads, 0, stream>>>(p, x, dy, splits, kps, dw, partial);
    else igemm::conv_bwd_filter_kernel<64, 64><<<grid, kThreads, 0, stream>>>(p, x, dy, splits, kps, dw, partial);
    DN_CUDA_LAUNCH_CHECK();
    if (splits > 1) {
      for (int g = 0; g < p.group; ++g) {
        tile::splitk_reduce_kernel<<<grid_for(m * n), 256, 0, stream>>>(m, n, splits, partial + g * splits * m * n,
                                                                         1.f, 1.f, dw + g * m * n, n);
        DN_CUDA_LAUNCH_CHECK();
      }
      stream_scratch_free(partial, stream);
    }
  }

  if (dx != nullptr) {  // M = cg, N = n * h * w, K = og * kh * kw
    const int64_t m = cg, n = p.n * p.h * p.w;
    if (big_tiles(m, n, p.group))
      igemm::conv_bwd_data_kernel<128, 128><<<grid_of(m, n, 128, p.group), kThreads, 0, stream>>>(p, w, dy, beta, dx);
    else
      igemm::conv_bwd_data_kernel<64, 64><<<grid_of(m, n, 64, p.group), kThreads, 0, stream>>>(p, w, dy, beta, dx);
    DN_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace dropnet
