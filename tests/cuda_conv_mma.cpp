// The tensor-core implicit-GEMM convolution (kernels/conv_mma.h), forward (conv_forward_mma_cuda),
// data gradient (conv_data_grad_mma_cuda) and filter gradient (conv_filter_grad_mma_cuda), at TF32 and BF16 against a direct convolution
// summed in double over operands rounded with precision::round: 64- and 96-channel layers, both
// block tiles, strides (3 with a kernel of 2: input pixels no tap reads), padding, a 1 x 1 kernel,
// groups, a K not a multiple of 4 (4-byte weight copies), no bias; the gradients with beta 0 over
// a NaN-filled output and with beta 1 (accumulation). Outputs start NaN-filled (beta 0), so an element not written fails.
// Parity with the SIMT implicit GEMM: the fused ReLU (leaky too), output-channel ranges (full,
// partial, the last channels; empty or partial-with-groups refused), conv_backward_mma_cuda with db
// / dx null and beta 0 / 0.5 / 1, and the filter gradient's K split (long K over one or two tiles:
// reference, run-to-run and range-vs-whole bit equality).
//
// Tolerance per element, as for the SGEMM (tests/cuda_gemm_mma.cpp): the products of rounded
// operands are exact in FP32 and the error is the FP32 sum of K of them (forward: K = cg kh kw;
// data gradient: og kh kw (at most); filter gradient: n out_h out_w) plus the bias or beta term,
//   |out - ref| <= 2 (K + 2) 2^-24 (sum |products| + |bias or beta dw|) + 1e-30.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "kernels/conv_mma.h"
#include "kernels/precision_math.h"
#include "kernels/tile_plan.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

ConvParams make(int64_t n, int64_t c, int64_t h, int64_t w, int64_t out_c, int k, int s, int pad, int group) {
  ConvParams p{};
  p.n = n, p.c = c, p.h = h, p.w = w, p.out_c = out_c;
  p.kh = p.kw = k, p.sh = p.sw = s, p.ph = p.pw = pad, p.group = group;
  p.out_h = conv_out_size(h, k, s, pad), p.out_w = conv_out_size(w, k, s, pad);
  return p;
}

std::string name(Precision pr, ConvMmaTile tile, const ConvParams& p, bool bias) {
  return std::string(pr == Precision::TF32 ? "tf32" : "bf16") +
         (tile == ConvMmaTile::M64N64 ? " 64x64" : tile == ConvMmaTile::M32N128 ? " 32x128" : " auto") + " n=" +
         std::to_string(p.n) + " c=" + std::to_string(p.c) + " " + std::to_string(p.h) + "x" + std::to_string(p.w) +
         " out_c=" + std::to_string(p.out_c) + " k=" + std::to_string(p.kh) + " s=" + std::to_string(p.sh) +
         " pad=" + std::to_string(p.ph) + " group=" + std::to_string(p.group) + (bias ? "" : " no bias");
}

