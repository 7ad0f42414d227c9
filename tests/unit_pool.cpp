// Pooling kernels (CPU) against Caffe's rules: output sizes, a naive reference written here
// (windows walked cell by cell in padded coordinates), argmax tie-breaking, the AVE divisor at
// padded borders, finite-difference gradients and beta accumulation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/pool.h"
#include "kernels/pool_math.h"
#include "kernels/store_grad.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

using testing::all_close;
using testing::random_vector;

// Caffe's PoolingLayer::Reshape, verbatim in spirit: float ceil, then the pad rule.
int64_t caffe_out_size(int64_t in, int k, int s, int pad, bool any_pad) {
  int64_t out = static_cast<int64_t>(std::ceil(static_cast<float>(in + 2 * pad - k) / s)) + 1;
  if (any_pad && (out - 1) * s >= in + pad) --out;
  return out;
}

struct Case {
  PoolMethod method;
  int kh, kw, sh, sw, ph, pw;
  int64_t n, c, h, w;
  std::string name() const {
    return std::string(method == PoolMethod::Max ? "max" : "ave") + " k" + std::to_string(kh) + "x" +
           std::to_string(kw) + " s" + std::to_string(sh) + "x" + std::to_string(sw) + " p" +
           std::to_string(ph) + "x" + std::to_string(pw) + " in (" + std::to_string(n) + "," +
           std::to_string(c) + "," + std::to_string(h) + "," + std::to_string(w) + ")";
  }
  PoolParams params() const { return make_pool_params(method, kh, kw, sh, sw, ph, pw, n, c, h, w); }
};

struct Ref {
  std::vector<float> y;
  std::vector<int32_t> argmax;
};

// Straightforward reference: every kernel cell (i, j) of every window, in padded coordinates.
Ref ref_forward(const PoolParams& p, const std::vector<float>& x) {
  Ref r;
  const int64_t planes = p.n * p.c;
  r.y.assign(static_cast<size_t>(planes * p.out_h * p.out_w), 0.f);
  r.argmax.assign(r.y.size(), -1);
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int64_t oh = 0; oh < p.out_h; ++oh)
      for (int64_t ow = 0; ow < p.out_w; ++ow) {
        const int64_t o = (pl * p.out_h + oh) * p.out_w + ow;
        const int64_t hs = oh * p.stride_h - p.pad_h, ws = ow * p.stride_w - p.pad_w;
        float best = -std::numeric_limits<float>::infinity();
        int32_t best_i = -1;
        double sum = 0;
        int count = 0;
        for (int i = 0; i < p.kernel_h; ++i)
          for (int j = 0; j < p.kernel_w; ++j) {
            const int64_t ih = hs + i, iw = ws + j;
            if (ih < p.h + p.pad_h && iw < p.w + p.pad_w) ++count;  // padding counts, overhang not
            if (ih < 0 || iw < 0 || ih >= p.h || iw >= p.w) continue;
            const float v = x[static_cast<size_t>((pl * p.h + ih) * p.w + iw)];
            sum += v;
            if (best_i < 0 || v > best) {
              best = v;
              best_i = static_cast<int32_t>(ih * p.w + iw);
            }
          }
        if (p.method == PoolMethod::Max) {
          r.y[o] = best;
          r.argmax[o] = best_i;
        } else {
          r.y[o] = static_cast<float>(sum / count);
        }
      }
  return r;
}

