// The tensor-core SGEMM (sgemm_mma_cuda, kernels/gemm_mma.h) at TF32 and BF16 against a CPU
// reference computed from the same operands rounded with precision::round (kernels/precision_math.h)
// and summed in double: both block tiles, all four transposes, odd sizes (M, N, K remainders of
// every tile, K = 1, 1 x 1), 16-byte and 4-byte copy paths (padded and misaligned operands),
// beta == 0 over a NaN-filled C, beta != 0, alpha == 0 and K == 0 over NaN operands; and the
// rounding itself, exactly, on values that the two roundings treat differently.
//
// Tolerance, element by element: the products of two TF32 or BF16 values are exact in FP32, so the
// only error is the FP32 accumulation of K products, bounded by (K - 1) u sum_k |a_ik b_kj| for
// recursive summation (u = 2^-24), plus the alpha / beta epilogue (a few u). The hardware's order and
// internal rounding of a tensor-core sum are unspecified (emu/README.md); allowing twice that,
//   |c - ref| <= 2 (K + 2) u (|alpha| sum_k |a_ik b_kj| + |beta c_ij|) + 1e-30.
// Operand rounding is not inside the tolerance: an unrounded operand (relative error up to 2^-11
// for TF32, 2^-8 for BF16) fails it, as the exact rounding tests show directly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "kernels/gemm_mma.h"
#include "kernels/precision_math.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

struct MmaCase {
  int64_t m, n, k;
  int64_t pad;      // added to each leading dimension
  bool misalign;    // operands start one float into their storage (4-byte copies)
  float alpha, beta;
};

std::string case_name(Precision p, MmaTile tile, bool ta, bool tb, const MmaCase& g) {
  return std::string(p == Precision::TF32 ? "tf32" : "bf16") + (tile == MmaTile::M128N64 ? " 128x64" : tile == MmaTile::M64N64 ? " 64x64" : " auto") +
         (ta ? " At" : " A") + (tb ? " Bt" : " B") + " m=" + std::to_string(g.m) + " n=" + std::to_string(g.n) +
         " k=" + std::to_string(g.k) + " pad=" + std::to_string(g.pad) + (g.misalign ? " misaligned" : "") +
         " alpha=" + std::to_string(g.alpha) + " beta=" + std::to_string(g.beta);
}

// A device copy of `host`, starting `shift` floats into its storage.
struct DeviceMatrix {
  Tensor storage, view;
  DeviceMatrix(const std::vector<float>& host, int64_t shift) {
    const int64_t n = static_cast<int64_t>(host.size());
    storage = Tensor(Shape{n + shift}, Device::cuda(0));
    view = Tensor::view(storage, shift, Shape{n});
    view.from_host(host);
  }
};

::testing::AssertionResult check(Precision p, MmaTile tile, bool ta, bool tb, const MmaCase& g, uint64_t seed,
                                 bool nan_operands = false) {
  const int64_t lda = (ta ? g.m : g.k) + g.pad, ldb = (tb ? g.k : g.n) + g.pad, ldc = g.n + g.pad;
  const int64_t a_rows = ta ? g.k : g.m, b_rows = tb ? g.n : g.k;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> a(std::max<int64_t>(1, a_rows * lda)), b(std::max<int64_t>(1, b_rows * ldb)),
      c(std::max<int64_t>(1, g.m * ldc));
  for (float& x : a) x = nan_operands ? nan : u(rng);
  for (float& x : b) x = nan_operands ? nan : u(rng);
  for (float& x : c) x = g.beta == 0.f ? nan : u(rng);

  DeviceMatrix da(a, g.misalign ? 1 : 0), db(b, g.misalign ? 1 : 0), dc(c, g.misalign ? 1 : 0);
  sgemm_mma_cuda_tile(tile, p, ta, tb, g.m, g.n, g.k, g.alpha, da.view.data(), lda, db.view.data(), ldb, g.beta,
                      dc.view.data(), ldc, cuda_stream());
  const std::vector<float> got = dc.view.to_host();

  const double uu = std::ldexp(1.0, -24);
  double worst = 0;
  std::string worst_text;
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < g.n; ++j) {
      double sum = 0, mag = 0;
      if (g.alpha != 0.f)
        for (int64_t kk = 0; kk < g.k; ++kk) {
          const double x = precision::round(p, ta ? a[kk * lda + i] : a[i * lda + kk]);
          const double y = precision::round(p, tb ? b[j * ldb + kk] : b[kk * ldb + j]);
          sum += x * y;
          mag += std::fabs(x * y);
        }
      const double cij = g.beta == 0.f ? 0.0 : c[i * ldc + j];
      const double want = g.alpha * sum + g.beta * cij;
      const double tol = 2.0 * static_cast<double>(g.k + 2) * uu * (std::fabs(g.alpha) * mag + std::fabs(g.beta * cij)) + 1e-30;
      const double v = got[i * ldc + j];
      const double excess = std::isfinite(v) ? std::fabs(v - want) / tol : std::numeric_limits<double>::infinity();
      if (!(excess <= worst)) {
        worst = excess;
        worst_text = "C(" + std::to_string(i) + ", " + std::to_string(j) + ") = " + std::to_string(v) + ", want " +
                     std::to_string(want) + " +- " + std::to_string(tol);
      }
    }
  // Padding columns of C are untouched.
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = g.n; j < ldc; ++j)
      if (!(std::isnan(c[i * ldc + j]) ? std::isnan(got[i * ldc + j]) : got[i * ldc + j] == c[i * ldc + j]))
        return ::testing::AssertionFailure() << case_name(p, tile, ta, tb, g) << ": padding C(" << i << ", " << j
                                             << ") was written";
  if (worst > 1.0)
    return ::testing::AssertionFailure() << case_name(p, tile, ta, tb, g) << ": worst " << worst_text << " ("
                                         << worst << " x the tolerance)";
  return ::testing::AssertionSuccess();
}