::testing::AssertionResult check(Precision pr, ConvMmaTile tile, const ConvParams& p, bool with_bias, uint64_t seed) {
  const int64_t cg = p.c / p.group, og = p.out_c / p.group, ohw = p.out_h * p.out_w;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(p.n * p.c * p.h * p.w), w(p.out_c * cg * p.kh * p.kw), bias(p.out_c);
  for (float& v : x) v = u(rng);
  for (float& v : w) v = u(rng);
  for (float& v : bias) v = u(rng);
  Tensor dx(Shape{static_cast<int64_t>(x.size())}, Device::cuda(0)), dw(Shape{static_cast<int64_t>(w.size())}, Device::cuda(0)),
      db(Shape{p.out_c}, Device::cuda(0)), dy(Shape{p.n * p.out_c * ohw}, Device::cuda(0));
  dx.from_host(x);
  dw.from_host(w);
  db.from_host(bias);
  dy.from_host(std::vector<float>(p.n * p.out_c * ohw, std::numeric_limits<float>::quiet_NaN()));
  conv_forward_mma_cuda(pr, p, dx.data(), dw.data(), with_bias ? db.data() : nullptr, dy.data(), cuda_stream(), {}, {},
                        tile);
  const std::vector<float> y = dy.to_host();

  const double K = static_cast<double>(cg * p.kh * p.kw), uu = std::ldexp(1.0, -24);
  double worst = 0;
  std::string worst_text;
  for (int64_t b = 0; b < p.n; ++b)
    for (int64_t co = 0; co < p.out_c; ++co)
      for (int64_t oy = 0; oy < p.out_h; ++oy)
        for (int64_t ox = 0; ox < p.out_w; ++ox) {
          const int64_t g = co / og;
          double sum = 0, mag = 0;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int ki = 0; ki < p.kh; ++ki)
              for (int kj = 0; kj < p.kw; ++kj) {
                const int64_t iy = oy * p.sh - p.ph + ki, ix = ox * p.sw - p.pw + kj;
                if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
                const double xv = precision::round(pr, x[((b * p.c + g * cg + ci) * p.h + iy) * p.w + ix]);
                const double wv = precision::round(pr, w[((co * cg + ci) * p.kh + ki) * p.kw + kj]);
                sum += xv * wv;
                mag += std::fabs(xv * wv);
              }
          const double bv = with_bias ? bias[co] : 0.0;
          const double want = sum + bv, tol = 2 * (K + 2) * uu * (mag + std::fabs(bv)) + 1e-30;
          const double v = y[((b * p.out_c + co) * p.out_h + oy) * p.out_w + ox];
          const double excess = std::isfinite(v) ? std::fabs(v - want) / tol : std::numeric_limits<double>::infinity();
          if (!(excess <= worst)) {
            worst = excess;
            worst_text = "y(" + std::to_string(b) + ", " + std::to_string(co) + ", " + std::to_string(oy) + ", " +
                         std::to_string(ox) + ") = " + std::to_string(v) + ", want " + std::to_string(want) + " +- " +
                         std::to_string(tol);
          }
        }
  if (worst > 1.0)
    return ::testing::AssertionFailure() << name(pr, tile, p, with_bias) << ": worst " << worst_text << " (" << worst
                                         << " x the tolerance)";
  return ::testing::AssertionSuccess();
}

struct Layer {
  ConvParams p;
  bool bias;
};

std::vector<Layer> layers() {
  return {
      {make(2, 64, 10, 10, 64, 3, 1, 1, 1), true},  // a 64-channel layer, 3 x 3 same padding
      {make(2, 32, 9, 9, 96, 5, 2, 2, 1), true},    // 96 output channels, stride 2
      {make(3, 3, 13, 11, 20, 5, 1, 0, 1), true},   // K = 75: 4-byte weight copies; ragged tiles
      {make(2, 8, 7, 7, 12, 3, 2, 1, 2), false},    // two groups, no bias
      {make(1, 17, 6, 6, 5, 1, 1, 0, 1), true},     // 1 x 1
      {make(2, 5, 11, 10, 7, 2, 3, 0, 1), true},    // stride 3 > kernel 2: inputs no tap reads
  };
}

// Auto picks one of the two (by og or cg % 64): run it too, except under a sanitizer (slow).
std::vector<ConvMmaTile> tiles() {
  if (testing::sanitized()) return {ConvMmaTile::M64N64, ConvMmaTile::M32N128};
  return {ConvMmaTile::M64N64, ConvMmaTile::M32N128, ConvMmaTile::Auto};
}

void sweep(Precision pr) {
  uint64_t seed = 1;
  for (ConvMmaTile tile : tiles())
    for (const Layer& l : layers()) EXPECT_TRUE(check(pr, tile, l.p, l.bias, seed++));
}

