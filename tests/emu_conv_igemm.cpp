// The implicit-GEMM convolution kernels (kernels/conv_igemm.cuh) run on the CPU through the
// emulation shim, against the CPU convolution (conv_forward_cpu / conv_backward_cpu): forward with
// bias and each fused activation (none, ReLU, leaky ReLU), backward-data with beta, backward-filter accumulating into dw, with and without split K,
// over odd sizes, stride, pad, groups, batch 1 and both tile sizes, and with the launch plans
// conv_igemm.cu computes (tile_plan::plan_conv) for a given SM count.
#include "testing/cuda_emu.h"
// (the shim must come before device code)
#include "kernels/conv_igemm.cuh"

#include <gtest/gtest.h>

#include <type_traits>
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

dim3 dims(const tile_plan::Grid& g) { return dim3(g.x, g.y, g.z); }

// Every direction's kernel with its grid's tile (64 or 128).
template <class F>
void launch_tiled(const tile_plan::Grid& g, F&& body) {
  cuda_emu::launch(dims(g), dim3(tile::kThreads), [&] {
    if (g.tile == 128) body(std::integral_constant<int, 128>{});
    else body(std::integral_constant<int, 64>{});
  });
}

// A plan with the tile and split count forced (to cover both tiles and split K on every shape).
tile_plan::ConvPlan forced_plan(const ConvParams& p, int tile, int splits) {
  tile_plan::ConvPlan pl = tile_plan::plan_conv(p, 1);
  for (tile_plan::Grid* g : {&pl.fwd, &pl.bwd_data, &pl.bwd_filter})
    *g = tile_plan::tiled_grid(g->m, g->n, g->k, g->z, tile);
  const int64_t k = pl.bwd_filter.k;
  pl.k_per_split = tile_plan::k_per_split(k, splits);
  pl.splits = tile_plan::splits_covering(k, pl.k_per_split);
  pl.bwd_filter.z = static_cast<unsigned>(p.group * pl.splits);
  return pl;
}

