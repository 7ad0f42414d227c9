// LRN on CUDA against the CPU path over a sweep of shapes and parameters (both regions, the
// Caffe nets' values, a large alpha, beta other than 0.75, windows wider than the tensor,
// batch 1): forward y and scale, backward with beta 0 and 1, within a float tolerance (the same
// lrn_math.h arithmetic; powf and contraction may differ by an ulp between the backends).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "core/tensor.h"
#include "kernels/lrn.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

using testing::all_close;
using testing::random_vector;

using testing::on_device;

std::string describe(const LrnParams& p) {
  return std::string(p.across_channels ? "across" : "within") + " n" + std::to_string(p.local_size) +
         " alpha " + std::to_string(p.alpha) + " beta " + std::to_string(p.beta) + " k " +
         std::to_string(p.k) + " (" + std::to_string(p.n) + ", " + std::to_string(p.c) + ", " +
         std::to_string(p.h) + ", " + std::to_string(p.w) + ")";
}

TEST(CudaLrn, MatchesCpu) {
  DN_REQUIRE_CUDA();
  const LrnParams cases[] = {
      {true, 5, 1e-4f, 0.75f, 1.f, 8, 96, 55, 55},    // AlexNet norm1
      {true, 5, 1e-4f, 0.75f, 1.f, 4, 256, 27, 27},   // AlexNet norm2
      {true, 5, 1e-4f, 0.75f, 1.f, 1, 96, 55, 55},    // batch 1
      {false, 3, 5e-5f, 0.75f, 1.f, 16, 32, 16, 16},  // cifar norm1
      {false, 3, 5e-5f, 0.75f, 1.f, 1, 32, 8, 8},     // cifar norm2, batch 1
      {true, 3, 0.1f, 0.75f, 2.f, 2, 7, 9, 11},       // large alpha
      {true, 5, 0.1f, 0.6f, 1.5f, 2, 9, 5, 7},        // powf path
      {true, 7, 0.3f, 0.75f, 1.f, 2, 3, 4, 5},        // window wider than the channels
      {false, 5, 0.1f, 0.75f, 1.f, 2, 3, 13, 17},
      {false, 3, 0.5f, 0.6f, 1.f, 2, 2, 9, 6},
      {false, 7, 0.2f, 0.75f, 1.f, 1, 2, 3, 4},       // window wider than the plane
      {true, 1, 0.2f, 0.75f, 1.f, 1, 3, 4, 4},        // local_size 1
      {true, 5, 0.1f, 0.75f, 1.f, 3, 7, 1, 1},        // 1x1 planes
  };
  uint64_t seed = 1;
  for (const LrnParams& p : cases) {
    SCOPED_TRACE(describe(p));
    const int64_t n = p.n * p.c * p.h * p.w;
    const auto x = random_vector(n, ++seed, -2.f, 2.f), dy = random_vector(n, ++seed);
    const auto acc = random_vector(n, ++seed);
    std::vector<float> y(static_cast<size_t>(n)), scale(static_cast<size_t>(n));
    lrn_forward_cpu(p, x.data(), y.data(), scale.data());
    Tensor x_d = on_device(x), y_d(Shape{n}, Device::cuda()), scale_d(Shape{n}, Device::cuda());
    lrn_forward_cuda(p, x_d.data(), y_d.data(), scale_d.data(), cuda_stream());
    EXPECT_TRUE(all_close(scale, scale_d.to_host(), 1e-7f, 1e-6f)) << "scale";
    EXPECT_TRUE(all_close(y, y_d.to_host(), 1e-7f, 2e-6f)) << "forward";
    // Backward from each backend's own forward results, as a net would run it.
    Tensor dy_d = on_device(dy);
    for (float beta : {0.f, 1.f}) {
      std::vector<float> dx = beta == 0.f ? std::vector<float>(static_cast<size_t>(n), NAN) : acc;
      Tensor dx_d = on_device(dx);
      lrn_backward_cpu(p, x.data(), y.data(), scale.data(), dy.data(), beta, dx.data());
      lrn_backward_cuda(p, x_d.data(), y_d.data(), scale_d.data(), dy_d.data(), beta, dx_d.data(),
                        cuda_stream());
      EXPECT_TRUE(all_close(dx, dx_d.to_host(), 1e-6f, 1e-5f)) << "backward, beta " << beta;
    }
  }
}

TEST(CudaLrn, RejectsBadParams) {
  DN_REQUIRE_CUDA();
  const LrnParams p{true, 4, 1e-4f, 0.75f, 1.f, 1, 4, 3, 3};
  Tensor b(Shape{36}, Device::cuda());
  EXPECT_THROW(lrn_forward_cuda(p, b.data(), b.data(), b.data(), cuda_stream()), Error);
}

}  // namespace
}  // namespace dropnet