::testing::AssertionResult check_filter_grad(Precision pr, ConvMmaTile tile, const ConvParams& p, float beta,
                                             uint64_t seed) {
  const int64_t cg = p.c / p.group, og = p.out_c / p.group, ohw = p.out_h * p.out_w, khw = p.kh * p.kw;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(p.n * p.c * p.h * p.w), dy(p.n * p.out_c * ohw), dw0(p.out_c * cg * khw);
  for (float& v : x) v = u(rng);
  for (float& v : dy) v = u(rng);
  for (float& v : dw0) v = beta == 0.f ? std::numeric_limits<float>::quiet_NaN() : u(rng);
  Tensor dx(Shape{static_cast<int64_t>(x.size())}, Device::cuda(0)), ddy(Shape{static_cast<int64_t>(dy.size())}, Device::cuda(0)),
      ddw(Shape{static_cast<int64_t>(dw0.size())}, Device::cuda(0));
  dx.from_host(x);
  ddy.from_host(dy);
  ddw.from_host(dw0);
  conv_filter_grad_mma_cuda(pr, p, dx.data(), ddy.data(), beta, ddw.data(), cuda_stream(), tile);
  const std::vector<float> dw = ddw.to_host();

  const double K = static_cast<double>(p.n * ohw), uu = std::ldexp(1.0, -24);
  double worst = 0;
  std::string worst_text;
  for (int64_t co = 0; co < p.out_c; ++co)
    for (int64_t ci = 0; ci < cg; ++ci)
      for (int ki = 0; ki < p.kh; ++ki)
        for (int kj = 0; kj < p.kw; ++kj) {
          const int64_t g = co / og;
          double sum = 0, mag = 0;
          for (int64_t b = 0; b < p.n; ++b)
            for (int64_t oy = 0; oy < p.out_h; ++oy)
              for (int64_t ox = 0; ox < p.out_w; ++ox) {
                const int64_t iy = oy * p.sh - p.ph + ki, ix = ox * p.sw - p.pw + kj;
                if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
                const double xv = precision::round(pr, x[((b * p.c + g * cg + ci) * p.h + iy) * p.w + ix]);
                const double dv = precision::round(pr, dy[((b * p.out_c + co) * p.out_h + oy) * p.out_w + ox]);
                sum += xv * dv;
                mag += std::fabs(xv * dv);
              }
          const int64_t idx = ((co * cg + ci) * p.kh + ki) * p.kw + kj;
          const double prev = beta == 0.f ? 0.0 : beta * static_cast<double>(dw0[idx]);
          const double want = sum + prev, tol = 2 * (K + 2) * uu * (mag + std::fabs(prev)) + 1e-30;
          const double v = dw[idx];
          const double excess = std::isfinite(v) ? std::fabs(v - want) / tol : std::numeric_limits<double>::infinity();
          if (!(excess <= worst)) {
            worst = excess;
            worst_text = "dw(" + std::to_string(co) + ", " + std::to_string(ci) + ", " + std::to_string(ki) + ", " +
                         std::to_string(kj) + ") = " + std::to_string(v) + ", want " + std::to_string(want) + " +- " +
                         std::to_string(tol);
          }
        }
  if (worst > 1.0)
    return ::testing::AssertionFailure() << "filter gradient " << name(pr, tile, p, true) << " beta=" << beta
                                         << ": worst " << worst_text << " (" << worst << " x the tolerance)";
  return ::testing::AssertionSuccess();
}

void sweep_filter_grad(Precision pr) {
  uint64_t seed = 50;
  for (ConvMmaTile tile : tiles())
    for (const Layer& l : layers())
      for (float beta : {0.f, 1.f}) EXPECT_TRUE(check_filter_grad(pr, tile, l.p, beta, seed++));
}