// Reference backward by scattering each output's gradient (the transpose of the forward).
std::vector<float> ref_backward(const PoolParams& p, const std::vector<float>& dy,
                                const std::vector<int32_t>& argmax) {
  std::vector<double> dx(static_cast<size_t>(p.n * p.c * p.h * p.w), 0.0);
  for (int64_t pl = 0; pl < p.n * p.c; ++pl)
    for (int64_t oh = 0; oh < p.out_h; ++oh)
      for (int64_t ow = 0; ow < p.out_w; ++ow) {
        const int64_t o = (pl * p.out_h + oh) * p.out_w + ow;
        if (p.method == PoolMethod::Max) {
          dx[static_cast<size_t>(pl * p.h * p.w + argmax[o])] += dy[o];
          continue;
        }
        const int64_t hs = oh * p.stride_h - p.pad_h, ws = ow * p.stride_w - p.pad_w;
        int count = 0;
        for (int i = 0; i < p.kernel_h; ++i)
          for (int j = 0; j < p.kernel_w; ++j)
            if (hs + i < p.h + p.pad_h && ws + j < p.w + p.pad_w) ++count;
        for (int i = 0; i < p.kernel_h; ++i)
          for (int j = 0; j < p.kernel_w; ++j) {
            const int64_t ih = hs + i, iw = ws + j;
            if (ih >= 0 && iw >= 0 && ih < p.h && iw < p.w)
              dx[static_cast<size_t>((pl * p.h + ih) * p.w + iw)] += double(dy[o]) / count;
          }
      }
  return {dx.begin(), dx.end()};
}

const std::vector<Case>& shape_cases() {
  static const std::vector<Case> cases = [] {
    std::vector<Case> v;
    for (PoolMethod m : {PoolMethod::Max, PoolMethod::Ave}) {
      v.push_back({m, 2, 2, 2, 2, 0, 0, 2, 3, 24, 24});   // LeNet pool1
      v.push_back({m, 2, 2, 2, 2, 0, 0, 1, 2, 8, 8});     // LeNet pool2, batch 1
      v.push_back({m, 3, 3, 2, 2, 0, 0, 2, 3, 32, 32});   // cifar: ceil mode 32 -> 16
      v.push_back({m, 3, 3, 2, 2, 0, 0, 1, 2, 13, 13});   // AlexNet pool5
      v.push_back({m, 3, 3, 2, 2, 1, 1, 2, 3, 7, 9});     // odd sizes with pad
      v.push_back({m, 3, 3, 1, 1, 1, 1, 1, 2, 6, 5});     // stride < kernel, overlapping
      v.push_back({m, 2, 2, 3, 3, 0, 0, 2, 2, 10, 11});   // stride > kernel, skipped cells
      v.push_back({m, 3, 2, 2, 1, 1, 0, 2, 2, 9, 6});     // non-square everything
      v.push_back({m, 3, 3, 3, 3, 2, 2, 1, 3, 4, 4});     // pad rule drops the last window
      v.push_back({m, 3, 3, 2, 2, 1, 1, 1, 1, 3, 3});     // pad rule on both dims
      v.push_back({m, 3, 3, 2, 2, 0, 0, 1, 2, 2, 2});     // kernel larger than the input
      v.push_back({m, 4, 4, 3, 3, 3, 3, 2, 2, 5, 7});     // large pad
      v.push_back({m, 1, 1, 1, 1, 0, 0, 1, 2, 3, 4});     // identity
      v.push_back({m, 5, 5, 2, 2, 2, 2, 1, 2, 11, 12});   // 5x5 pad 2
      // Wide rows: several whole SIMD vectors of interior columns plus a partial one.
      v.push_back({m, 3, 3, 2, 2, 1, 1, 1, 2, 5, 70});
      v.push_back({m, 2, 2, 1, 1, 0, 0, 1, 1, 4, 41});
      v.push_back({m, 3, 5, 2, 3, 0, 2, 1, 2, 6, 77});
      v.push_back({m, 5, 5, 4, 4, 1, 1, 1, 1, 9, 90});    // stride 4: the generic split
    }
    return v;
  }();
  return cases;
}

TEST(PoolOutSize, CaffeNets) {
  // cifar10_full: 32 -> 16 -> 8 -> 4 with 3/2 (ceil mode; floor would give 15, 7, 3).
  EXPECT_EQ(pool_out_size(32, 3, 2, 0), 16);
  EXPECT_EQ(pool_out_size(16, 3, 2, 0), 8);
  EXPECT_EQ(pool_out_size(8, 3, 2, 0), 4);
  // AlexNet: 55 -> 27 -> 13 -> 6 with 3/2.
  EXPECT_EQ(pool_out_size(55, 3, 2, 0), 27);
  EXPECT_EQ(pool_out_size(27, 3, 2, 0), 13);
  EXPECT_EQ(pool_out_size(13, 3, 2, 0), 6);
  // LeNet and VGG 2/2.
  EXPECT_EQ(pool_out_size(24, 2, 2, 0), 12);
  EXPECT_EQ(pool_out_size(8, 2, 2, 0), 4);
  EXPECT_EQ(pool_out_size(224, 2, 2, 0), 112);
  EXPECT_EQ(pool_out_size(7, 2, 2, 0), 4);  // ceil: the last window sees one column
}

