// CUDA SGEMM: the hand-written tiled kernel (sgemm_cuda) and cuBLAS (sgemm_cublas) against the
// native CPU kernel, over transposes, odd sizes, padded and misaligned operands, alpha/beta,
// NaN-filled C with beta == 0, split-K shapes and the LeNet training shapes.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "kernels/gemm.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

using CudaGemmFn = std::function<void(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                      const float*, int64_t, float, float*, int64_t, Stream)>;

struct GemmCase {
  bool ta = false, tb = false;
  int64_t m = 1, n = 1, k = 1;
  float alpha = 1.f, beta = 0.f;
  int64_t pad = 0;     // extra elements per row of A, B and C
  int misalign = 0;    // bit 0: A, bit 1: B, bit 2: C start one float past a 16-byte boundary
  std::string str() const {
    return std::string(ta ? "T" : "N") + (tb ? "T" : "N") + " m=" + std::to_string(m) +
           " n=" + std::to_string(n) + " k=" + std::to_string(k) + " alpha=" + std::to_string(alpha) +
           " beta=" + std::to_string(beta) + " pad=" + std::to_string(pad) +
           " misalign=" + std::to_string(misalign);
  }
};

constexpr float kPadSentinel = 12345.f;

// A device matrix of rows x ld floats, optionally starting one float into its storage.
struct DeviceMatrix {
  Tensor storage;
  Tensor view;
  DeviceMatrix(const std::vector<float>& host, bool shifted) {
    const int64_t n = static_cast<int64_t>(host.size());
    storage = Tensor(Shape{n + 1}, Device::cuda(0));
    view = Tensor::view(storage, shifted ? 1 : 0, Shape{n});
    view.from_host(host);
  }
};

::testing::AssertionResult check_case(const CudaGemmFn& fn, const GemmCase& g, uint64_t seed) {
  const int64_t a_rows = g.ta ? g.k : g.m, a_cols = g.ta ? g.m : g.k;
  const int64_t b_rows = g.tb ? g.n : g.k, b_cols = g.tb ? g.k : g.n;
  const int64_t lda = a_cols + g.pad, ldb = b_cols + g.pad, ldc = g.n + g.pad;
  const std::vector<float> a = testing::random_vector(std::max<int64_t>(1, a_rows * lda), seed);
  const std::vector<float> b = testing::random_vector(std::max<int64_t>(1, b_rows * ldb), seed + 1);
  std::vector<float> c = testing::random_vector(std::max<int64_t>(1, g.m * ldc), seed + 2);
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      float& x = c[i * ldc + j];
      if (j >= g.n) x = kPadSentinel;
      else if (g.beta == 0.f) x = std::numeric_limits<float>::quiet_NaN();
    }

  std::vector<float> ref = c;
  sgemm_native_cpu(g.ta, g.tb, g.m, g.n, g.k, g.alpha, a.data(), lda, b.data(), ldb, g.beta, ref.data(), ldc);

  DeviceMatrix da(a, g.misalign & 1), db(b, g.misalign & 2), dc(c, g.misalign & 4);
  fn(g.ta, g.tb, g.m, g.n, g.k, g.alpha, da.view.data(), lda, db.view.data(), ldb, g.beta, dc.view.data(), ldc,
     cuda_stream());
  const std::vector<float> out = dc.view.to_host();

  std::vector<float> want(g.m * g.n), got(g.m * g.n);
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) {
      want[i * g.n + j] = ref[i * ldc + j];
      got[i * g.n + j] = out[i * ldc + j];
    }
    for (int64_t j = g.n; j < ldc; ++j)
      if (out[i * ldc + j] != kPadSentinel)
        return ::testing::AssertionFailure() << g.str() << ": wrote C(" << i << ", " << j
                                             << ") outside the n columns";
  }
  const float atol = 1e-4f * std::sqrt(float(std::max<int64_t>(g.k, 1))) * std::max(1.f, std::fabs(g.alpha));
  ::testing::AssertionResult r = testing::all_close(want, got, atol, 1e-4f);
  if (!r) r << " [" << g.str() << "]";
  return r;
}

const int64_t kSizes[] = {1, 2, 3, 7, 15, 16, 17, 31, 33, 64, 65, 100, 127, 129};
constexpr int kNumSizes = sizeof(kSizes) / sizeof(kSizes[0]);
const float kAlphas[] = {1.f, 0.5f, -2.f};
const float kBetas[] = {0.f, 1.f, 0.3f};