::testing::AssertionResult check_data_grad(Precision pr, ConvMmaTile tile, const ConvParams& p, float beta,
                                           uint64_t seed) {
  const int64_t cg = p.c / p.group, og = p.out_c / p.group, ohw = p.out_h * p.out_w;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> w(p.out_c * cg * p.kh * p.kw), dy(p.n * p.out_c * ohw), dx0(p.n * p.c * p.h * p.w);
  for (float& v : w) v = u(rng);
  for (float& v : dy) v = u(rng);
  for (float& v : dx0) v = beta == 0.f ? std::numeric_limits<float>::quiet_NaN() : u(rng);
  Tensor dw(Shape{static_cast<int64_t>(w.size())}, Device::cuda(0)), ddy(Shape{static_cast<int64_t>(dy.size())}, Device::cuda(0)),
      ddx(Shape{static_cast<int64_t>(dx0.size())}, Device::cuda(0));
  dw.from_host(w);
  ddy.from_host(dy);
  ddx.from_host(dx0);
  conv_data_grad_mma_cuda(pr, p, dw.data(), ddy.data(), beta, ddx.data(), cuda_stream(), tile);
  const std::vector<float> dx = ddx.to_host();

  // dx by scattering every (output pixel, tap) product onto the input pixel it read.
  std::vector<double> sum(dx0.size(), 0.0), mag(dx0.size(), 0.0);
  for (int64_t b = 0; b < p.n; ++b)
    for (int64_t co = 0; co < p.out_c; ++co)
      for (int64_t oy = 0; oy < p.out_h; ++oy)
        for (int64_t ox = 0; ox < p.out_w; ++ox) {
          const int64_t g = co / og;
          const double dv = precision::round(pr, dy[((b * p.out_c + co) * p.out_h + oy) * p.out_w + ox]);
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int ki = 0; ki < p.kh; ++ki)
              for (int kj = 0; kj < p.kw; ++kj) {
                const int64_t iy = oy * p.sh - p.ph + ki, ix = ox * p.sw - p.pw + kj;
                if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
                const double wv = precision::round(pr, w[((co * cg + ci) * p.kh + ki) * p.kw + kj]);
                const int64_t idx = ((b * p.c + g * cg + ci) * p.h + iy) * p.w + ix;
                sum[idx] += dv * wv;
                mag[idx] += std::fabs(dv * wv);
              }
        }
  const double K = static_cast<double>(og * p.kh * p.kw), uu = std::ldexp(1.0, -24);
  double worst = 0;
  std::string worst_text;
  for (size_t i = 0; i < dx.size(); ++i) {
    const double prev = beta == 0.f ? 0.0 : beta * static_cast<double>(dx0[i]);
    const double want = sum[i] + prev, tol = 2 * (K + 2) * uu * (mag[i] + std::fabs(prev)) + 1e-30;
    const double v = dx[i];
    const double excess = std::isfinite(v) ? std::fabs(v - want) / tol : std::numeric_limits<double>::infinity();
    if (!(excess <= worst)) {
      worst = excess;
      worst_text = "dx[" + std::to_string(i) + "] = " + std::to_string(v) + ", want " + std::to_string(want) + " +- " +
                   std::to_string(tol);
    }
  }
  if (worst > 1.0)
    return ::testing::AssertionFailure() << "data gradient " << name(pr, tile, p, true) << " beta=" << beta
                                         << ": worst " << worst_text << " (" << worst << " x the tolerance)";
  return ::testing::AssertionSuccess();
}

void sweep_data_grad(Precision pr) {
  uint64_t seed = 90;
  for (ConvMmaTile tile : tiles())
    for (const Layer& l : layers())
      for (float beta : {0.f, 1.f}) EXPECT_TRUE(check_data_grad(pr, tile, l.p, beta, seed++));
}

TEST(CudaConvMma, Tf32DataGradEveryTileAndLayerShape) {
  DN_REQUIRE_CUDA();
  sweep_data_grad(Precision::TF32);
}

TEST(CudaConvMma, Bf16DataGradEveryTileAndLayerShape) {
  DN_REQUIRE_CUDA();
  sweep_data_grad(Precision::BF16);
}

TEST(CudaConvMma, Tf32FilterGradEveryTileAndLayerShape) {
  DN_REQUIRE_CUDA();
  sweep_filter_grad(Precision::TF32);
}

TEST(CudaConvMma, Bf16FilterGradEveryTileAndLayerShape) {
  DN_REQUIRE_CUDA();
  sweep_filter_grad(Precision::BF16);
}

TEST(CudaConvMma, Tf32ForwardEveryTileAndLayerShape) {
  DN_REQUIRE_CUDA();
  sweep(Precision::TF32);
}

TEST(CudaConvMma, Bf16ForwardEveryTileAndLayerShape) {
  DN_REQUIRE_CUDA();
  sweep(Precision::BF16);
}

// ---- Parity with the SIMT implicit GEMM (conv_forward_igemm_cuda / conv_backward_igemm_cuda):
// the fused activation, output-channel ranges, conv_backward_mma_cuda (db, dx optional, beta) and
// the filter gradient's K split.

std::vector<float> uniform(size_t size, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(size);
  for (float& e : v) e = u(rng);
  return v;
}

Tensor device(const std::vector<float>& v) {
  Tensor t(Shape{static_cast<int64_t>(v.size())}, Device::cuda(0));
  t.from_host(v);
  return t;
}