TEST(PoolOutSize, PadRule) {
  // 3 + 2*1 - 2 = 3, ceil(3/2) + 1 = 3, but window 2 would start at padded 4 = in + pad.
  EXPECT_EQ(pool_out_size(3, 2, 2, 1), 2);
  EXPECT_EQ(pool_out_size(4, 3, 3, 2), 2);  // ceil(5/3) + 1 = 3; 2*3 = 6 >= 4 + 2
  EXPECT_EQ(pool_out_size(3, 3, 2, 1), 2);  // ceil(2/2) + 1 = 2; 2 < 4: kept
  EXPECT_EQ(pool_out_size(5, 3, 2, 1), 3);  // kept: the last window starts on the image
  EXPECT_EQ(pool_out_size(6, 3, 2, 1), 4);  // ceil(5/2) + 1 = 4; 6 < 7: kept (overhang past pad)
  EXPECT_EQ(pool_out_size(6, 2, 2, 1), 4);
  EXPECT_EQ(pool_out_size(2, 3, 2, 0), 1);  // kernel larger than the input: ceil(-1/2) = 0
}

TEST(PoolOutSize, MatchesCaffeFormulaSweep) {
  int checked = 0, diverged = 0;
  for (int64_t in = 1; in <= 40; ++in)
    for (int k = 1; k <= 7; ++k)
      for (int s = 1; s <= 4; ++s)
        for (int pad = 0; pad < k; ++pad)
          for (bool other_dim_padded : {false, true}) {
            if (pad > 0 && !other_dim_padded) continue;  // Caffe: any pad turns the rule on
            const int64_t caffe = caffe_out_size(in, k, s, pad, pad > 0 || other_dim_padded);
            if (caffe < 1) continue;
            const int64_t ours = pool_out_size(in, k, s, pad);
            const int64_t caffe_plain = caffe_out_size(in, k, s, pad, false);
            if (pad == 0 && (caffe_plain - 1) * s >= in) {
              // Caffe without any pad keeps a window wholly past the image (it outputs garbage
              // and argmax -1 there); we drop it, which is what Caffe does as soon as any pad is set.
              EXPECT_EQ(ours, caffe_plain - 1) << in << " k" << k << " s" << s;
              ++diverged;
              continue;
            }
            EXPECT_EQ(ours, caffe) << in << " k" << k << " s" << s << " p" << pad;
            ++checked;
          }
  EXPECT_GT(checked, 1000);
  EXPECT_GT(diverged, 0);
}

TEST(PoolParams, Validation) {
  auto make = [](int k, int s, int pad, int64_t h) {
    return make_pool_params(PoolMethod::Max, k, k, s, s, pad, pad, 1, 1, h, h);
  };
  EXPECT_NO_THROW(make(3, 2, 2, 5));
  EXPECT_THROW(make(3, 2, 3, 5), Error);   // pad >= kernel
  EXPECT_THROW(make(0, 1, 0, 5), Error);   // kernel 0
  EXPECT_THROW(make(2, 0, 0, 5), Error);   // stride 0
  EXPECT_THROW(make(2, 1, -1, 5), Error);  // negative pad
  EXPECT_THROW(make(3, 1, 0, 1), Error);   // kernel does not fit: ceil(-2) + 1 < 1
  EXPECT_THROW(make_pool_params(PoolMethod::Ave, 2, 2, 2, 2, 0, 0, 0, 1, 4, 4), Error);
  try {
    make(3, 2, 3, 5);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Input);
    EXPECT_NE(std::string(e.what()).find("pad"), std::string::npos) << e.what();
  }
  const PoolParams p = make_pool_params(PoolMethod::Ave, 3, 2, 2, 1, 1, 0, 2, 3, 9, 6);
  EXPECT_EQ(p.out_h, 5);
  EXPECT_EQ(p.out_w, 5);
  EXPECT_EQ(p.n, 2);
  EXPECT_EQ(p.c, 3);
}

