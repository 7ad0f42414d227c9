// CUDA SGEMM: the hand-written tiled kernel (sgemm_cuda) and cuBLAS (sgemm_cublas) against the
// native CPU kernel, over transposes, odd sizes, padded and misaligned operands, alpha/beta,
// NaN-filled C with beta == 0, split-K shapes and the LeNet training shapes.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "kernels/gemm.h"
#include "tests/testing/gemm_cases.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

using CudaGemmFn = std::function<void(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                      const float*, int64_t, float, float*, int64_t, Stream)>;

using testing::GemmCase;

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

// `fn` on device copies of the host operands (A, B, C each shifted as g.misalign says), C copied back, against the
// native CPU kernel on the same operands.
::testing::AssertionResult check_case(const CudaGemmFn& fn, const GemmCase& g, uint64_t seed) {
  const auto on_device = [&](bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                             int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    // The sizes check_gemm_case allocates: rows x ld, at least one float.
    const int64_t a_size = std::max<int64_t>(1, (ta ? k : m) * lda), b_size = std::max<int64_t>(1, (tb ? n : k) * ldb);
    const int64_t c_size = std::max<int64_t>(1, m * ldc);
    DeviceMatrix da(std::vector<float>(a, a + a_size), g.misalign & 1);
    DeviceMatrix db(std::vector<float>(b, b + b_size), g.misalign & 2);
    DeviceMatrix dc(std::vector<float>(c, c + c_size), g.misalign & 4);
    fn(ta, tb, m, n, k, alpha, da.view.data(), lda, db.view.data(), ldb, beta, dc.view.data(), ldc, cuda_stream());
    const std::vector<float> out = dc.view.to_host();
    std::copy(out.begin(), out.end(), c);
  };
  return testing::check_gemm_case(on_device, g, seed, sgemm_native_cpu);
}

// The sweep of unit_gemm with other paddings, {0, 1, 3, 16, 5}, and every misalignment.
std::vector<GemmCase> sweep_cases() {
  return testing::gemm_sweep_cases([](int idx, GemmCase& g) {
    g.pad = std::vector<int64_t>{0, 1, 3, 16, 5}[idx % 5];
    g.misalign = idx % 8;
  });
}

// LeNet's GEMMs up to fc2's forward pass (the first nine).
std::vector<GemmCase> lenet_cases() {
  std::vector<GemmCase> cases = testing::gemm_lenet_cases();
  cases.resize(9);
  return cases;
}

const CudaGemmFn kTiled = sgemm_cuda;
const CudaGemmFn kCublas = sgemm_cublas;

void run_sweep(const CudaGemmFn& fn) {
  testing::expect_gemm_sweep(sweep_cases(), 300,
                             [&](const GemmCase& g, uint64_t seed) { return check_case(fn, g, seed); });
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
