// The CUDA SGEMM kernel bodies (kernels/gemm_tile.cuh) run on the CPU through the emulation
// shim: every transpose / vector-load instantiation, both tile sizes, edges that are not
// multiples of the tile, unaligned leading dimensions, beta != 0, split-K partials and their
// reduction, against a double-precision reference. What this cannot show (speed, inter-block
// races) is left to the `cuda` tests.
#include "testing/cuda_emu.h"
// (the shim must come before device code)
#include "kernels/gemm_tile.cuh"
#include "kernels/tile_plan.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "testing/gemm_cases.h"
#include "testing/harness.h"

namespace dropnet {
namespace {

using testing::all_close;
using testing::random_vector;
using testing::sgemm_reference;

struct Case {
  int m, n, k;
  bool ta, tb;
  int pad;  // extra leading-dimension elements (pad % 4 != 0 breaks float4 alignment)
  float beta;
  int splits;
};

// Stored A is (m, k) or (k, m) when ta; B is (k, n) or (n, k) when tb; row strides + pad.
template <int BM, int BN, bool TA, bool TB, bool VA, bool VB>
std::vector<float> run_emulated(const Case& cs, const std::vector<float>& a, int64_t lda, const std::vector<float>& b,
                                int64_t ldb, std::vector<float> c, int64_t ldc) {
  const int kps = tile_plan::k_per_split(cs.k, cs.splits);
  const dim3 grid((cs.n + BN - 1) / BN, (cs.m + BM - 1) / BM, tile_plan::splits_covering(cs.k, kps));
  const float alpha = 0.75f;
  if (grid.z == 1) {
    cuda_emu::launch(grid, dim3(tile::kThreads), [&] {
      tile::sgemm_tiled_kernel<BM, BN, TA, TB, VA, VB>(cs.m, cs.n, cs.k, kps, alpha, a.data(), lda, b.data(), ldb,
                                                        cs.beta, c.data(), ldc, 0, ldc % 4 == 0);
    });
    return c;
  }
  // Split K: dense partial tiles, then the ordered reduction (as sgemm_cuda does).
  const int64_t mn = int64_t(cs.m) * cs.n;
  std::vector<float> partial(grid.z * mn, -1e30f);
  cuda_emu::launch(grid, dim3(tile::kThreads), [&] {
    tile::sgemm_tiled_kernel<BM, BN, TA, TB, VA, VB>(cs.m, cs.n, cs.k, kps, 1.f, a.data(), lda, b.data(), ldb, 0.f,
                                                      partial.data(), cs.n, mn, cs.n % 4 == 0);
  });
  cuda_emu::launch(dim3(3), dim3(64), [&] {
    tile::splitk_reduce_kernel(cs.m, cs.n, static_cast<int>(grid.z), partial.data(), alpha, cs.beta, c.data(), ldc);
  });
  return c;
}

template <int BM, int BN, bool TA, bool TB, bool VA, bool VB>
void check(const Case& cs) {
  SCOPED_TRACE(::testing::Message() << "BM=" << BM << " BN=" << BN << " m=" << cs.m << " n=" << cs.n
                                    << " k=" << cs.k << " ta=" << cs.ta << " tb=" << cs.tb << " pad=" << cs.pad
                                    << " beta=" << cs.beta << " splits=" << cs.splits);
  const int64_t lda = (TA ? cs.m : cs.k) + cs.pad, ldb = (TB ? cs.k : cs.n) + cs.pad, ldc = cs.n + cs.pad;
  const auto a = random_vector((TA ? cs.k : cs.m) * lda, 1);
  const auto b = random_vector((TB ? cs.n : cs.k) * ldb, 2);
  const auto c0 = random_vector(int64_t(cs.m) * ldc, 3);
  std::vector<float> ref = c0;
  sgemm_reference(TA, TB, cs.m, cs.n, cs.k, 0.75f, a.data(), lda, b.data(), ldb, cs.beta, ref.data(), ldc);
  const auto got = run_emulated<BM, BN, TA, TB, VA, VB>(cs, a, lda, b, ldb, c0, ldc);
  EXPECT_TRUE(all_close(ref, got, 1e-5f, 1e-4f));  // also: padding columns of C untouched
}

// Scalar loads: odd sizes, unaligned leading dimensions, edges, beta, split K.
template <int BM, int BN, bool TA, bool TB>
void sweep() {
  const std::vector<Case> cases = {
      {1, 1, 1, TA, TB, 0, 0.f, 1},           {37, 53, 29, TA, TB, 1, 0.f, 1},      {64, 64, 16, TA, TB, 0, 0.5f, 1},
      {BM + 3, BN + 5, 19, TA, TB, 0, 1.f, 1}, {70, 130, 100, TA, TB, 3, 0.f, 3},    {5, 200, 8, TA, TB, 2, 0.f, 1},
      {20, 25, 300, TA, TB, 0, 1.f, 4}};
  for (const Case& cs : cases) check<BM, BN, TA, TB, false, false>(cs);
}

TEST(EmuGemm, Tile64AllLayoutsScalarLoads) {
  sweep<64, 64, false, false>();
  sweep<64, 64, false, true>();
  sweep<64, 64, true, false>();
  sweep<64, 64, true, true>();
}

TEST(EmuGemm, Tile128AllLayoutsScalarLoads) {
  sweep<128, 128, false, false>();
  sweep<128, 128, true, true>();
}

// Vector loads: shapes chosen so every stored leading dimension is a multiple of 4.
TEST(EmuGemm, VectorLoadsAllLayouts) {
  const std::vector<Case> cases = {{64, 64, 16, false, false, 0, 0.f, 1},
                                   {68, 132, 36, false, false, 0, 0.5f, 1},
                                   {36, 44, 52, false, false, 4, 0.f, 2}};
  for (Case cs : cases) {
    check<64, 64, false, false, true, true>(cs);
    check<64, 64, false, true, true, true>(cs);
    check<64, 64, true, false, true, true>(cs);
    check<64, 64, true, true, true, true>(cs);
    check<128, 128, false, false, true, true>(cs);
    check<128, 128, true, true, true, false>(cs);
  }
}

// What sgemm_cuda launches (tile_plan::plan_gemm) on an H100 (132 SMs) and on a small GPU (4 SMs):
// both tile sizes and split K must come up.
TEST(EmuGemm, LaunchPlansAsOnAGpu) {
  const std::vector<Case> shapes = {{256, 300, 600, false, true, 0, 0.f, 0}, {20, 25, 2000, false, true, 0, 1.f, 0},
                                    {130, 130, 64, true, false, 0, 0.5f, 0}, {33, 700, 40, false, false, 0, 0.f, 0}};
  int tiles128 = 0, split = 0;
  for (int sms : {132, 4})
    for (Case cs : shapes) {
      const tile_plan::GemmPlan pl = tile_plan::plan_gemm(cs.m, cs.n, cs.k, sms);
      cs.splits = pl.splits;
      EXPECT_EQ(tile_plan::k_per_split(cs.k, pl.splits), pl.k_per_split) << "the split count does not determine K";
      tiles128 += pl.tile == 128;
      split += pl.splits > 1;
      if (pl.tile == 128) {
        if (cs.ta) check<128, 128, true, false, false, false>(cs);
        else if (cs.tb) check<128, 128, false, true, false, false>(cs);
        else check<128, 128, false, false, false, false>(cs);
      } else {
        if (cs.ta) check<64, 64, true, false, false, false>(cs);
        else if (cs.tb) check<64, 64, false, true, false, false>(cs);
        else check<64, 64, false, false, false, false>(cs);
      }
    }
  EXPECT_GT(tiles128, 0) << "no plan chose 128-tiles";
  EXPECT_GT(split, 0) << "no plan split K";
}

}  // namespace
}  // namespace dropnet