// The sweep of unit_gemm (every (m, n) pair, all transposes, k cycling), plus misalignment.
std::vector<GemmCase> sweep_cases() {
  std::vector<GemmCase> cases;
  int idx = 0;
  for (int t = 0; t < 4; ++t)
    for (int i = 0; i < kNumSizes; ++i)
      for (int j = 0; j < kNumSizes; ++j, ++idx) {
        GemmCase g;
        g.ta = t & 1;
        g.tb = t & 2;
        g.m = kSizes[i];
        g.n = kSizes[j];
        g.k = kSizes[(i * 5 + j * 3 + t) % kNumSizes];
        g.alpha = kAlphas[idx % 3];
        g.beta = kBetas[(idx / 3) % 3];
        g.pad = std::vector<int64_t>{0, 1, 3, 16, 5}[idx % 5];
        g.misalign = idx % 8;
        cases.push_back(g);
      }
  return cases;
}

std::vector<GemmCase> lenet_cases() {
  auto mk = [](bool ta, bool tb, int64_t m, int64_t n, int64_t k) {
    GemmCase g;
    g.ta = ta;
    g.tb = tb;
    g.m = m;
    g.n = n;
    g.k = k;
    return g;
  };
  return {mk(false, false, 20, 36864, 25), mk(false, true, 20, 25, 36864), mk(false, false, 50, 4096, 500),
          mk(false, true, 50, 500, 4096),  mk(true, false, 500, 4096, 50), mk(false, true, 64, 500, 800),
          mk(true, false, 500, 800, 64),   mk(false, false, 64, 800, 500), mk(false, true, 64, 10, 500)};
}

const CudaGemmFn kTiled = sgemm_cuda;
const CudaGemmFn kCublas = sgemm_cublas;

void run_sweep(const CudaGemmFn& fn) {
  uint64_t seed = 300;
  int failures = 0;
  for (const GemmCase& g : sweep_cases()) {
    auto r = check_case(fn, g, seed += 3);
    EXPECT_TRUE(r);
    if (!r && ++failures > 10) FAIL() << "stopping after 10 failing cases";
  }
}

TEST(CudaGemm, TiledSweep) {
  DN_REQUIRE_CUDA();
  run_sweep(kTiled);
}

TEST(CudaGemm, CublasSweep) {
  DN_REQUIRE_CUDA();
  run_sweep(kCublas);
}

void run_lenet(const CudaGemmFn& fn) {
  uint64_t seed = 700;
  for (GemmCase g : lenet_cases())
    for (float beta : {0.f, 1.f}) {
      g.beta = beta;
      g.alpha = beta == 0.f ? 1.f : 0.5f;
      EXPECT_TRUE(check_case(fn, g, seed += 3));
    }
}

TEST(CudaGemm, TiledLeNet) {
  DN_REQUIRE_CUDA();
  run_lenet(kTiled);
}

TEST(CudaGemm, CublasLeNet) {
  DN_REQUIRE_CUDA();
  run_lenet(kCublas);
}

// 128 x 128 tiles (a grid of at least one wave), split K (small grid, long K), both with edges.
TEST(CudaGemm, TiledLargeAndSplitK) {
  DN_REQUIRE_CUDA();
  uint64_t seed = 50;
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    const GemmCase shapes[] = {
        {ta, tb, 1500, 1700, 70, 1.f, 0.f, 0, 0},   // 12 x 14 tiles of 128
        {ta, tb, 1501, 1699, 67, 0.5f, 0.3f, 3, 7}, // same, ragged and misaligned
        {ta, tb, 20, 25, 9000, 1.f, 0.f, 0, 0},     // one tile, split K
        {ta, tb, 13, 7, 2001, -2.f, 1.f, 1, 5},     // split K, odd K and ld
        {ta, tb, 200, 300, 3000, 0.5f, 0.3f, 4, 0}, // several tiles, split K
    };
    for (const GemmCase& g : shapes) EXPECT_TRUE(check_case(kTiled, g, seed += 3));
  }
}

TEST(CudaGemm, DegenerateSizes) {
  DN_REQUIRE_CUDA();
  for (const CudaGemmFn* fn : {&kTiled, &kCublas}) {
    GemmCase k0{false, false, 5, 9, 0, 1.f, 0.f, 2, 0};  // C = 0, NaN overwritten
    EXPECT_TRUE(check_case(*fn, k0, 1));
    GemmCase k0b{true, true, 5, 9, 0, 1.f, 0.5f, 2, 0};  // C = 0.5 C
    EXPECT_TRUE(check_case(*fn, k0b, 2));
    GemmCase a0{false, true, 33, 40, 17, 0.f, 0.3f, 1, 0};  // alpha = 0
    EXPECT_TRUE(check_case(*fn, a0, 3));
  }
}

}  // namespace
}  // namespace dropnet
