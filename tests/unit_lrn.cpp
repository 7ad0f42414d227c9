// LRN kernels (CPU) against Caffe's formulas: a double-precision reference written here, an
// explicit-Jacobian reference for the backward pass, finite-difference gradients, beta
// accumulation, and parameter validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/lrn.h"
#include "kernels/lrn_math.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

using testing::all_close;
using testing::random_vector;

std::string name(const LrnParams& p) {
  return std::string(p.across_channels ? "across" : "within") + " n" + std::to_string(p.local_size) +
         " alpha " + std::to_string(p.alpha) + " beta " + std::to_string(p.beta) + " k " +
         std::to_string(p.k) + " in (" + std::to_string(p.n) + "," + std::to_string(p.c) + "," +
         std::to_string(p.h) + "," + std::to_string(p.w) + ")";
}

int64_t count(const LrnParams& p) { return p.n * p.c * p.h * p.w; }

// The cells of output j's window (zero padding = cells outside are absent), as flat indices.
std::vector<int64_t> window_of(const LrnParams& p, int64_t j) {
  const int64_t w = j % p.w, h = (j / p.w) % p.h, c = (j / (p.w * p.h)) % p.c, n = j / (p.w * p.h * p.c);
  const int64_t half = p.local_size / 2;
  std::vector<int64_t> cells;
  if (p.across_channels) {
    for (int64_t cc = c - half; cc <= c + half; ++cc)
      if (cc >= 0 && cc < p.c) cells.push_back(((n * p.c + cc) * p.h + h) * p.w + w);
  } else {
    for (int64_t hh = h - half; hh <= h + half; ++hh)
      for (int64_t ww = w - half; ww <= w + half; ++ww)
        if (hh >= 0 && hh < p.h && ww >= 0 && ww < p.w)
          cells.push_back(((n * p.c + c) * p.h + hh) * p.w + ww);
  }
  return cells;
}

// Caffe's definitions in double: across, k + alpha/n * sum; within, 1 + alpha/n^2 * sum.
void ref_forward(const LrnParams& p, const std::vector<float>& x, std::vector<double>* y,
                 std::vector<double>* scale) {
  const double coeff = p.across_channels ? double(p.alpha) / p.local_size
                                         : double(p.alpha) / (p.local_size * p.local_size);
  const double k = p.across_channels ? p.k : 1.0;
  y->assign(x.size(), 0.0);
  scale->assign(x.size(), 0.0);
  for (int64_t j = 0; j < count(p); ++j) {
    double sum = 0;
    for (int64_t m : window_of(p, j)) sum += double(x[m]) * x[m];
    (*scale)[j] = k + coeff * sum;
    (*y)[j] = x[j] * std::pow((*scale)[j], -double(p.beta));
  }
}

// dx_i = sum_j dy_j dy_j/dx_i from the Jacobian of the definition, scattered per output j:
// dy_j/dx_i = [i == j] s_j^-beta - beta x_j s_j^(-beta-1) * coeff * 2 x_i  for i in W(j).
std::vector<float> ref_backward(const LrnParams& p, const std::vector<float>& x,
                                const std::vector<float>& dy) {
  std::vector<double> y, s;
  ref_forward(p, x, &y, &s);
  const double coeff = p.across_channels ? double(p.alpha) / p.local_size
                                         : double(p.alpha) / (p.local_size * p.local_size);
  const double b = p.beta;
  std::vector<double> dx(x.size(), 0.0);
  for (int64_t j = 0; j < count(p); ++j) {
    dx[j] += dy[j] * std::pow(s[j], -b);
    const double common = dy[j] * -b * x[j] * std::pow(s[j], -b - 1) * coeff * 2;
    for (int64_t i : window_of(p, j)) dx[i] += common * x[i];
  }
  return {dx.begin(), dx.end()};
}

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

LrnParams lrn(bool across, int size, float alpha, float beta, float k, int64_t n, int64_t c,
              int64_t h, int64_t w) {
  return LrnParams{across, size, alpha, beta, k, n, c, h, w};
}

const std::vector<LrnParams>& cases() {
  static const std::vector<LrnParams> v = {
      lrn(true, 5, 1e-4f, 0.75f, 1.f, 2, 8, 5, 6),      // AlexNet norm1/norm2
      lrn(false, 3, 5e-5f, 0.75f, 1.f, 2, 3, 7, 6),     // cifar10_full norm1/norm2
      lrn(true, 3, 0.1f, 0.75f, 2.f, 2, 6, 4, 5),       // large alpha: the sum matters
      lrn(true, 5, 0.1f, 0.6f, 1.5f, 1, 9, 3, 7),       // beta != 0.75: the powf path
      lrn(true, 5, 0.3f, 0.75f, 1.f, 1, 2, 3, 3),       // window wider than the channels
      lrn(false, 5, 0.1f, 0.75f, 1.f, 1, 2, 8, 9),
      lrn(false, 3, 0.5f, 0.6f, 1.f, 2, 2, 5, 4),
      lrn(false, 7, 0.2f, 0.75f, 1.f, 1, 1, 3, 4),      // window wider than the plane
      lrn(true, 1, 0.2f, 0.75f, 1.f, 1, 3, 4, 4),       // local_size 1
      lrn(false, 1, 0.2f, 0.9f, 1.f, 1, 3, 4, 4),
      lrn(true, 5, 0.1f, 0.75f, 1.f, 3, 7, 1, 1),       // 1x1 planes (fc-like)
  };
  return v;
}

