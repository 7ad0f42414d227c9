// Pooling on CUDA against the CPU path over a sweep of shapes (Caffe nets, odd sizes, pad,
// overlapping and skipping windows, batch 1): forward values and argmax bit for bit for MAX,
// AVE within a float tolerance (both are the same per-window arithmetic); backward (the
// deterministic per-cell gather) with beta 0 and 1.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/device_array.h"
#include "core/tensor.h"
#include "kernels/pool.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

using testing::all_close;
using testing::random_vector;

using testing::on_device;

struct Case {
  int k_h, k_w, s_h, s_w, p_h, p_w;
  int64_t n, c, h, w;
};

std::string describe(PoolMethod m, const Case& c) {
  return std::string(m == PoolMethod::Max ? "max" : "ave") + " k" + std::to_string(c.k_h) + "x" +
         std::to_string(c.k_w) + " s" + std::to_string(c.s_h) + "x" + std::to_string(c.s_w) + " p" +
         std::to_string(c.p_h) + "x" + std::to_string(c.p_w) + " (" + std::to_string(c.n) + ", " +
         std::to_string(c.c) + ", " + std::to_string(c.h) + ", " + std::to_string(c.w) + ")";
}

TEST(CudaPool, MatchesCpu) {
  DN_REQUIRE_CUDA();
  const Case cases[] = {
      {2, 2, 2, 2, 0, 0, 64, 20, 24, 24},   // LeNet pool1
      {2, 2, 2, 2, 0, 0, 1, 50, 8, 8},      // LeNet pool2, batch 1
      {3, 3, 2, 2, 0, 0, 8, 32, 32, 32},    // cifar pool1 (ceil mode)
      {3, 3, 2, 2, 0, 0, 1, 32, 16, 16},    // cifar pool2, batch 1
      {3, 3, 2, 2, 0, 0, 4, 96, 55, 55},    // AlexNet pool1
      {3, 3, 2, 2, 0, 0, 2, 256, 13, 13},   // AlexNet pool5
      {2, 2, 2, 2, 0, 0, 2, 64, 224, 224},  // VGG block 1
      {3, 3, 2, 2, 1, 1, 3, 5, 7, 9},       // odd sizes with pad
      {3, 3, 1, 1, 1, 1, 2, 3, 17, 19},     // overlapping windows
      {5, 5, 2, 2, 2, 2, 2, 3, 23, 21},     // overlapping, large pad
      {2, 2, 3, 3, 0, 0, 2, 4, 10, 11},     // stride > kernel
      {3, 2, 2, 1, 1, 0, 2, 2, 9, 70},      // non-square, wide
      {3, 3, 3, 3, 2, 2, 1, 3, 4, 4},       // pad rule drops the last window
      {3, 3, 2, 2, 0, 0, 1, 1, 2, 2},       // kernel larger than the input
      {1, 1, 1, 1, 0, 0, 1, 7, 5, 3},       // identity
  };
  uint64_t seed = 1;
  for (const Case& c : cases)
    for (PoolMethod m : {PoolMethod::Max, PoolMethod::Ave}) {
      SCOPED_TRACE(describe(m, c));
      const PoolParams p = make_pool_params(m, c.k_h, c.k_w, c.s_h, c.s_w, c.p_h, c.p_w, c.n, c.c, c.h, c.w);
      const int64_t nx = p.n * p.c * p.h * p.w, ny = p.n * p.c * p.out_h * p.out_w;
      auto x = random_vector(nx, ++seed, -2.f, 2.f);
      for (int64_t i = 0; i < nx; i += 5) x[i] = 0.5f;  // ties: the first maximum must win on both
      const auto dy = random_vector(ny, ++seed), acc = random_vector(nx, ++seed);
      const bool is_max = m == PoolMethod::Max;

      std::vector<float> y(static_cast<size_t>(ny));
      std::vector<int32_t> am(static_cast<size_t>(ny));
      pool_forward_cpu(p, x.data(), y.data(), am.data());
      Tensor x_d = on_device(x), y_d(Shape{ny}, Device::cuda());
      DeviceArray<int32_t> am_d(ny, Device::cuda());
      pool_forward_cuda(p, x_d.data(), y_d.data(), is_max ? am_d.data() : nullptr, cuda_stream());
      const std::vector<float> y_gpu = y_d.to_host();
      if (is_max) {
        EXPECT_EQ(y, y_gpu) << "forward values";
        EXPECT_EQ(am, am_d.to_host()) << "argmax";
      } else {
        EXPECT_TRUE(all_close(y, y_gpu, 1e-6f, 1e-6f)) << "forward";
      }
      for (float beta : {0.f, 1.f}) {
        std::vector<float> dx = beta == 0.f ? std::vector<float>(static_cast<size_t>(nx), NAN) : acc;
        Tensor dy_d = on_device(dy), dx_d = on_device(dx);
        pool_backward_cpu(p, dy.data(), am.data(), beta, dx.data());
        pool_backward_cuda(p, dy_d.data(), is_max ? am_d.data() : nullptr, beta, dx_d.data(), cuda_stream());
        EXPECT_TRUE(all_close(dx, dx_d.to_host(), 1e-6f, 1e-6f)) << "backward, beta " << beta;
      }
    }
}

// Backward twice on the same input gives the same bits (no atomics: overlapping windows gather).
TEST(CudaPool, BackwardIsDeterministic) {
  DN_REQUIRE_CUDA();
  const PoolParams p = make_pool_params(PoolMethod::Max, 3, 3, 1, 1, 1, 1, 4, 8, 31, 29);
  const int64_t nx = p.n * p.c * p.h * p.w, ny = p.n * p.c * p.out_h * p.out_w;
  Tensor x_d = on_device(random_vector(nx, 5)), y_d(Shape{ny}, Device::cuda());
  Tensor dy_d = on_device(random_vector(ny, 6));
  DeviceArray<int32_t> am_d(ny, Device::cuda());
  pool_forward_cuda(p, x_d.data(), y_d.data(), am_d.data(), cuda_stream());
  Tensor dx1(Shape{nx}, Device::cuda()), dx2(Shape{nx}, Device::cuda());
  pool_backward_cuda(p, dy_d.data(), am_d.data(), 0.f, dx1.data(), cuda_stream());
  pool_backward_cuda(p, dy_d.data(), am_d.data(), 0.f, dx2.data(), cuda_stream());
  EXPECT_EQ(dx1.to_host(), dx2.to_host());
}

TEST(CudaPool, MaxPropagatesNaNLikeCpu) {
  DN_REQUIRE_CUDA();
  const PoolParams p = make_pool_params(PoolMethod::Max, 2, 2, 2, 2, 0, 0, 1, 1, 2, 4);
  const std::vector<float> x = {1.f, NAN, 3.f, 4.f, 2.f, 9.f, NAN, 0.f};
  std::vector<float> y(2);
  std::vector<int32_t> am(2);
  pool_forward_cpu(p, x.data(), y.data(), am.data());
  Tensor x_d = on_device(x), y_d(Shape{2}, Device::cuda());
  DeviceArray<int32_t> am_d(2, Device::cuda());
  pool_forward_cuda(p, x_d.data(), y_d.data(), am_d.data(), cuda_stream());
  const auto y_gpu = y_d.to_host();
  EXPECT_TRUE(std::isnan(y_gpu[0]) && std::isnan(y_gpu[1]));
  EXPECT_EQ(am, am_d.to_host());
}

}  // namespace
}  // namespace dropnet
