// DropIn on CUDA against the CPU path: masks (gradual, regularize, channel units) and the
// expectation must agree bit for bit, forward and backward (beta 0 and 1).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <string>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "kernels/dropin.h"
#include "kernels/grow.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

using testing::all_close;
using testing::random_vector;

using testing::on_device;

DropinParams make(DropinMode mode, DropinUnit unit, int64_t n, int64_t c, int64_t hw, float p, bool sample,
                  uint32_t step) {
  DropinParams d;
  d.mode = mode;
  d.unit = unit;
  d.n = n;
  d.c = c;
  d.hw = hw;
  d.p = p;
  d.sample = sample;
  d.seed = 0x1234567890abcdefull;
  d.stream = 5;
  d.step = step;
  return d;
}

std::string describe(const DropinParams& p) {
  return std::string(p.mode == DropinMode::Gradual ? "gradual" : "regularize") +
         (p.unit == DropinUnit::Channel ? " channel" : " element") + (p.sample ? " sample" : " expectation") +
         " n " + std::to_string(p.n) + " c " + std::to_string(p.c) + " hw " + std::to_string(p.hw) + " p " +
         std::to_string(p.p) + " step " + std::to_string(p.step);
}

TEST(CudaDropin, MatchesCpuExactly) {
  DN_REQUIRE_CUDA();
  const DropinParams cases[] = {
      make(DropinMode::Gradual, DropinUnit::Element, 3, 7, 33 * 35, 0.37f, true, 0),
      make(DropinMode::Gradual, DropinUnit::Element, 2, 5, 7, 0.5f, true, 0),
      make(DropinMode::Gradual, DropinUnit::Channel, 4, 13, 9 * 11, 0.62f, true, 0),
      make(DropinMode::Gradual, DropinUnit::Element, 64, 96, 27 * 27, 0.001f, true, 0),
      make(DropinMode::Regularize, DropinUnit::Element, 3, 7, 33 * 35, 0.5f, true, 11),
      make(DropinMode::Regularize, DropinUnit::Element, 256, 4096, 1, 0.5f, true, 1234567),
      make(DropinMode::Regularize, DropinUnit::Channel, 5, 17, 13 * 13, 0.3f, true, 12),
      make(DropinMode::Regularize, DropinUnit::Element, 3, 7, 33 * 35, 0.3f, false, 13),
  };
  for (const DropinParams& p : cases) {
    SCOPED_TRACE(describe(p));
    const int64_t count = p.n * p.c * p.hw;
    const std::vector<float> skip = random_vector(count, 1), nw = random_vector(count, 2), dy = random_vector(count, 3);
    const std::vector<float> acc_skip = random_vector(count, 4), acc_new = random_vector(count, 5);

    std::vector<float> y(count);
    dropin_forward_cpu(p, skip.data(), nw.data(), y.data());
    Tensor skip_d = on_device(skip), new_d = on_device(nw), y_d(Shape{count}, Device::cuda());
    dropin_forward_cuda(p, skip_d.data(), new_d.data(), y_d.data(), cuda_stream());
    EXPECT_TRUE(all_close(y, y_d.to_host(), 0.f, 0.f)) << "forward";

    for (float beta : {0.f, 1.f}) {
      std::vector<float> d_skip = beta == 0.f ? std::vector<float>(count, 0.f) : acc_skip;
      std::vector<float> d_new = beta == 0.f ? std::vector<float>(count, 0.f) : acc_new;
      Tensor dy_d = on_device(dy), d_skip_d = on_device(d_skip), d_new_d = on_device(d_new);
      dropin_backward_cpu(p, dy.data(), beta, d_skip.data(), beta, d_new.data());
      dropin_backward_cuda(p, dy_d.data(), beta, d_skip_d.data(), beta, d_new_d.data(), cuda_stream());
      EXPECT_TRUE(all_close(d_skip, d_skip_d.to_host(), 0.f, 0.f)) << "d_skip, beta " << beta;
      EXPECT_TRUE(all_close(d_new, d_new_d.to_host(), 0.f, 0.f)) << "d_new, beta " << beta;
    }
    // One gradient only.
    std::vector<float> only(count, 0.f);
    Tensor dy_d = on_device(dy), only_d = on_device(only);
    dropin_backward_cpu(p, dy.data(), 0.f, nullptr, 0.f, only.data());
    dropin_backward_cuda(p, dy_d.data(), 0.f, nullptr, 0.f, only_d.data(), cuda_stream());
    EXPECT_TRUE(all_close(only, only_d.to_host(), 0.f, 0.f)) << "d_new only";
  }
}

// Width growth: the active channels pass, the others are zero, forward and backward (beta 0 and 1).
TEST(CudaGrow, MatchesCpuExactly) {
  DN_REQUIRE_CUDA();
  const GrowParams cases[] = {{3, 7, 33 * 35, 2}, {2, 5, 7, 5}, {4, 13, 1, 1}, {64, 20, 24 * 24, 13}, {5, 9, 3, 0}};
  for (const GrowParams& p : cases) {
    SCOPED_TRACE(fmt::format("n {} c {} hw {} active {}", p.n, p.c, p.hw, p.active));
    const int64_t count = p.n * p.c * p.hw;
    const std::vector<float> x = random_vector(count, 1), dy = random_vector(count, 2), acc = random_vector(count, 3);
    std::vector<float> y(count);
    grow_forward_cpu(p, x.data(), y.data());
    Tensor x_d = on_device(x), y_d(Shape{count}, Device::cuda());
    grow_forward_cuda(p, x_d.data(), y_d.data(), cuda_stream());
    EXPECT_TRUE(all_close(y, y_d.to_host(), 0.f, 0.f)) << "forward";
    for (float beta : {0.f, 1.f}) {
      std::vector<float> dx = beta == 0.f ? std::vector<float>(count, 0.f) : acc;
      Tensor dy_d = on_device(dy), dx_d = on_device(dx);
      grow_backward_cpu(p, dy.data(), beta, dx.data());
      grow_backward_cuda(p, dy_d.data(), beta, dx_d.data(), cuda_stream());
      EXPECT_TRUE(all_close(dx, dx_d.to_host(), 0.f, 0.f)) << "backward, beta " << beta;
    }
  }
}

}  // namespace
}  // namespace dropnet