TEST(PoolParams, LaunchChecks) {
  PoolParams p = make_pool_params(PoolMethod::Max, 2, 2, 2, 2, 0, 0, 1, 1, 4, 4);
  std::vector<float> x(16, 1.f), y(4), dx(16);
  std::vector<int32_t> am(4);
  EXPECT_THROW(pool_forward_cpu(p, x.data(), y.data(), nullptr), Error);  // max needs argmax
  PoolParams bad = p;
  bad.out_h = 3;
  EXPECT_THROW(pool_forward_cpu(bad, x.data(), y.data(), am.data()), Error);
  EXPECT_THROW(pool_backward_cpu(bad, y.data(), am.data(), 0.f, dx.data()), Error);
  p.method = PoolMethod::Ave;
  EXPECT_NO_THROW(pool_forward_cpu(p, x.data(), y.data(), nullptr));  // ave: argmax unused
}

TEST(PoolForward, MatchesReference) {
  uint64_t seed = 100;
  for (const Case& cs : shape_cases()) {
    SCOPED_TRACE(cs.name());
    const PoolParams p = cs.params();
    const auto x = random_vector(p.n * p.c * p.h * p.w, ++seed, -2.f, 2.f);
    const Ref ref = ref_forward(p, x);
    std::vector<float> y(ref.y.size(), std::nanf(""));
    std::vector<int32_t> am(ref.y.size(), -7);
    pool_forward_cpu(p, x.data(), y.data(), cs.method == PoolMethod::Max ? am.data() : nullptr);
    if (cs.method == PoolMethod::Max) {
      EXPECT_EQ(y, ref.y);  // a copy: exact
      EXPECT_EQ(am, ref.argmax);
    } else {
      EXPECT_TRUE(all_close(ref.y, y, 1e-6f, 1e-5f));
    }
  }
}

TEST(PoolForward, ArgmaxFirstMaximumWins) {
  // Values from {0, 1, 2}: most windows hold ties; the reference takes the first in row-major order.
  uint64_t seed = 7;
  for (const Case& cs : shape_cases()) {
    if (cs.method != PoolMethod::Max) continue;
    SCOPED_TRACE(cs.name());
    const PoolParams p = cs.params();
    auto x = random_vector(p.n * p.c * p.h * p.w, ++seed, 0.f, 3.f);
    for (float& v : x) v = std::floor(v);
    const Ref ref = ref_forward(p, x);
    std::vector<float> y(ref.y.size());
    std::vector<int32_t> am(ref.y.size());
    pool_forward_cpu(p, x.data(), y.data(), am.data());
    EXPECT_EQ(am, ref.argmax);
    EXPECT_EQ(y, ref.y);
  }
  // A constant plane: every window picks its first in-image cell (top-left after clipping).
  const PoolParams p = make_pool_params(PoolMethod::Max, 3, 3, 1, 1, 1, 1, 1, 1, 4, 5);
  std::vector<float> x(20, -3.f), y(static_cast<size_t>(p.out_h * p.out_w));
  std::vector<int32_t> am(y.size());
  pool_forward_cpu(p, x.data(), y.data(), am.data());
  for (int64_t oh = 0; oh < p.out_h; ++oh)
    for (int64_t ow = 0; ow < p.out_w; ++ow)
      EXPECT_EQ(am[oh * p.out_w + ow], std::max<int64_t>(oh - 1, 0) * 5 + std::max<int64_t>(ow - 1, 0));
  // Two equal maxima in one 2x2 window: the earlier row-major one.
  const PoolParams q = make_pool_params(PoolMethod::Max, 2, 2, 2, 2, 0, 0, 1, 1, 2, 2);
  const std::vector<float> t = {1.f, 5.f, 5.f, 0.f};
  float v;
  int32_t a;
  pool_forward_cpu(q, t.data(), &v, &a);
  EXPECT_EQ(v, 5.f);
  EXPECT_EQ(a, 1);
}