// Worst |v - want| / tol of a set of elements, with its description.
struct Worst {
  double excess = 0;
  std::string text;
  void add(const std::string& what, double v, double want, double tol) {
    const double e = std::isfinite(v) ? std::fabs(v - want) / tol : std::numeric_limits<double>::infinity();
    if (!(e <= excess)) {
      excess = e;
      text = what + " = " + std::to_string(v) + ", want " + std::to_string(want) + " +- " + std::to_string(tol);
    }
  }
  void fail(const std::string& what) {
    if (excess != std::numeric_limits<double>::infinity()) excess = std::numeric_limits<double>::infinity(), text = what;
  }
  ::testing::AssertionResult result(const std::string& name) const {
    if (excess > 1.0) return ::testing::AssertionFailure() << name << ": worst " << text << " (" << excess << " x the tolerance)";
    return ::testing::AssertionSuccess();
  }
};

std::string range_name(const ConvParams& p, ConvOutRange oc) {
  return " oc=[" + std::to_string(oc.begin) + ", " + std::to_string(oc.end < 0 ? p.out_c : oc.end) + ")";
}

// Forward with act and a channel range: channels in the range against act(rounded double conv +
// bias) (|act(a) - act(b)| <= |a - b| for a slope in [0, 1]), the others left NaN.
::testing::AssertionResult check_forward_range(Precision pr, const ConvParams& p, Activation act, ConvOutRange oc,
                                               uint64_t seed) {
  const int64_t cg = p.c / p.group, og = p.out_c / p.group, ohw = p.out_h * p.out_w;
  const int64_t b0 = oc.begin, e0 = oc.end < 0 ? p.out_c : oc.end;
  std::mt19937_64 rng(seed);
  const std::vector<float> x = uniform(p.n * p.c * p.h * p.w, rng), w = uniform(p.out_c * cg * p.kh * p.kw, rng),
                           bias = uniform(p.out_c, rng);
  Tensor tx = device(x), tw = device(w), tb = device(bias),
         ty = device(std::vector<float>(p.n * p.out_c * ohw, std::numeric_limits<float>::quiet_NaN()));
  conv_forward_mma_cuda(pr, p, tx.data(), tw.data(), tb.data(), ty.data(), cuda_stream(), act, oc);
  const std::vector<float> y = ty.to_host();
  const double K = static_cast<double>(cg * p.kh * p.kw), uu = std::ldexp(1.0, -24);
  Worst worst;
  for (int64_t b = 0; b < p.n; ++b)
    for (int64_t co = 0; co < p.out_c; ++co)
      for (int64_t pix = 0; pix < ohw; ++pix) {
        const double v = y[(b * p.out_c + co) * ohw + pix];
        const std::string what = "y(" + std::to_string(b) + ", " + std::to_string(co) + ", " + std::to_string(pix) + ")";
        if (co < b0 || co >= e0) {
          if (!std::isnan(v)) worst.fail(what + " outside the range written");
          continue;
        }
        const int64_t g = co / og, oy = pix / p.out_w, ox = pix % p.out_w;
        double sum = bias[co], mag = std::fabs(bias[co]);
        for (int64_t ci = 0; ci < cg; ++ci)
          for (int ki = 0; ki < p.kh; ++ki)
            for (int kj = 0; kj < p.kw; ++kj) {
              const int64_t iy = oy * p.sh - p.ph + ki, ix = ox * p.sw - p.pw + kj;
              if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
              const double t = precision::round(pr, x[((b * p.c + g * cg + ci) * p.h + iy) * p.w + ix]) *
                               precision::round(pr, w[((co * cg + ci) * p.kh + ki) * p.kw + kj]);
              sum += t;
              mag += std::fabs(t);
            }
        const double want = act.relu ? (sum > 0 ? sum : sum * act.slope) : sum;
        worst.add(what, v, want, 2 * (K + 2) * uu * mag + 1e-30);
      }
  return worst.result(std::string(pr == Precision::TF32 ? "tf32" : "bf16") + " forward" + range_name(p, oc) +
                      (act.relu ? " relu slope=" + std::to_string(act.slope) : ""));
}

struct BackwardCase {
  ConvParams p;
  ConvOutRange oc;
  bool db, dx;
  float beta;
};