// Remainders of both tiles in M, N and K (K steps of 16), the 16-byte path (leading dimensions
// multiples of 4, aligned) and the 4-byte one, beta == 0 and not.
std::vector<MmaCase> shape_cases() {
  return {
      {130, 70, 37, 0, false, 1.5f, 0.f},    // ld 37 / 70 / 130: 4-byte copies where not a multiple of 4
      {131, 72, 48, 4, false, 1.f, 0.f},     // 16-byte copies for B^T / A (ld 52, 76) with ragged edges
      {67, 129, 50, 3, true, -0.5f, 0.75f},  // misaligned: 4-byte copies, beta != 0
      {64, 64, 64, 0, false, 1.f, 2.f},      // exact tiles of 64 x 64, 16-byte copies
      {5, 3, 200, 0, false, 1.f, 0.f},       // long K: the pipeline wraps its 3 stages many times
      {1, 1, 1, 0, false, 2.f, 0.f},         // K = 1, 1 x 1
      {17, 9, 1, 1, false, 1.f, -1.f},       // K = 1 with beta
  };
}

void sweep(Precision p) {
  uint64_t seed = 1;
  for (MmaTile tile : {MmaTile::M128N64, MmaTile::M64N64})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (const MmaCase& g : shape_cases()) EXPECT_TRUE(check(p, tile, ta, tb, g, seed++));
}

TEST(CudaGemmMma, Tf32EveryTileTransposeAndRemainder) {
  DN_REQUIRE_CUDA();
  sweep(Precision::TF32);
}

TEST(CudaGemmMma, Bf16EveryTileTransposeAndRemainder) {
  DN_REQUIRE_CUDA();
  sweep(Precision::BF16);
}

// A few hundred a side, the tile sgemm_mma_cuda picks itself.
TEST(CudaGemmMma, Tf32AndBf16AutoTileLargerShapes) {
  DN_REQUIRE_CUDA();
  const MmaCase big{testing::on_gpu_or_emulated<int64_t>(1000, 300, 140), testing::on_gpu_or_emulated<int64_t>(900, 260, 70),
                    testing::on_gpu_or_emulated<int64_t>(700, 200, 90), 0, false, 1.f, 0.5f};
  uint64_t seed = 100;
  for (Precision p : {Precision::TF32, Precision::BF16})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) EXPECT_TRUE(check(p, MmaTile::Auto, ta, tb, big, seed++));
}

// alpha == 0 and K == 0 read neither A nor B (NaN there), beta == 0 not C.
TEST(CudaGemmMma, Tf32Bf16AlphaZeroAndEmptyKLeaveBetaC) {
  DN_REQUIRE_CUDA();
  for (Precision p : {Precision::TF32, Precision::BF16}) {
    EXPECT_TRUE(check(p, MmaTile::M64N64, false, false, {33, 20, 17, 0, false, 0.f, 0.5f}, 7, /*nan_operands=*/true));
    EXPECT_TRUE(check(p, MmaTile::M64N64, true, true, {33, 20, 0, 0, false, 1.f, 0.5f}, 8, true));
    EXPECT_TRUE(check(p, MmaTile::M128N64, false, true, {33, 20, 0, 0, false, 1.f, 0.f}, 9, true));
  }
}

// One product with K = 1, B = 1: C is exactly A's rounded value, for values where rounding to
// nearest differs from truncation (TF32: ties away from zero, BF16: ties to even).
TEST(CudaGemmMma, Tf32Bf16RoundOperandsExactlyAsPrecisionMath) {
  DN_REQUIRE_CUDA();
  const std::vector<float> values = {
      1.f + 0x1p-11f,                 // TF32 tie: away from zero -> 1 + 2^-10; BF16: 1
      -(1.f + 0x1p-11f),              // negative tie
      1.f + 0x1p-8f,                  // BF16 tie at even 1 -> 1; TF32 exact
      1.f + 0x3p-8f,                  // BF16 tie at odd -> 1 + 2^-6
      1.f + 0x1p-10f + 0x1p-12f,      // TF32 below the tie: 1 + 2^-10
      3.14159265f, -2.71828182f, 1e-30f, 6.5e4f};
  const int64_t m = static_cast<int64_t>(values.size());
  Tensor a(Shape{m}, Device::cuda(0)), b(Shape{1}, Device::cuda(0)), c(Shape{m}, Device::cuda(0));
  a.from_host(values);
  b.from_host(std::vector<float>{1.f});
  for (Precision p : {Precision::TF32, Precision::BF16}) {
    sgemm_mma_cuda_tile(MmaTile::M64N64, p, false, false, m, 1, 1, 1.f, a.data(), 1, b.data(), 1, 0.f, c.data(), 1,
                        cuda_stream());
    const std::vector<float> got = c.to_host();
    for (int64_t i = 0; i < m; ++i)
      EXPECT_EQ(got[i], precision::round(p, values[i]))
          << (p == Precision::TF32 ? "tf32 " : "bf16 ") << std::hexfloat << values[i];
  }
}

}  // namespace
}  // namespace dropnet