TEST(LrnForward, MatchesReference) {
  uint64_t seed = 10;
  for (const LrnParams& p : cases()) {
    SCOPED_TRACE(name(p));
    const auto x = random_vector(count(p), ++seed, -2.f, 2.f);
    std::vector<double> y_ref, s_ref;
    ref_forward(p, x, &y_ref, &s_ref);
    std::vector<float> y(x.size(), std::nanf("")), s(x.size(), std::nanf(""));
    lrn_forward_cpu(p, x.data(), y.data(), s.data());
    EXPECT_TRUE(all_close(to_float(s_ref), s, 0.f, 1e-6f)) << "scale";
    EXPECT_TRUE(all_close(to_float(y_ref), y, 1e-7f, 2e-6f)) << "y";
  }
}

// The CPU's SIMD passes compute exactly what the scalar lrn_math.h functions (the CUDA
// kernels' arithmetic) give for the CPU's own scale: y == lrn_output(x, lrn_pow_neg(scale)).
TEST(LrnForward, EqualsScalarMathBitwise) {
  uint64_t seed = 60;
  for (const LrnParams& p : cases()) {
    SCOPED_TRACE(name(p));
    const auto x = random_vector(count(p), ++seed, -2.f, 2.f);
    std::vector<float> y(x.size()), s(x.size());
    lrn_forward_cpu(p, x.data(), y.data(), s.data());
    for (size_t i = 0; i < x.size(); ++i)
      ASSERT_EQ(y[i], lrn_output(x[i], lrn_pow_neg(s[i], p.beta))) << "element " << i;
  }
}

TEST(LrnForward, WithinChannelIgnoresK) {
  LrnParams p = lrn(false, 3, 0.3f, 0.75f, 1.f, 1, 2, 5, 5);
  const auto x = random_vector(count(p), 3);
  std::vector<float> y1(x.size()), s1(x.size()), y2(x.size()), s2(x.size());
  lrn_forward_cpu(p, x.data(), y1.data(), s1.data());
  p.k = 7.f;
  lrn_forward_cpu(p, x.data(), y2.data(), s2.data());
  EXPECT_EQ(y1, y2);
  EXPECT_EQ(s1, s2);
}

TEST(LrnForward, HandComputedValues) {
  // Across, n = 3, one pixel, channels x = (1, 2, 3), alpha 0.3, k 2, beta 0.5:
  // scale = 2 + 0.1 * (1+4, 1+4+9, 4+9) = (2.5, 3.4, 3.3).
  {
    const LrnParams p = lrn(true, 3, 0.3f, 0.5f, 2.f, 1, 3, 1, 1);
    const std::vector<float> x = {1.f, 2.f, 3.f};
    std::vector<float> y(3), s(3);
    lrn_forward_cpu(p, x.data(), y.data(), s.data());
    EXPECT_FLOAT_EQ(s[0], 2.5f);
    EXPECT_FLOAT_EQ(s[1], 3.4f);
    EXPECT_FLOAT_EQ(s[2], 3.3f);
    EXPECT_FLOAT_EQ(y[1], 2.f / std::sqrt(3.4f));
  }
  // Within, n = 3, a 2x2 plane of 1, 2, 3, 4: every window holds all four cells (sum 30), and
  // the divisor is n^2 = 9 regardless of the clipping: scale = 1 + 0.9 / 9 * 30 = 4.
  {
    const LrnParams p = lrn(false, 3, 0.9f, 0.75f, 5.f, 1, 1, 2, 2);
    const std::vector<float> x = {1.f, 2.f, 3.f, 4.f};
    std::vector<float> y(4), s(4);
    lrn_forward_cpu(p, x.data(), y.data(), s.data());
    for (int i = 0; i < 4; ++i) {
      EXPECT_FLOAT_EQ(s[i], 4.f);
      EXPECT_FLOAT_EQ(y[i], x[i] * std::pow(4.f, -0.75f));
    }
  }
}

TEST(LrnMath, PowNegBetaFastPathIsAccurate) {
  for (float s = 1e-3f; s < 1e4f; s *= 1.0137f) {
    for (float beta : {0.75f, 0.6f}) {
      const double ref = std::pow(double(s), -double(beta));
      const float got = lrn_pow_neg(s, beta);
      // Four correctly rounded operations: relative error <= 4.5 * 2^-24 = 2.7e-7.
      EXPECT_LE(std::fabs(got - ref), 2.7e-7 * ref) << "s " << s << " beta " << beta;
    }
  }
}