// conv_backward_mma_cuda against the rounded double sums: dw += (rows in the range; others
// unchanged, bit for bit), db += the FP32 channel sums of all of dy (the SIMT path's kernel),
// dx = beta dx + the sum over the range's channels. Returns the outputs for the caller's own
// comparisons (dw, db, dx in that order).
::testing::AssertionResult check_backward(Precision pr, const BackwardCase& c, uint64_t seed,
                                          std::vector<std::vector<float>>* out = nullptr) {
  const ConvParams& p = c.p;
  const int64_t cg = p.c / p.group, og = p.out_c / p.group, ohw = p.out_h * p.out_w, khw = p.kh * p.kw;
  const int64_t b0 = c.oc.begin, e0 = c.oc.end < 0 ? p.out_c : c.oc.end;
  std::mt19937_64 rng(seed);
  const std::vector<float> x = uniform(p.n * p.c * p.h * p.w, rng), w = uniform(p.out_c * cg * khw, rng),
                           dy = uniform(p.n * p.out_c * ohw, rng), dw0 = uniform(w.size(), rng),
                           db0 = uniform(p.out_c, rng);
  std::vector<float> dx0 = uniform(x.size(), rng);
  if (c.beta == 0.f) dx0.assign(x.size(), std::numeric_limits<float>::quiet_NaN());
  Tensor tx = device(x), tw = device(w), tdy = device(dy), tdw = device(dw0), tdb = device(db0), tdx = device(dx0);
  conv_backward_mma_cuda(pr, p, tx.data(), tw.data(), tdy.data(), tdw.data(), c.db ? tdb.data() : nullptr, c.beta,
                         c.dx ? tdx.data() : nullptr, cuda_stream(), c.oc);
  const std::vector<float> dw = tdw.to_host(), db = tdb.to_host(), dx = tdx.to_host();
  const double uu = std::ldexp(1.0, -24);
  Worst worst;

  // dw: K = n * ohw.
  const double Kf = static_cast<double>(p.n * ohw);
  for (int64_t co = 0; co < p.out_c; ++co)
    for (int64_t ci = 0; ci < cg; ++ci)
      for (int64_t r = 0; r < khw; ++r) {
        const int64_t idx = (co * cg + ci) * khw + r, ki = r / p.kw, kj = r % p.kw, g = co / og;
        const std::string what = "dw[" + std::to_string(idx) + "]";
        if (co < b0 || co >= e0) {
          if (std::memcmp(&dw[idx], &dw0[idx], sizeof(float)) != 0) worst.fail(what + " outside the range changed");
          continue;
        }
        double sum = dw0[idx], mag = std::fabs(dw0[idx]);
        for (int64_t b = 0; b < p.n; ++b)
          for (int64_t oy = 0; oy < p.out_h; ++oy)
            for (int64_t ox = 0; ox < p.out_w; ++ox) {
              const int64_t iy = oy * p.sh - p.ph + ki, ix = ox * p.sw - p.pw + kj;
              if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
              const double t = precision::round(pr, x[((b * p.c + g * cg + ci) * p.h + iy) * p.w + ix]) *
                               precision::round(pr, dy[((b * p.out_c + co) * p.out_h + oy) * p.out_w + ox]);
              sum += t;
              mag += std::fabs(t);
            }
        worst.add(what, dw[idx], sum, 2 * (Kf + 2) * uu * mag + 1e-30);
      }
  // db: every channel (computed whole), FP32 operands.
  for (int64_t co = 0; co < p.out_c; ++co) {
    const std::string what = "db[" + std::to_string(co) + "]";
    if (!c.db) {
      if (std::memcmp(&db[co], &db0[co], sizeof(float)) != 0) worst.fail(what + " changed (db null)");
      continue;
    }
    double sum = db0[co], mag = std::fabs(db0[co]);
    for (int64_t b = 0; b < p.n; ++b)
      for (int64_t pix = 0; pix < ohw; ++pix) {
        sum += dy[(b * p.out_c + co) * ohw + pix];
        mag += std::fabs(dy[(b * p.out_c + co) * ohw + pix]);
      }
    worst.add(what, db[co], sum, 2 * (Kf + 2) * uu * mag + 1e-30);
  }
  // dx: scatter of the range's channels; K = (e0 - b0) khw at most.
  if (c.dx) {
    std::vector<double> sum(x.size()), mag(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      sum[i] = c.beta == 0.f ? 0.0 : c.beta * static_cast<double>(dx0[i]);
      mag[i] = std::fabs(sum[i]);
    }
    for (int64_t b = 0; b < p.n; ++b)
      for (int64_t co = b0; co < e0; ++co)
        for (int64_t oy = 0; oy < p.out_h; ++oy)
          for (int64_t ox = 0; ox < p.out_w; ++ox) {
            const int64_t g = co / og;
            const double dv = precision::round(pr, dy[((b * p.out_c + co) * p.out_h + oy) * p.out_w + ox]);
            for (int64_t ci = 0; ci < cg; ++ci)
              for (int ki = 0; ki < p.kh; ++ki)
                for (int kj = 0; kj < p.kw; ++kj) {
                  const int64_t iy = oy * p.sh - p.ph + ki, ix = ox * p.sw - p.pw + kj;
                  if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
                  const double t = dv * precision::round(pr, w[((co * cg + ci) * p.kh + ki) * p.kw + kj]);
                  const int64_t idx = ((b * p.c + g * cg + ci) * p.h + iy) * p.w + ix;
                  sum[idx] += t;
                  mag[idx] += std::fabs(t);
                }
          }
    const double Kd = static_cast<double>(std::min(og, e0 - b0) * khw);
    for (size_t i = 0; i < x.size(); ++i)
      worst.add("dx[" + std::to_string(i) + "]", dx[i], sum[i], 2 * (Kd + 2) * uu * mag[i] + 1e-30);
  } else {
    for (size_t i = 0; i < x.size(); ++i)
      if (std::memcmp(&dx[i], &dx0[i], sizeof(float)) != 0) worst.fail("dx[" + std::to_string(i) + "] changed (dx null)");
  }
  if (out != nullptr) *out = {dw, db, dx};
  return worst.result(std::string(pr == Precision::TF32 ? "tf32" : "bf16") + " backward" + range_name(p, c.oc) +
                      " n=" + std::to_string(p.n) + " c=" + std::to_string(p.c) + " out_c=" + std::to_string(p.out_c) +
                      " group=" + std::to_string(p.group) + (c.db ? "" : " no db") + (c.dx ? "" : " no dx") +
                      " beta=" + std::to_string(c.beta));
}

