// The tensor-core implicit-GEMM convolution (kernels/conv_mma.h), forward (conv_forward_mma_cuda),
// data gradient (conv_data_grad_mma_cuda) and filter gradient (conv_filter_grad_mma_cuda), at TF32 and BF16 against a direct convolution
// summed in double over operands rounded with precision::round: 64- and 96-channel layers, both
// block tiles, strides (3 with a kernel of 2: input pixels no tap reads), padding, a 1 x 1 kernel,
// groups, a K not a multiple of 4 (4-byte weight copies), no bias; the gradients with beta 0 over
// a NaN-filled output and with beta 1 (accumulation). Outputs start NaN-filled (beta 0), so an element not written fails.
//
// Tolerance per element, as for the SGEMM (tests/cuda_gemm_mma.cpp): the products of rounded
// operands are exact in FP32 and the error is the FP32 sum of K of them (forward: K = cg kh kw;
// data gradient: og kh kw (at most); filter gradient: n out_h out_w) plus the bias or beta term,
//   |out - ref| <= 2 (K + 2) 2^-24 (sum |products| + |bias or beta dw|) + 1e-30.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "kernels/conv_mma.h"
#include "kernels/precision_math.h"
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
  conv_forward_mma_cuda(pr, p, dx.data(), dw.data(), with_bias ? db.data() : nullptr, dy.data(), cuda_stream(), tile);
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

}  // namespace
}  // namespace dropnet