// The three directions as conv_igemm.cu launches them under plan `pl`, against the CPU path.
void check(const ConvParams& p, const tile_plan::ConvPlan& pl) {
  SCOPED_TRACE(::testing::Message() << "n=" << p.n << " c=" << p.c << " " << p.h << "x" << p.w << " out_c=" << p.out_c
                                    << " k=" << p.kh << "x" << p.kw << " s=" << p.sh << " pad=" << p.ph
                                    << " group=" << p.group << " tiles " << pl.fwd.tile << "/" << pl.bwd_data.tile
                                    << "/" << pl.bwd_filter.tile << " splits=" << pl.splits);
  const int64_t og = p.out_c / p.group, kg = (p.c / p.group) * p.kh * p.kw, ohw = p.out_h * p.out_w;
  const auto x = random_vector(p.n * p.c * p.h * p.w, 11);
  const auto w = random_vector(p.out_c * kg, 12);
  const auto bias = random_vector(p.out_c, 13);
  const auto dy = random_vector(p.n * p.out_c * ohw, 14);
  const auto dx0 = random_vector(p.n * p.c * p.h * p.w, 15);
  const auto dw0 = random_vector(p.out_c * kg, 16);

  // CPU reference (the tested CPU path).
  ConvScratch scratch;
  std::vector<float> y_ref(p.n * p.out_c * ohw), dx_ref = dx0, dw_ref = dw0, db(p.out_c, 0.f);
  conv_backward_cpu(p, x.data(), w.data(), dy.data(), dw_ref.data(), db.data(), 0.5f, dx_ref.data(), scratch);

  for (const Activation act : {Activation{}, Activation{true, 0.f}, Activation{true, 0.1f}}) {
    conv_forward_cpu(p, x.data(), w.data(), bias.data(), y_ref.data(), scratch, act);
    for (bool vec : {false, true}) {
      if (vec && kg % 4 != 0) continue;  // the float4 weight loads need rows of a multiple of 4
      std::vector<float> y(y_ref.size(), -7.f);
      launch_tiled(pl.fwd, [&](auto t) {
        if (vec) igemm::conv_fwd_kernel<t(), t(), true>(p, 0, -1, x.data(), w.data(), bias.data(), act, y.data());
        else igemm::conv_fwd_kernel<t(), t(), false>(p, 0, -1, x.data(), w.data(), bias.data(), act, y.data());
      });
      EXPECT_TRUE(all_close(y_ref, y, 1e-4f, 1e-4f))
          << "forward" << (vec ? ", vector loads" : "") << (act.relu ? ", relu slope " : "")
          << (act.relu ? std::to_string(act.slope) : "");
    }
  }

  std::vector<float> dx = dx0, dw = dw0;
  launch_tiled(pl.bwd_data,
               [&](auto t) { igemm::conv_bwd_data_kernel<t(), t()>(p, 0, -1, w.data(), dy.data(), 0.5f, dx.data()); });
  EXPECT_TRUE(all_close(dx_ref, dx, 1e-4f, 1e-4f)) << "backward data";

  std::vector<float> partial(pl.splits > 1 ? p.group * pl.splits * og * kg : 0, -1e30f);
  launch_tiled(pl.bwd_filter, [&](auto t) {
    igemm::conv_bwd_filter_kernel<t(), t()>(p, 0, -1, x.data(), dy.data(), pl.splits, pl.k_per_split, dw.data(),
                                            partial.data());
  });
  if (pl.splits > 1)
    for (int g = 0; g < p.group; ++g)
      cuda_emu::launch(dim3(2), dim3(64), [&] {
        tile::splitk_reduce_kernel(og, kg, pl.splits, partial.data() + g * pl.splits * og * kg, 1.f, 1.f,
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
    {1, 2, 2, 2, 3, 3, 3, 1, 1, 1},      // 'same' 3x3 on a 2x2 plane (the CPU's shifted-plane path)
    {1, 2, 1, 1, 3, 5, 5, 1, 2, 1},      // 'same' 5x5 on a 1x1 plane: padding wider than the plane
};

TEST(EmuConvIgemm, Tile64) {
  for (const Geo& g : kShapes) check(params_of(g), forced_plan(params_of(g), 64, 1));
}

TEST(EmuConvIgemm, Tile128) {
  for (const Geo& g : kShapes) check(params_of(g), forced_plan(params_of(g), 128, 1));
}

TEST(EmuConvIgemm, FilterGradientSplitK) {
  for (const Geo& g : kShapes) check(params_of(g), forced_plan(params_of(g), 64, 3));
  const Geo long_k = {4, 2, 16, 16, 3, 3, 3, 1, 1, 1};
  check(params_of(long_k), forced_plan(params_of(long_k), 64, 7));
}

// What conv_igemm.cu launches (tile_plan::plan_conv) on an H100 (132 SMs) and on a small GPU (4 SMs,
// where big M takes 128-tiles and the filter gradient fewer splits); the plans must pick both.
TEST(EmuConvIgemm, LaunchPlansAsOnAGpu) {
  std::vector<Geo> shapes = kShapes;
  shapes.push_back({2, 16, 9, 9, 160, 3, 3, 1, 1, 1});  // M = 160: 128-tiles once they fill the SMs
  shapes.push_back({2, 4, 20, 20, 8, 3, 3, 1, 1, 1});   // K = n * ohw = 800: the filter gradient splits
  int tiles128 = 0, split = 0;
  for (int sms : {132, 4})
    for (const Geo& g : shapes) {
      const tile_plan::ConvPlan pl = tile_plan::plan_conv(params_of(g), sms);
      tiles128 += pl.fwd.tile == 128;
      split += pl.splits > 1;
      check(params_of(g), pl);
    }
  EXPECT_GT(tiles128, 0) << "no plan chose 128-tiles";
  EXPECT_GT(split, 0) << "no plan split the filter gradient";
}

}  // namespace
}  // namespace dropnet
