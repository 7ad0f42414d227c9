// DropIn kernels on the CPU: the gradual mask of paper eq. 1 (exact unit counts, C-order, the same
// for every sample), channel units, gradient routing, the Bernoulli keep rate of regularize mode,
// mask determinism in (seed, stream, step), and the expectation at TEST.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/dropin.h"
#include "kernels/dropin_math.h"
#include "kernels/store_grad.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

using testing::random_vector;

// skip is negative and new positive everywhere, so y says which input each element came from.
struct Inputs {
  std::vector<float> skip, new_;
  explicit Inputs(int64_t count) : skip(count), new_(count) {
    for (int64_t i = 0; i < count; ++i) {
      skip[i] = -1.f - static_cast<float>(i);
      new_[i] = 1.f + static_cast<float>(i);
    }
  }
};

// r per element as seen through the forward pass (1 = took new, 0 = took skip).
std::vector<int> forward_mask(const DropinParams& p) {
  const int64_t count = p.n * p.c * p.hw;
  Inputs in(count);
  std::vector<float> y(count);
  dropin_forward_cpu(p, in.skip.data(), in.new_.data(), y.data());
  std::vector<int> r(count);
  for (int64_t i = 0; i < count; ++i) {
    EXPECT_TRUE(y[i] == in.new_[i] || y[i] == in.skip[i]) << "element " << i << " mixed: " << y[i];
    r[i] = y[i] == in.new_[i] ? 1 : 0;
  }
  return r;
}

DropinParams gradual(int64_t n, int64_t c, int64_t hw, float p, DropinUnit unit = DropinUnit::Element) {
  DropinParams d;
  d.mode = DropinMode::Gradual;
  d.unit = unit;
  d.n = n;
  d.c = c;
  d.hw = hw;
  d.p = p;
  return d;
}

DropinParams regularize(int64_t n, int64_t c, int64_t hw, float p, bool sample, uint64_t seed = 1234,
                        uint32_t stream = 3, uint32_t step = 17, DropinUnit unit = DropinUnit::Element) {
  DropinParams d;
  d.mode = DropinMode::Regularize;
  d.unit = unit;
  d.n = n;
  d.c = c;
  d.hw = hw;
  d.p = p;
  d.sample = sample;
  d.seed = seed;
  d.stream = stream;
  d.step = step;
  return d;
}

TEST(DropinGradual, ScheduleP) {
  EXPECT_EQ(dropin_gradual_p(0, 100, 40), 0.f);
  EXPECT_EQ(dropin_gradual_p(99, 100, 40), 0.f);
  EXPECT_EQ(dropin_gradual_p(100, 100, 40), 0.f);
  EXPECT_EQ(dropin_gradual_p(110, 100, 40), 0.25f);
  EXPECT_EQ(dropin_gradual_p(120, 100, 40), 0.5f);
  EXPECT_EQ(dropin_gradual_p(140, 100, 40), 1.f);
  EXPECT_EQ(dropin_gradual_p(100000, 100, 40), 1.f);
  EXPECT_FLOAT_EQ(dropin_gradual_p(101, 100, 3), 1.f / 3.f);
  // Non-decreasing over the ramp.
  for (int64_t t = 0; t < 200; ++t) EXPECT_LE(dropin_gradual_p(t, 50, 97), dropin_gradual_p(t + 1, 50, 97));
}

// n = 3 x 5 x 7 = 105 units per sample, two samples; start 100, length 40.
TEST(DropinGradual, ExactUnitCountsAtMilestones) {
  const int64_t N = 2, C = 3, HW = 35, units = C * HW;
  struct Case {
    int64_t t;
    int64_t from_skip;  // floor(q * 105)
  };
  const Case cases[] = {{0, 105}, {100, 105}, {110, 78}, {120, 52}, {140, 0}, {141, 0}, {5000, 0}};
  for (const Case& cs : cases) {
    SCOPED_TRACE("t = " + std::to_string(cs.t));
    DropinParams p = gradual(N, C, HW, dropin_gradual_p(cs.t, 100, 40));
    EXPECT_EQ(dropin_units_from_new(p), units - cs.from_skip);
    std::vector<int> r = forward_mask(p);
    for (int64_t s = 0; s < N; ++s)
      for (int64_t l = 0; l < units; ++l)
        ASSERT_EQ(r[s * units + l], l < cs.from_skip ? 0 : 1) << "sample " << s << " unit " << l;
    for (int64_t l = 0; l < units; ++l) EXPECT_EQ(dropin_r(p, 1, l), static_cast<float>(r[l]));
  }
}