TEST(LrnBackward, MatchesJacobianReference) {
  uint64_t seed = 200;
  for (const LrnParams& p : cases()) {
    SCOPED_TRACE(name(p));
    const auto x = random_vector(count(p), ++seed, -2.f, 2.f);
    const auto dy = random_vector(count(p), ++seed);
    std::vector<float> y(x.size()), s(x.size()), dx(x.size(), std::nanf(""));
    lrn_forward_cpu(p, x.data(), y.data(), s.data());
    lrn_backward_cpu(p, x.data(), y.data(), s.data(), dy.data(), 0.f, dx.data());
    EXPECT_TRUE(all_close(ref_backward(p, x, dy), dx, 1e-6f, 1e-5f));
  }
}

// Central differences of L = sum(w * y), Caffe's step 1e-2 and threshold 1e-3 * max(|a|, |b|, 1).
TEST(LrnBackward, FiniteDifferenceGradient) {
  uint64_t seed = 400;
  double worst = 0;  // the largest |analytic - numeric| as a fraction of its tolerance
  for (const LrnParams& p : cases()) {
    SCOPED_TRACE(name(p));
    const int64_t nx = count(p);
    const auto x = random_vector(nx, ++seed);
    const auto w = random_vector(nx, ++seed);
    std::vector<float> y(static_cast<size_t>(nx)), s(static_cast<size_t>(nx));
    auto loss = [&](const std::vector<float>& xx) {
      lrn_forward_cpu(p, xx.data(), y.data(), s.data());
      double l = 0;
      for (int64_t i = 0; i < nx; ++i) l += double(w[i]) * y[i];
      return l;
    };
    loss(x);
    std::vector<float> dx(static_cast<size_t>(nx));
    lrn_backward_cpu(p, x.data(), y.data(), s.data(), w.data(), 0.f, dx.data());
    for (int64_t i = 0; i < nx; ++i) {
      std::vector<float> xp = x, xm = x;
      xp[i] += 1e-2f;
      xm[i] -= 1e-2f;
      const double num = (loss(xp) - loss(xm)) / (double(xp[i]) - double(xm[i]));
      const double a = dx[i];
      const double tol = 1e-3 * std::max({std::fabs(a), std::fabs(num), 1.0});
      EXPECT_LE(std::fabs(a - num), tol) << "x[" << i << "]: analytic " << a << " numeric " << num;
      worst = std::max(worst, std::fabs(a - num) / tol);
    }
  }
  RecordProperty("worst_fraction_of_tolerance", std::to_string(worst));
}

TEST(LrnBackward, BetaAccumulates) {
  uint64_t seed = 700;
  for (const LrnParams& p : cases()) {
    SCOPED_TRACE(name(p));
    const auto x = random_vector(count(p), ++seed);
    const auto dy = random_vector(count(p), ++seed);
    const auto old = random_vector(count(p), ++seed);
    std::vector<float> y(x.size()), s(x.size()), g(x.size());
    lrn_forward_cpu(p, x.data(), y.data(), s.data());
    lrn_backward_cpu(p, x.data(), y.data(), s.data(), dy.data(), 0.f, g.data());
    for (float beta : {1.f, 0.5f}) {
      std::vector<float> dx = old, expect(x.size());
      for (size_t i = 0; i < x.size(); ++i) expect[i] = beta * old[i] + g[i];
      lrn_backward_cpu(p, x.data(), y.data(), s.data(), dy.data(), beta, dx.data());
      EXPECT_TRUE(all_close(expect, dx, 1e-6f, 1e-6f)) << "beta " << beta;
    }
  }
}

TEST(LrnParams, Validation) {
  const LrnParams ok = lrn(true, 5, 1e-4f, 0.75f, 1.f, 1, 4, 3, 3);
  EXPECT_NO_THROW(validate_lrn_params(ok));
  auto with = [&](auto edit) {
    LrnParams p = ok;
    edit(p);
    return p;
  };
  EXPECT_THROW(validate_lrn_params(with([](LrnParams& p) { p.local_size = 4; })), Error);
  EXPECT_THROW(validate_lrn_params(with([](LrnParams& p) { p.local_size = 0; })), Error);
  EXPECT_THROW(validate_lrn_params(with([](LrnParams& p) { p.alpha = -1e-4f; })), Error);
  EXPECT_THROW(validate_lrn_params(with([](LrnParams& p) { p.k = 0.f; })), Error);
  EXPECT_THROW(validate_lrn_params(with([](LrnParams& p) { p.beta = NAN; })), Error);
  EXPECT_THROW(validate_lrn_params(with([](LrnParams& p) { p.c = 0; })), Error);
  // k is unused within a channel: 0 is fine there.
  EXPECT_NO_THROW(validate_lrn_params(with([](LrnParams& p) {
    p.across_channels = false;
    p.k = 0.f;
  })));
  std::vector<float> buf(36);
  try {
    LrnParams bad = with([](LrnParams& p) { p.local_size = 4; });
    lrn_forward_cpu(bad, buf.data(), buf.data(), buf.data());
    ADD_FAILURE() << "even local_size accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Input);
    EXPECT_NE(std::string(e.what()).find("local_size"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dropnet