TEST(PoolForward, MaxPropagatesNaN) {
  const PoolParams p = make_pool_params(PoolMethod::Max, 2, 2, 2, 2, 0, 0, 1, 1, 2, 4);
  const float nan = std::nanf("");
  const std::vector<float> x = {1.f, nan, 3.f, 4.f, 2.f, 9.f, nan, 0.f};
  std::vector<float> y(2);
  std::vector<int32_t> am(2);
  pool_forward_cpu(p, x.data(), y.data(), am.data());
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(am[0], 1);
  EXPECT_TRUE(std::isnan(y[1]));
  EXPECT_EQ(am[1], 6);
}

TEST(PoolForward, AveDivisorAtBorders) {
  // All-ones 4x4, 3x3 stride 2 pad 1: out 3x3. Per dimension the windows cover padded rows
  // [-1, 2), [1, 4), [3, 5) (the last one clipped at in + pad = 5): divisors 3, 3, 2, with
  // 2, 3, 1 image rows. y = (image cells) / (divisor_h * divisor_w).
  {
    const PoolParams p = make_pool_params(PoolMethod::Ave, 3, 3, 2, 2, 1, 1, 1, 1, 4, 4);
    ASSERT_EQ(p.out_h, 3);
    std::vector<float> x(16, 1.f), y(9);
    pool_forward_cpu(p, x.data(), y.data(), nullptr);
    const float img[3] = {2, 3, 1}, div[3] = {3, 3, 2};
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j)
        EXPECT_FLOAT_EQ(y[i * 3 + j], img[i] * img[j] / (div[i] * div[j])) << i << "," << j;
    EXPECT_FLOAT_EQ(y[0], 4.f / 9.f);
    EXPECT_FLOAT_EQ(y[8], 1.f / 4.f);
  }
  // No pad, ceil overhang: 5 wide, 2/2 -> 3 outputs; the last window holds one cell, divisor 1.
  {
    const PoolParams p = make_pool_params(PoolMethod::Ave, 1, 2, 1, 2, 0, 0, 1, 1, 1, 5);
    ASSERT_EQ(p.out_w, 3);
    const std::vector<float> x = {1.f, 3.f, 5.f, 7.f, 10.f};
    std::vector<float> y(3);
    pool_forward_cpu(p, x.data(), y.data(), nullptr);
    EXPECT_FLOAT_EQ(y[0], 2.f);
    EXPECT_FLOAT_EQ(y[1], 6.f);
    EXPECT_FLOAT_EQ(y[2], 10.f);
  }
  // Pad and overhang: 6 wide, 3/2 pad 1 -> 4 outputs; the last window [5, 8) counts padded
  // cells 5 and 6 (6 is padding), not 7 (overhang): divisor 2, one image cell.
  {
    const PoolParams p = make_pool_params(PoolMethod::Ave, 1, 3, 1, 2, 0, 1, 1, 1, 1, 6);
    ASSERT_EQ(p.out_w, 4);
    const std::vector<float> x = {1.f, 2.f, 3.f, 4.f, 5.f, 6.f};
    std::vector<float> y(4);
    pool_forward_cpu(p, x.data(), y.data(), nullptr);
    EXPECT_FLOAT_EQ(y[0], (1.f + 2.f) / 3.f);
    EXPECT_FLOAT_EQ(y[1], (2.f + 3.f + 4.f) / 3.f);
    EXPECT_FLOAT_EQ(y[2], (4.f + 5.f + 6.f) / 3.f);
    EXPECT_FLOAT_EQ(y[3], 6.f / 2.f);
  }
}