// A layer of 40 output channels (two row tiles of 32 x 128, one of 64 x 64 with a ragged edge).
ConvParams range_layer() { return make(2, 6, 7, 6, 40, 3, 1, 1, 1); }

void forward_parity(Precision pr) {
  const ConvParams p = range_layer();
  uint64_t seed = 200;
  for (Activation act : {Activation{}, Activation{true, 0.f}, Activation{true, 0.125f}})
    for (ConvOutRange oc : {ConvOutRange{}, ConvOutRange{0, 40}, ConvOutRange{5, 29}, ConvOutRange{33, 40}})
      EXPECT_TRUE(check_forward_range(pr, p, act, oc, seed++));
  // Grouped: the whole range only.
  EXPECT_TRUE(check_forward_range(pr, make(2, 8, 7, 7, 12, 3, 2, 1, 2), Activation{true, 0.f}, {}, seed++));
  // An empty range, or a partial one with groups, is refused as by the SIMT path (conv_out_range).
  Tensor t(Shape{p.n * p.out_c * p.out_h * p.out_w + p.n * p.c * p.h * p.w}, Device::cuda(0));
  EXPECT_ANY_THROW(conv_forward_mma_cuda(pr, p, t.data(), t.data(), nullptr, t.data(), cuda_stream(), {}, {7, 7}));
  EXPECT_ANY_THROW(conv_forward_mma_cuda(pr, make(2, 8, 7, 7, 12, 3, 2, 1, 2), t.data(), t.data(), nullptr, t.data(),
                                         cuda_stream(), {}, {0, 6}));
}

TEST(CudaConvMma, Tf32ForwardReluAndOutputRanges) {
  DN_REQUIRE_CUDA();
  forward_parity(Precision::TF32);
}

TEST(CudaConvMma, Bf16ForwardReluAndOutputRanges) {
  DN_REQUIRE_CUDA();
  forward_parity(Precision::BF16);
}