// Over the whole ramp: the count follows floor(q * n) (within one unit of the exact rational value
// (d - (t - s)) * n / d, the float p(t) being the only difference), never increases, and the mask
// is a C-order prefix identical for every sample.
TEST(DropinGradual, RampIsMonotonePrefix) {
  const int64_t N = 3, C = 4, HW = 25, units = C * HW, start = 10, length = 33;
  int64_t prev = units + 1;
  for (int64_t t = 0; t <= start + length + 3; ++t) {
    const float pt = dropin_gradual_p(t, start, length);
    DropinParams p = gradual(N, C, HW, pt);
    const int64_t skip_units = units - dropin_units_from_new(p);
    const int64_t dt = std::min<int64_t>(std::max<int64_t>(t - start, 0), length);
    const int64_t exact = (length - dt) * units / length;
    EXPECT_LE(std::llabs(skip_units - exact), 1) << "t " << t;
    EXPECT_EQ(skip_units, static_cast<int64_t>(std::floor((1.0 - static_cast<double>(pt)) * units)));
    EXPECT_LE(skip_units, prev);
    prev = skip_units;
    std::vector<int> r = forward_mask(p);
    for (int64_t s = 0; s < N; ++s)
      for (int64_t l = 0; l < units; ++l) ASSERT_EQ(r[s * units + l], l < skip_units ? 0 : 1);
  }
  EXPECT_EQ(prev, 0);
}

TEST(DropinGradual, ChannelUnitSwitchesWholeMaps) {
  const int64_t N = 2, C = 5, HW = 7;
  // p = 0.5: floor(0.5 * 5) = 2 maps from skip; p = 0.25: floor(3.75) = 3; p = 0.9: floor(0.5) = 0.
  const std::pair<float, int64_t> cases[] = {{0.f, 5}, {0.25f, 3}, {0.5f, 2}, {0.9f, 0}, {1.f, 0}};
  for (auto [pv, maps_from_skip] : cases) {
    SCOPED_TRACE("p = " + std::to_string(pv));
    DropinParams p = gradual(N, C, HW, pv, DropinUnit::Channel);
    EXPECT_EQ(dropin_units_from_new(p), C - maps_from_skip);
    std::vector<int> r = forward_mask(p);
    for (int64_t s = 0; s < N; ++s)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t k = 0; k < HW; ++k)
          ASSERT_EQ(r[(s * C + c) * HW + k], c < maps_from_skip ? 0 : 1) << "sample " << s << " map " << c;
  }
}

