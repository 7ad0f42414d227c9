// Element-wise kernels on CUDA against the CPU path: ReLU (plain and leaky) forward and backward
// with beta 0 / 0.5 / 1, and the per-channel bias add (alone, with a fused ReLU or leaky ReLU, and
// the ReLU with no bias) and its gradient. ReLU and the bias add are one rounding per element on
// both backends (same eltwise_math.h functions; beta * dx is exact for these betas), so they must
// agree bit for bit; the bias gradient is a reduction whose order differs (CPU: double over rows,
// CUDA: float tree per channel), so it gets a tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "kernels/eltwise.h"
#include "tests/testing/harness.h"

#if DROPNET_HAVE_CUDA

namespace dropnet {
namespace {

using testing::all_close;
using testing::nan_tensor;
using testing::on_device;
using testing::random_vector;

// Random values with exact zeros and both signs of tiny values mixed in (the ReLU decision points).
std::vector<float> relu_input(int64_t n, uint64_t seed) {
  std::vector<float> x = random_vector(n, seed);
  for (int64_t i = 0; i < n; i += 17) x[i] = 0.f;
  for (int64_t i = 5; i < n; i += 29) x[i] = -0.f;
  for (int64_t i = 9; i < n; i += 31) x[i] = (i % 2 ? 1e-30f : -1e-30f);
  return x;
}

TEST(CudaRelu, ForwardBackwardMatchCpuExactly) {
  DN_REQUIRE_CUDA();
  // Emulated device (one host thread): the same shapes of counts, smaller.
  for (int64_t n : {int64_t(1), int64_t(1000), testing::on_gpu_or_emulated<int64_t>(int64_t(1) << 20, 1 << 16),
                    testing::on_gpu_or_emulated<int64_t>((int64_t(1) << 22) + 3, (1 << 18) + 3)}) {
    for (float slope : {0.f, 0.1f}) {
      SCOPED_TRACE("n " + std::to_string(n) + " slope " + std::to_string(slope));
      const std::vector<float> x = relu_input(n, 1), dy = random_vector(n, 2), old = random_vector(n, 3);
      std::vector<float> y(static_cast<size_t>(n));
      relu_forward_cpu(n, slope, x.data(), y.data());
      Tensor x_d = on_device(x), dy_d = on_device(dy), y_d = nan_tensor(n);
      relu_forward_cuda(n, slope, x_d.data(), y_d.data(), cuda_stream());
      EXPECT_TRUE(all_close(y, y_d.to_host(), 0.f, 0.f)) << "forward";

      // In place (y aliases x), as the relu layer may run.
      Tensor inplace = on_device(x);
      relu_forward_cuda(n, slope, inplace.data(), inplace.data(), cuda_stream());
      EXPECT_TRUE(all_close(y, inplace.to_host(), 0.f, 0.f)) << "forward in place";

      for (float beta : {0.f, 0.5f, 1.f}) {
        std::vector<float> dx = beta == 0.f ? std::vector<float>(static_cast<size_t>(n), 0.f) : old;
        relu_backward_cpu(n, slope, x.data(), dy.data(), beta, dx.data());
        Tensor dx_d = beta == 0.f ? nan_tensor(n) : on_device(old);  // beta 0 must not read dx
        relu_backward_cuda(n, slope, x_d.data(), dy_d.data(), beta, dx_d.data(), cuda_stream());
        EXPECT_TRUE(all_close(dx, dx_d.to_host(), 0.f, 0.f)) << "backward, beta " << beta;
      }
    }
  }
}

TEST(CudaRelu, NonFiniteInputsPropagateAlike) {
  DN_REQUIRE_CUDA();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {inf, -inf, 1.f, -1.f, 0.f, 3.f};
  const std::vector<float> dy = {1.f, 1.f, inf, inf, 2.f, std::nanf("")};
  const int64_t n = static_cast<int64_t>(x.size());
  for (float slope : {0.f, 0.25f}) {
    std::vector<float> y(x.size()), dx(x.size());
    relu_forward_cpu(n, slope, x.data(), y.data());
    relu_backward_cpu(n, slope, x.data(), dy.data(), 0.f, dx.data());
    Tensor x_d = on_device(x), dy_d = on_device(dy), y_d = nan_tensor(n), dx_d = nan_tensor(n);
    relu_forward_cuda(n, slope, x_d.data(), y_d.data(), cuda_stream());
    relu_backward_cuda(n, slope, x_d.data(), dy_d.data(), 0.f, dx_d.data(), cuda_stream());
    const std::vector<float> yg = y_d.to_host(), dxg = dx_d.to_host();
    for (size_t i = 0; i < x.size(); ++i) {
      // Bitwise class equality: NaN where the CPU has NaN, else the same value.
      EXPECT_EQ(std::isnan(y[i]), std::isnan(yg[i])) << "y[" << i << "] slope " << slope;
      if (!std::isnan(y[i])) {
        EXPECT_EQ(y[i], yg[i]) << "y[" << i << "] slope " << slope;
      }
      EXPECT_EQ(std::isnan(dx[i]), std::isnan(dxg[i])) << "dx[" << i << "] slope " << slope;
      if (!std::isnan(dx[i])) {
        EXPECT_EQ(dx[i], dxg[i]) << "dx[" << i << "] slope " << slope;
      }
    }
  }
}

struct BiasCase {
  int64_t outer, channels, inner;
};

TEST(CudaBias, ForwardExactBackwardClose) {
  DN_REQUIRE_CUDA();
  // fc-like (inner 1), conv-like, one channel, many channels with a large inner, odd sizes.
  const BiasCase cases[] = {{64, 500, 1},  {2, 96, 55 * 55},
                            {3, 1, 1001}, {1, 7, 13},
                            {testing::on_gpu_or_emulated<int64_t>(256, 16), 384, 169}, {5, 1000, 1}};
  for (const BiasCase& c : cases) {
    SCOPED_TRACE("outer " + std::to_string(c.outer) + " channels " + std::to_string(c.channels) + " inner " +
                 std::to_string(c.inner));
    const int64_t total = c.outer * c.channels * c.inner;
    const std::vector<float> bias = random_vector(c.channels, 4), y0 = random_vector(total, 5);
    Tensor bias_d = on_device(bias);
    // Plain, with a fused ReLU / leaky ReLU, and the activation alone (no bias).
    for (const Activation act : {Activation{}, Activation{true, 0.f}, Activation{true, 0.2f}})
      for (bool with_bias : {true, false}) {
        std::vector<float> y = y0;
        bias_forward_cpu(c.outer, c.channels, c.inner, with_bias ? bias.data() : nullptr, y.data(), act);
        Tensor y_d = on_device(y0);
        bias_forward_cuda(c.outer, c.channels, c.inner, with_bias ? bias_d.data() : nullptr, y_d.data(),
                          cuda_stream(), act);
        EXPECT_TRUE(all_close(y, y_d.to_host(), 0.f, 0.f))
            << "bias forward" << (with_bias ? "" : " without bias") << (act.relu ? ", relu slope " : "")
            << (act.relu ? std::to_string(act.slope) : "");
      }

    // The gradient accumulates onto what is there.
    const std::vector<float> dy = random_vector(total, 6), db0 = random_vector(c.channels, 7);
    std::vector<float> db = db0;
    bias_backward_cpu(c.outer, c.channels, c.inner, dy.data(), db.data());
    Tensor dy_d = on_device(dy), db_d = on_device(db0);
    bias_backward_cuda(c.outer, c.channels, c.inner, dy_d.data(), db_d.data(), cuda_stream());
    const float terms = static_cast<float>(c.outer * c.inner);
    EXPECT_TRUE(all_close(db, db_d.to_host(), 1e-5f + 1e-6f * terms, 1e-5f)) << "bias backward";
  }
}

}  // namespace
}  // namespace dropnet

#else  // a CPU-only build (DROPNET_CUDA=OFF) has none of the CUDA kernels tested above

TEST(CudaEltwise, NotBuilt) { GTEST_SKIP() << "built without CUDA (DROPNET_CUDA=OFF)"; }

#endif