// The CPU loops (SIMD interior columns, per-plane scatter) give bit for bit what the per-output
// and per-input-cell functions of pool_math.h give, which is what the CUDA kernels compute.
TEST(PoolForward, EqualsPerOutputMath) {
  uint64_t seed = 1000;
  for (const Case& cs : shape_cases()) {
    SCOPED_TRACE(cs.name());
    const PoolParams p = cs.params();
    auto x = random_vector(p.n * p.c * p.h * p.w, ++seed, -2.f, 2.f);
    if (cs.method == PoolMethod::Max)  // ties too
      for (size_t i = 0; i < x.size(); i += 3) x[i] = 1.f;
    const int64_t ny = p.n * p.c * p.out_h * p.out_w;
    std::vector<float> y(static_cast<size_t>(ny)), y_math(y.size());
    std::vector<int32_t> am(y.size()), am_math(y.size());
    pool_forward_cpu(p, x.data(), y.data(), am.data());
    for (int64_t pl = 0; pl < p.n * p.c; ++pl)
      for (int64_t oh = 0; oh < p.out_h; ++oh)
        for (int64_t ow = 0; ow < p.out_w; ++ow) {
          const int64_t o = (pl * p.out_h + oh) * p.out_w + ow;
          const PoolWindow win = pool_window(p, oh, ow);
          const float* plane = x.data() + pl * p.h * p.w;
          if (cs.method == PoolMethod::Max)
            pool_max_window(plane, p.w, win, &y_math[o], &am_math[o]);
          else
            y_math[o] = pool_ave_window(plane, p.w, win);
        }
    EXPECT_EQ(y, y_math);
    if (cs.method == PoolMethod::Max) {
      EXPECT_EQ(am, am_math);
    }
  }
}

TEST(PoolBackward, EqualsPerCellGatherMath) {
  uint64_t seed = 1100;
  for (const Case& cs : shape_cases()) {
    SCOPED_TRACE(cs.name());
    const PoolParams p = cs.params();
    const auto x = random_vector(p.n * p.c * p.h * p.w, ++seed);
    const auto dy = random_vector(p.n * p.c * p.out_h * p.out_w, ++seed);
    const auto old = random_vector(p.n * p.c * p.h * p.w, ++seed);
    std::vector<float> y(dy.size());
    std::vector<int32_t> am(dy.size());
    pool_forward_cpu(p, x.data(), y.data(), am.data());
    for (float beta : {0.f, 1.f}) {
      std::vector<float> dx = old, dx_math = old;
      pool_backward_cpu(p, dy.data(), am.data(), beta, dx.data());
      const int64_t out_sz = p.out_h * p.out_w;
      for (int64_t pl = 0; pl < p.n * p.c; ++pl)
        for (int64_t h = 0; h < p.h; ++h)
          for (int64_t w = 0; w < p.w; ++w) {
            int64_t oh0, oh1, ow0, ow1;
            pool_cover(h, p.kernel_h, p.stride_h, p.pad_h, p.out_h, &oh0, &oh1);
            pool_cover(w, p.kernel_w, p.stride_w, p.pad_w, p.out_w, &ow0, &ow1);
            const float* dyp = dy.data() + pl * out_sz;
            const float g = cs.method == PoolMethod::Max
                                ? pool_max_grad(dyp, am.data() + pl * out_sz, p.out_w,
                                                static_cast<int32_t>(h * p.w + w), oh0, oh1, ow0, ow1)
                                : pool_ave_grad(p, dyp, oh0, oh1, ow0, ow1);
            store_grad(dx_math[(pl * p.h + h) * p.w + w], beta, g);
          }
      EXPECT_EQ(dx, dx_math) << "beta " << beta;
    }
  }
}

TEST(PoolBackward, MatchesScatterReference) {
  uint64_t seed = 300;
  for (const Case& cs : shape_cases()) {
    SCOPED_TRACE(cs.name());
    const PoolParams p = cs.params();
    const auto x = random_vector(p.n * p.c * p.h * p.w, ++seed);
    const auto dy = random_vector(p.n * p.c * p.out_h * p.out_w, ++seed);
    std::vector<float> y(dy.size());
    std::vector<int32_t> am(dy.size());
    pool_forward_cpu(p, x.data(), y.data(), am.data());
    std::vector<float> dx(x.size(), std::nanf(""));  // beta 0 must not read it
    pool_backward_cpu(p, dy.data(), am.data(), 0.f, dx.data());
    EXPECT_TRUE(all_close(ref_backward(p, dy, am), dx, 1e-6f, 1e-5f));
  }
}

