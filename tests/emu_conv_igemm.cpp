// The implicit-GEMM convolution kernels (kernels/conv_igemm.cuh) run on the CPU through the
// emulation shim, against the CPU convolution (conv_forward_cpu / conv_backward_cpu): forward with
// bias, backward-data with beta, backward-filter accumulating into dw, with and without split K,
// over odd sizes, stride, pad, groups, batch 1 and both tile sizes. The launch geometry mirrors
// conv_igemm.cu's.
#include "testing/cuda_emu.h"
// (the shim must come before device code)
#include "kernels/conv_igemm.cuh"

#include <gtest/gtest.h>

#include <vector>

#include "kernels/conv.h"
#include "testing/harness.h"

namespace dropnet {
namespace {

using testing::all_close;
using testing::random_vector;

struct Geo {
  int n, c, h, w, out_c, kh, kw, s, pad, group;
};

ConvParams params_of(const Geo& g) {
  return ConvParams{g.n,   g.c,  g.h,   g.w,   g.out_c, conv_out_size(g.h, g.kh, g.s, g.pad),
                    conv_out_size(g.w, g.kw, g.s, g.pad), g.kh, g.kw, g.s, g.s, g.pad, g.pad, g.group};
}

dim3 grid_of(int64_t m, int64_t n, int tile, int64_t z) {
  return dim3(static_cast<unsigned>((n + tile - 1) / tile), static_cast<unsigned>((m + tile - 1) / tile),
              static_cast<unsigned>(z));
}

template <int T>
void check(const Geo& geo, int splits) {
  const ConvParams p = params_of(geo);
  SCOPED_TRACE(::testing::Message() << "tile " << T << " n=" << p.n << " c=" << p.c << " " << p.h << "x" << p.w
                                    << " out_c=" << p.out_c << " k=" << p.kh << "x" << p.kw << " s=" << p.sh
                                    << " pad=" << p.ph << " group=" << p.group << " splits=" << splits);
  const int64_t cg = p.c / p.group, og = p.out_c / p.group, kg = cg * p.kh * p.kw, ohw = p.out_h * p.out_w;
  const auto x = random_vector(p.n * p.c * p.h * p.w, 11);
  const auto w = random_vector(p.out_c * kg, 12);
  const auto bias = random_vector(p.out_c, 13);
  const auto dy = random_vector(p.n * p.out_c * ohw, 14);
  const auto dx0 = random_vector(p.n * p.c * p.h * p.w, 15);
  const auto dw0 = random_vector(p.out_c * kg, 16);

  // CPU reference (the tested CPU path).
  ConvScratch scratch;
  std::vector<float> y_ref(p.n * p.out_c * ohw), dx_ref = dx0, dw_ref = dw0, db(p.out_c, 0.f);
  conv_forward_cpu(p, x.data(), w.data(), bias.data(), y_ref.data(), scratch);
  conv_backward_cpu(p, x.data(), w.data(), dy.data(), dw_ref.data(), db.data(), 0.5f, dx_ref.data(), scratch);

  std::vector<float> y(y_ref.size(), -7.f), dx = dx0, dw = dw0;
  cuda_emu::launch(grid_of(og, p.n * ohw, T, p.group), dim3(tile::kThreads), [&] {
    igemm::conv_fwd_kernel<T, T, false>(p, x.data(), w.data(), bias.data(), y.data());
  });
  EXPECT_TRUE(all_close(y_ref, y, 1e-4f, 1e-4f)) << "forward";
  if (kg % 4 == 0) {  // the float4 weight loads
    std::vector<float> yv(y_ref.size(), -7.f);
    cuda_emu::launch(grid_of(og, p.n * ohw, T, p.group), dim3(tile::kThreads), [&] {
      igemm::conv_fwd_kernel<T, T, true>(p, x.data(), w.data(), bias.data(), yv.data());
    });
    EXPECT_TRUE(all_close(y_ref, yv, 1e-4f, 1e-4f)) << "forward, vector loads";
  }

  cuda_emu::launch(grid_of(cg, p.n * p.h * p.w, T, p.group), dim3(tile::kThreads), [&] {
    igemm::conv_bwd_data_kernel<T, T>(p, w.data(), dy.data(), 0.5f, dx.data());
  });
  EXPECT_TRUE(all_close(dx_ref, dx, 1e-4f, 1e-4f)) << "backward data";

  const int64_t k = p.n * ohw;
  const int kps = static_cast<int>(((k + splits - 1) / splits + tile::kBk - 1) / tile::kBk * tile::kBk);
  splits = static_cast<int>((k + kps - 1) / kps);
  std::vector<float> partial(splits > 1 ? p.group * splits * og * kg : 0, -1e30f);
  cuda_emu::launch(grid_of(og, kg, T, p.group * splits), dim3(tile::kThreads), [&] {
    igemm::conv_bwd_filter_kernel<T, T>(p, x.data(), dy.data(), splits, kps, dw.data(), partial.data());
  });
  if (splits > 1)
    for (int g = 0; g < p.group; ++g)
      cuda_emu::launch(dim3(2), dim3(64), [&] {
        tile::splitk_reduce_kernel(og, kg, splits, partial.data() + g * splits * og * kg, 1.f, 1.f,
                                   dw.data() + g * og * kg, kg);
      });
  EXPECT_TRUE(all_close(dw_ref, dw, 1e-4f, 1e-4f)) << "backward filter";
}

const std::vector<Geo> kShapes = {
    // n, c, h, w, out_c, kh, kw, stride, pad, group
    {1, 1, 5, 5, 1, 3, 3, 1, 0, 1},      // batch 1, single channel
    {2, 3, 9, 7, 5, 3, 3, 1, 1, 1},      // odd sizes, pad
    {3, 4, 11, 10, 6, 5, 5, 2, 2, 2},    // stride 2, groups
    {2, 3, 19, 17, 8, 11, 11, 4, 0, 1},  // AlexNet conv1-like (stride 4, 11x11)
    {2, 20, 12, 12, 20, 3, 3, 1, 1, 1},  // LeNet(2N) added conv
    {1, 8, 6, 6, 70, 1, 1, 1, 0, 1},     // 1x1, M > 64
    {2, 6, 7, 7, 4, 3, 2, 3, 1, 2},      // non-square kernel, stride 3 (taps no output reads)
};

TEST(EmuConvIgemm, Tile64) {
  for (const Geo& g : kShapes) check<64>(g, 1);
}

TEST(EmuConvIgemm, Tile128) {
  for (const Geo& g : kShapes) check<128>(g, 1);
}

TEST(EmuConvIgemm, FilterGradientSplitK) {
  for (const Geo& g : kShapes) check<64>(g, 3);
  check<64>({4, 2, 16, 16, 3, 3, 3, 1, 1, 1}, 7);
}

}  // namespace
}  // namespace dropnet
