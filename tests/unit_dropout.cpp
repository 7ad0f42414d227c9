// Dropout kernels on the CPU: keep rate (binomial z-test), inverted scaling, the backward mask is
// the forward mask, ratio 0 is the identity, determinism in (seed, stream, step).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/dropout.h"
#include "kernels/dropout_math.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

using testing::random_vector;

DropoutParams params(int64_t count, float ratio, uint64_t seed = 42, uint32_t stream = 2, uint32_t step = 9) {
  DropoutParams p;
  p.count = count;
  p.ratio = ratio;
  p.seed = seed;
  p.stream = stream;
  p.step = step;
  return p;
}

// x is non-zero everywhere, so y != 0 exactly where the element was kept.
std::vector<float> nonzero_input(int64_t count, uint64_t seed) {
  std::vector<float> x = random_vector(count, seed, 0.5f, 2.f);
  for (int64_t i = 0; i < count; i += 2) x[i] = -x[i];
  return x;
}

TEST(Dropout, KeepRateAndScaling) {
  const int64_t count = 1 << 20;
  const std::vector<float> x = nonzero_input(count, 5);
  for (float ratio : {0.1f, 0.5f, 0.9f}) {
    SCOPED_TRACE("ratio = " + std::to_string(ratio));
    DropoutParams p = params(count, ratio);
    std::vector<float> y(count);
    dropout_forward_cpu(p, x.data(), y.data());
    const float scale = 1.f / (1.f - ratio);
    double kept = 0;
    for (int64_t i = 0; i < count; ++i) {
      if (y[i] != 0.f) {
        ASSERT_EQ(y[i], x[i] * scale) << i;
        ++kept;
      }
      ASSERT_EQ(y[i] != 0.f, dropout_keep(p, i)) << i;
    }
    const double q = 1.0 - ratio, z = (kept - count * q) / std::sqrt(count * q * (1 - q));
    EXPECT_LT(std::fabs(z), 5.0) << kept << " of " << count << " kept";
  }
}

TEST(Dropout, BackwardUsesTheForwardMask) {
  const int64_t count = 10007;
  const std::vector<float> x = nonzero_input(count, 6), dy = nonzero_input(count, 7);
  DropoutParams p = params(count, 0.3f);
  const float scale = 1.f / 0.7f;
  std::vector<float> y(count), dx(count, std::numeric_limits<float>::quiet_NaN());
  dropout_forward_cpu(p, x.data(), y.data());
  dropout_backward_cpu(p, dy.data(), 0.f, dx.data());  // beta 0: NaN is not read
  int64_t kept = 0;
  for (int64_t i = 0; i < count; ++i) {
    ASSERT_EQ(y[i] != 0.f, dx[i] != 0.f) << i;
    ASSERT_EQ(dx[i], y[i] != 0.f ? dy[i] * scale : 0.f) << i;
    kept += y[i] != 0.f;
  }
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, count);
  // beta 1 accumulates.
  std::vector<float> acc0 = random_vector(count, 8), acc = acc0;
  dropout_backward_cpu(p, dy.data(), 1.f, acc.data());
  for (int64_t i = 0; i < count; ++i) ASSERT_EQ(acc[i], acc0[i] + dx[i]) << i;
  // In place (y aliases x) gives the same result.
  std::vector<float> inplace = x;
  dropout_forward_cpu(p, inplace.data(), inplace.data());
  EXPECT_EQ(inplace, y);
}

TEST(Dropout, RatioZeroIsIdentity) {
  const int64_t count = 4097;
  const std::vector<float> x = random_vector(count, 9), dy = random_vector(count, 10);
  DropoutParams p = params(count, 0.f);
  std::vector<float> y(count), dx(count);
  dropout_forward_cpu(p, x.data(), y.data());
  dropout_backward_cpu(p, dy.data(), 0.f, dx.data());
  EXPECT_EQ(y, x);
  EXPECT_EQ(dx, dy);
}

TEST(Dropout, MaskIsPureFunctionOfSeedStreamStep) {
  const int64_t count = 1 << 14;
  const std::vector<float> x = nonzero_input(count, 11);
  auto mask = [&](const DropoutParams& p) {
    std::vector<float> y(count);
    dropout_forward_cpu(p, x.data(), y.data());
    std::vector<int> m(count);
    for (int64_t i = 0; i < count; ++i) m[i] = y[i] != 0.f;
    return m;
  };
  const std::vector<int> base = mask(params(count, 0.5f, 42, 2, 9));
  EXPECT_EQ(base, mask(params(count, 0.5f, 42, 2, 9)));
  for (auto other : {params(count, 0.5f, 43, 2, 9), params(count, 0.5f, 42, 3, 9), params(count, 0.5f, 42, 2, 10)}) {
    const std::vector<int> m = mask(other);
    int64_t differ = 0;
    for (int64_t i = 0; i < count; ++i) differ += m[i] != base[i];
    const double f = static_cast<double>(differ) / count;  // independent masks: 2 p (1 - p) = 0.5
    EXPECT_GT(f, 0.45) << "seed " << other.seed << " stream " << other.stream << " step " << other.step;
    EXPECT_LT(f, 0.55);
  }
}

// The CPU draws uniforms 64 at a time; they must be philox_uniform's values (the CUDA path),
// including past 2^32 Philox blocks where the counter's second word is used.
TEST(Dropout, UniformGroupsMatchPhiloxUniform) {
  for (uint64_t group : {uint64_t{0}, uint64_t{1}, uint64_t{12345}, (uint64_t{1} << 28) + 3, (uint64_t{1} << 30) + 7}) {
    float u[kPhiloxGroup];
    philox_uniform_group(0xfeedbeefcafeull, 4, 99, group, u);
    for (int j = 0; j < kPhiloxGroup; ++j)
      ASSERT_EQ(u[j], philox_uniform(0xfeedbeefcafeull, 4, 99, group * kPhiloxGroup + j)) << group << " " << j;
  }
}

TEST(Dropout, RejectsBadRatio) {
  std::vector<float> x(4), y(4);
  EXPECT_THROW(dropout_forward_cpu(params(4, 1.f), x.data(), y.data()), Error);
  EXPECT_THROW(dropout_forward_cpu(params(4, -0.1f), x.data(), y.data()), Error);
  EXPECT_THROW(dropout_backward_cpu(params(4, std::numeric_limits<float>::quiet_NaN()), x.data(), 0.f, y.data()),
               Error);
  EXPECT_THROW(dropout_forward_cpu(params(-1, 0.5f), x.data(), y.data()), Error);
}

}  // namespace
}  // namespace dropnet