void backward_parity(Precision pr) {
  const ConvParams p = range_layer();
  uint64_t seed = 300;
  for (bool db : {true, false})
    for (bool dx : {true, false})
      for (float beta : {0.f, 1.f}) EXPECT_TRUE(check_backward(pr, {p, {}, db, dx, beta}, seed++));
  for (ConvOutRange oc : {ConvOutRange{0, 40}, ConvOutRange{5, 29}, ConvOutRange{33, 40}})
    EXPECT_TRUE(check_backward(pr, {p, oc, true, true, 0.5f}, seed++));
  EXPECT_TRUE(check_backward(pr, {make(2, 8, 7, 7, 12, 3, 2, 1, 2), {}, true, true, 1.f}, seed++));  // groups
  std::vector<float> t(p.n * p.c * p.h * p.w + p.out_c * p.c * 9 + p.n * p.out_c * p.out_h * p.out_w);
  Tensor d = device(t);
  EXPECT_ANY_THROW(conv_backward_mma_cuda(pr, p, d.data(), d.data(), d.data(), d.data(), nullptr, 0.f, nullptr,
                                          cuda_stream(), {40, 40}));
}

TEST(CudaConvMma, Tf32BackwardDbDxBetaAndOutputRanges) {
  DN_REQUIRE_CUDA();
  backward_parity(Precision::TF32);
}

TEST(CudaConvMma, Bf16BackwardDbDxBetaAndOutputRanges) {
  DN_REQUIRE_CUDA();
  backward_parity(Precision::BF16);
}

// Long K = n out_h out_w over one or two output tiles: the filter gradient splits K (tile_plan's
// split_k in steps of 32, the emulator's 132 SMs). Checked against the reference, twice for bit
// equality (partials reduced in a fixed order), and a range's rows against the whole computation's,
// bit for bit (a range splits as the whole does).
void split_k_parity(Precision pr) {
  struct Case {
    ConvParams p;
    ConvOutRange oc;
  };
  const int n = testing::on_gpu_or_emulated(4, 4, 2);
  const std::vector<Case> cases = {
      {make(n, 4, 32, 32, 8, 3, 1, 1, 1), {}},      // K = n 1024 over one tile
      {make(n, 4, 32, 32, 8, 3, 1, 1, 1), {2, 7}},  // a range of it
      {make(2, 8, 16, 16, 8, 3, 1, 1, 2), {}},      // K = 512 over two groups of one tile
  };
  uint64_t seed = 400;
  for (const Case& c : cases) {
    const int64_t K = c.p.n * c.p.out_h * c.p.out_w, groups = c.p.group;
    EXPECT_GT(tile_plan::split_k(groups, K, 132, 32).first, 1) << "the case should split K";
    std::vector<std::vector<float>> a, b, whole;
    EXPECT_TRUE(check_backward(pr, {c.p, c.oc, true, true, 0.f}, seed, &a));
    EXPECT_TRUE(check_backward(pr, {c.p, c.oc, false, false, 1.f}, seed, &b));
    EXPECT_EQ(0, std::memcmp(a[0].data(), b[0].data(), a[0].size() * sizeof(float))) << "dw not deterministic";
    if (c.oc.end >= 0) {
      EXPECT_TRUE(check_backward(pr, {c.p, {}, true, true, 0.f}, seed, &whole));
      const int64_t row = a[0].size() / c.p.out_c;
      EXPECT_EQ(0, std::memcmp(a[0].data() + c.oc.begin * row, whole[0].data() + c.oc.begin * row,
                               (c.oc.end - c.oc.begin) * row * sizeof(float)))
          << "a range's dw rows differ from the whole computation's";
    }
    ++seed;
  }
  // The public filter gradient splits too, with beta 0 over NaN and beta 1.
  for (float beta : {0.f, 1.f}) EXPECT_TRUE(check_filter_grad(pr, ConvMmaTile::Auto, cases[0].p, beta, seed++));
}

TEST(CudaConvMma, Tf32FilterGradSplitK) {
  DN_REQUIRE_CUDA();
  split_k_parity(Precision::TF32);
}

TEST(CudaConvMma, Bf16FilterGradSplitK) {
  DN_REQUIRE_CUDA();
  split_k_parity(Precision::BF16);
}

}  // namespace
}  // namespace dropnet