// d_new + d_skip == dy and d_new == r * dy, exactly, overwriting (beta 0: NaN-filled buffers are
// not read) and accumulating (beta 1); the backward mask is the forward mask (regenerated).
void check_gradient_routing(const DropinParams& p) {
  const int64_t count = p.n * p.c * p.hw;
  std::vector<int> r = forward_mask(p);
  std::vector<float> dy = random_vector(count, 11, 0.5f, 2.f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> d_new(count, nan), d_skip(count, nan);
  dropin_backward_cpu(p, dy.data(), 0.f, d_skip.data(), 0.f, d_new.data());
  int64_t routed_new = 0;
  for (int64_t i = 0; i < count; ++i) {
    ASSERT_EQ(d_new[i] + d_skip[i], dy[i]) << i;
    ASSERT_EQ(d_new[i], r[i] ? dy[i] : 0.f) << i;
    routed_new += r[i];
  }
  if (p.mode == DropinMode::Gradual && p.p > 0.f && p.p < 1.f) {
    EXPECT_GT(routed_new, 0);
    EXPECT_LT(routed_new, count);
  }
  std::vector<float> a0 = random_vector(count, 12), b0 = random_vector(count, 13);
  std::vector<float> a = a0, b = b0;
  dropin_backward_cpu(p, dy.data(), 1.f, a.data(), 1.f, b.data());
  for (int64_t i = 0; i < count; ++i) {
    ASSERT_EQ(a[i], a0[i] + (r[i] ? 0.f : dy[i])) << i;
    ASSERT_EQ(b[i], b0[i] + (r[i] ? dy[i] : 0.f)) << i;
  }
  // One gradient only: the other pointer is null.
  std::vector<float> only(count, nan);
  dropin_backward_cpu(p, dy.data(), 0.f, nullptr, 0.f, only.data());
  for (int64_t i = 0; i < count; ++i) ASSERT_EQ(only[i], d_new[i]);
  dropin_backward_cpu(p, dy.data(), 0.f, only.data(), 0.f, nullptr);
  for (int64_t i = 0; i < count; ++i) ASSERT_EQ(only[i], d_skip[i]);
}

TEST(DropinBackward, GradientRoutingGradual) {
  check_gradient_routing(gradual(3, 4, 9, 0.37f));
  check_gradient_routing(gradual(3, 4, 9, 0.6f, DropinUnit::Channel));
  check_gradient_routing(gradual(2, 4, 9, 0.f));
  check_gradient_routing(gradual(2, 4, 9, 1.f));
}

TEST(DropinBackward, GradientRoutingRegularize) {
  check_gradient_routing(regularize(3, 4, 9, 0.5f, true));
  check_gradient_routing(regularize(3, 4, 9, 0.3f, true, 7, 1, 2, DropinUnit::Channel));
}

// Once p = 1 the layer is the identity on `new` and skip gets no gradient.
TEST(DropinGradual, FullyDroppedInIsIdentityOnNew) {
  DropinParams p = gradual(2, 3, 5, 1.f);
  Inputs in(30);
  std::vector<float> y(30), dy = random_vector(30, 3), d_skip(30), d_new(30);
  dropin_forward_cpu(p, in.skip.data(), in.new_.data(), y.data());
  EXPECT_EQ(y, in.new_);
  dropin_backward_cpu(p, dy.data(), 0.f, d_skip.data(), 0.f, d_new.data());
  EXPECT_EQ(d_new, dy);
  EXPECT_EQ(d_skip, std::vector<float>(30, 0.f));
}

// Binomial z-test of the fraction of units taking `new` over >= 1e6 draws.
void keep_rate_z_test(const DropinParams& p) {
  std::vector<int> r = forward_mask(p);
  const int64_t per_unit = p.unit == DropinUnit::Channel ? p.hw : 1;
  const double draws = static_cast<double>(r.size() / per_unit);
  ASSERT_GE(draws, 1e6);
  double taken = 0;
  for (size_t i = 0; i < r.size(); i += per_unit) {
    taken += r[i];
    for (int64_t k = 1; k < per_unit; ++k) ASSERT_EQ(r[i + k], r[i]) << "channel unit split at " << i;
  }
  const double pp = p.p;
  const double z = (taken - draws * pp) / std::sqrt(draws * pp * (1 - pp));
  EXPECT_LT(std::fabs(z), 5.0) << "p " << pp << ": " << taken << " of " << draws << " took new";
}

TEST(DropinRegularize, KeepRateMatchesP) {
  for (float pv : {0.1f, 0.5f, 0.9f}) {
    SCOPED_TRACE("p = " + std::to_string(pv));
    keep_rate_z_test(regularize(4, 16, 16384, pv, true, 99, 5, 123));
    keep_rate_z_test(regularize(2000, 500, 2, pv, true, 99, 5, 123, DropinUnit::Channel));
  }
}

TEST(DropinRegularize, DifferentAcrossSamplesAndEdgeProbabilities) {
  // Samples draw independently (not one mask for the batch as in gradual mode).
  DropinParams p = regularize(2, 8, 64, 0.5f, true);
  std::vector<int> r = forward_mask(p);
  int differ = 0;
  for (int i = 0; i < 512; ++i) differ += r[i] != r[512 + i];
  EXPECT_GT(differ, 150);
  EXPECT_LT(differ, 362);
  // p = 0 always takes skip, p = 1 always new.
  for (int v : forward_mask(regularize(2, 8, 64, 0.f, true))) ASSERT_EQ(v, 0);
  for (int v : forward_mask(regularize(2, 8, 64, 1.f, true))) ASSERT_EQ(v, 1);
}

double fraction_different(const std::vector<int>& a, const std::vector<int>& b) {
  int64_t d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += a[i] != b[i];
  return static_cast<double>(d) / a.size();
}

TEST(DropinRegularize, MaskIsPureFunctionOfSeedStreamStep) {
  const int64_t N = 4, C = 8, HW = 256;
  std::vector<int> base = forward_mask(regularize(N, C, HW, 0.5f, true, 1234, 3, 17));
  EXPECT_EQ(base, forward_mask(regularize(N, C, HW, 0.5f, true, 1234, 3, 17)));
  // Expected disagreement between independent masks: 2 p (1 - p) = 0.5.
  for (auto other : {regularize(N, C, HW, 0.5f, true, 1235, 3, 17),
                     regularize(N, C, HW, 0.5f, true, 1234ull | (1ull << 40), 3, 17),
                     regularize(N, C, HW, 0.5f, true, 1234, 4, 17),
                     regularize(N, C, HW, 0.5f, true, 1234, 3, 18)}) {
    const double f = fraction_different(base, forward_mask(other));
    EXPECT_GT(f, 0.45) << "seed " << other.seed << " stream " << other.stream << " step " << other.step;
    EXPECT_LT(f, 0.55);
  }
  // The Channel mask uses one draw per (sample, map).
  std::vector<int> ch = forward_mask(regularize(N, C, HW, 0.5f, true, 1234, 3, 17, DropinUnit::Channel));
  for (int64_t s = 0; s < N; ++s)
    for (int64_t c = 0; c < C; ++c)
      EXPECT_EQ(ch[(s * C + c) * HW],
                philox_uniform(1234, 3, 17, static_cast<uint64_t>(s * C + c)) < 0.5f ? 1 : 0);
}

TEST(DropinRegularize, ExpectationMode) {
  const int64_t N = 2, C = 3, HW = 11, count = N * C * HW;
  for (float pv : {0.f, 0.3f, 0.5f, 1.f}) {
    DropinParams p = regularize(N, C, HW, pv, false);
    std::vector<float> skip = random_vector(count, 1), nw = random_vector(count, 2), y(count);
    dropin_forward_cpu(p, skip.data(), nw.data(), y.data());
    std::vector<float> ref(count), dy = random_vector(count, 3), ref_new(count), ref_skip(count);
    for (int64_t i = 0; i < count; ++i) {
      ref[i] = pv * nw[i] + (1 - pv) * skip[i];
      ref_new[i] = pv * dy[i];
      ref_skip[i] = (1 - pv) * dy[i];
    }
    EXPECT_TRUE(testing::all_close(ref, y, 1e-6f, 1e-6f)) << "p " << pv;
    std::vector<float> d_new(count), d_skip(count);
    dropin_backward_cpu(p, dy.data(), 0.f, d_skip.data(), 0.f, d_new.data());
    EXPECT_TRUE(testing::all_close(ref_new, d_new, 1e-6f, 1e-6f));
    EXPECT_TRUE(testing::all_close(ref_skip, d_skip, 1e-6f, 1e-6f));
  }
}

// The CPU loops are organised per mode; the CUDA kernels evaluate dropin_r per element. Both must
// give every element the same r: compare the CPU results with the per-element rule, bit for bit.
TEST(DropinCpu, LoopsMatchPerElementRule) {
  const DropinParams cases[] = {
      gradual(3, 7, 5003, 0.41f),  // samples spanning several 16384-element chunks, odd sizes
      gradual(2, 9, 13, 0.5f, DropinUnit::Channel),
      gradual(1, 1, 1, 0.5f),
      regularize(3, 5, 67, 0.37f, true),  // total not a multiple of 64
      regularize(2, 11, 9, 0.6f, true, 5, 6, 7, DropinUnit::Channel),
      regularize(2, 3, 5, 0.25f, false),
  };
  for (const DropinParams& p : cases) {
    const int64_t per_sample = p.c * p.hw, count = p.n * per_sample;
    const std::vector<float> skip = random_vector(count, 21), nw = random_vector(count, 22), dy = random_vector(count, 23);
    const std::vector<float> acc_skip = random_vector(count, 24), acc_new = random_vector(count, 25);
    std::vector<float> y_ref(count), d_skip_ref(count), d_new_ref(count);
    for (int64_t s = 0; s < p.n; ++s)
      for (int64_t l = 0; l < per_sample; ++l) {
        const int64_t i = s * per_sample + l;
        const float r = dropin_r(p, s, l);
        y_ref[i] = dropin_mix(r, skip[i], nw[i]);
        d_skip_ref[i] = acc_skip[i];
        d_new_ref[i] = acc_new[i];
        store_grad(d_skip_ref[i], 1.f, dropin_grad_share(1.f - r, dy[i]));
        store_grad(d_new_ref[i], 1.f, dropin_grad_share(r, dy[i]));
      }
    std::vector<float> y(count), d_skip = acc_skip, d_new = acc_new;
    dropin_forward_cpu(p, skip.data(), nw.data(), y.data());
    dropin_backward_cpu(p, dy.data(), 1.f, d_skip.data(), 1.f, d_new.data());
    EXPECT_TRUE(testing::all_close(y_ref, y, 0.f, 0.f)) << "mode " << static_cast<int>(p.mode) << " unit "
                                                       << static_cast<int>(p.unit) << " sample " << p.sample;
    EXPECT_TRUE(testing::all_close(d_skip_ref, d_skip, 0.f, 0.f));
    EXPECT_TRUE(testing::all_close(d_new_ref, d_new, 0.f, 0.f));
  }
}

TEST(DropinParamsCheck, RejectsBadValues) {
  std::vector<float> a(8), b(8), y(8);
  DropinParams p = gradual(1, 2, 4, 1.5f);
  EXPECT_THROW(dropin_forward_cpu(p, a.data(), b.data(), y.data()), Error);
  p.p = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(dropin_forward_cpu(p, a.data(), b.data(), y.data()), Error);
  p.p = -0.1f;
  EXPECT_THROW(dropin_backward_cpu(p, a.data(), 0.f, b.data(), 0.f, y.data()), Error);
  p = gradual(1, -2, 4, 0.5f);
  EXPECT_THROW(dropin_forward_cpu(p, a.data(), b.data(), y.data()), Error);
  EXPECT_THROW(dropin_units_from_new(regularize(1, 2, 4, 0.5f, true)), Error);
}

}  // namespace
}  // namespace dropnet