// Central differences of L = sum(w * y) with Caffe's step and threshold.
TEST(PoolBackward, FiniteDifferenceGradient) {
  const std::vector<Case> cases = {
      {PoolMethod::Max, 2, 2, 2, 2, 0, 0, 2, 2, 6, 6}, {PoolMethod::Max, 3, 3, 2, 2, 0, 0, 1, 2, 7, 7},
      {PoolMethod::Max, 3, 3, 1, 1, 1, 1, 1, 2, 5, 6}, {PoolMethod::Max, 3, 2, 2, 1, 2, 1, 2, 1, 6, 5},
      {PoolMethod::Ave, 2, 2, 2, 2, 0, 0, 2, 2, 6, 6}, {PoolMethod::Ave, 3, 3, 2, 2, 1, 1, 1, 2, 7, 7},
      {PoolMethod::Ave, 3, 3, 1, 1, 1, 1, 1, 2, 5, 6}, {PoolMethod::Ave, 3, 2, 2, 1, 2, 1, 2, 1, 6, 5},
  };
  uint64_t seed = 500;
  for (const Case& cs : cases) {
    SCOPED_TRACE(cs.name());
    const PoolParams p = cs.params();
    const int64_t nx = p.n * p.c * p.h * p.w, ny = p.n * p.c * p.out_h * p.out_w;
    // Distinct values 0.05 apart, shuffled: a +-0.01 step never reorders two of them.
    std::vector<float> x(static_cast<size_t>(nx));
    for (int64_t i = 0; i < nx; ++i) x[i] = 0.05f * static_cast<float>(i - nx / 2);
    HostRng rng(++seed, 1);
    for (int64_t i = nx - 1; i > 0; --i) std::swap(x[i], x[rng.next_u32() % (i + 1)]);
    const auto w = random_vector(ny, ++seed);
    std::vector<float> y(static_cast<size_t>(ny));
    std::vector<int32_t> am(static_cast<size_t>(ny));
    auto loss = [&](const std::vector<float>& xx) {
      pool_forward_cpu(p, xx.data(), y.data(), am.data());
      double l = 0;
      for (int64_t i = 0; i < ny; ++i) l += double(w[i]) * y[i];
      return l;
    };
    loss(x);
    std::vector<float> dx(static_cast<size_t>(nx));
    pool_backward_cpu(p, w.data(), am.data(), 0.f, dx.data());
    const float step = 1e-2f;
    int nonzero = 0;
    for (int64_t i = 0; i < nx; ++i) {
      std::vector<float> xp = x, xm = x;
      xp[i] += step;
      xm[i] -= step;
      const double num = (loss(xp) - loss(xm)) / (double(xp[i]) - double(xm[i]));
      const double a = dx[i];
      EXPECT_LE(std::fabs(a - num), 1e-3 * std::max({std::fabs(a), std::fabs(num), 1.0}))
          << "x[" << i << "]: analytic " << a << " numeric " << num;
      nonzero += a != 0;
    }
    EXPECT_GT(nonzero, 0);
  }
}

TEST(PoolBackward, BetaAccumulates) {
  uint64_t seed = 900;
  for (const Case& cs : shape_cases()) {
    SCOPED_TRACE(cs.name());
    const PoolParams p = cs.params();
    const auto x = random_vector(p.n * p.c * p.h * p.w, ++seed);
    const auto dy = random_vector(p.n * p.c * p.out_h * p.out_w, ++seed);
    const auto old = random_vector(p.n * p.c * p.h * p.w, ++seed);
    std::vector<float> y(dy.size());
    std::vector<int32_t> am(dy.size());
    pool_forward_cpu(p, x.data(), y.data(), am.data());
    std::vector<float> g(x.size());
    pool_backward_cpu(p, dy.data(), am.data(), 0.f, g.data());
    for (float beta : {1.f, 0.5f}) {
      std::vector<float> dx = old, expect(x.size());
      for (size_t i = 0; i < x.size(); ++i) expect[i] = beta * old[i] + g[i];
      pool_backward_cpu(p, dy.data(), am.data(), beta, dx.data());
      EXPECT_TRUE(all_close(expect, dx, 1e-6f, 1e-6f)) << "beta " << beta;
    }
  }
}

}  // namespace
}  // namespace dropnet
