#include "tests/testing/precision_ref.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "tests/testing/harness.h"

namespace dropnet::testing::precision_ref {

namespace {

// One output's sums: rounded, unrounded, sum of |products|, terms.
struct Acc {
  double r = 0, f = 0, s = 0;
  int64_t k = 0;
  void add(float a, float b, Precision prec) {
    const double ra = precision::round(prec, a), rb = precision::round(prec, b);
    r += ra * rb;
    f += double(a) * double(b);
    s += std::fabs(ra * rb);
    ++k;
  }
};

Ref finish(const std::vector<Acc>& acc) {
  Ref out;
  for (const Acc& a : acc) {
    out.value.push_back(a.r);
    out.fp32.push_back(a.f);
    out.abs_sum.push_back(a.s);
    out.tolerance.push_back(4.0 * std::sqrt(double(std::max<int64_t>(a.k, 1))) * std::ldexp(a.s, -24) + 1e-30);
  }
  return out;
}

}  // namespace

Ref gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
         Precision prec) {
  std::vector<Acc> acc(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t p = 0; p < k; ++p)
        acc[i * n + j].add(ta ? a[p * lda + i] : a[i * lda + p], tb ? b[j * ldb + p] : b[p * ldb + j], prec);
  return finish(acc);
}

::testing::AssertionResult matches(const Ref& ref, const std::vector<float>& got) {
  if (got.size() != ref.value.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << ref.value.size();
  size_t bad = 0, worst = 0;
  double worst_ratio = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - ref.value[i]);
    const double ratio = std::isfinite(err) ? err / ref.tolerance[i] : INFINITY;
    if (ratio > 1) ++bad;
    if (ratio > worst_ratio || i == 0) worst_ratio = ratio, worst = i;
  }
  auto r = bad ? ::testing::AssertionFailure() : ::testing::AssertionSuccess();
  return r << bad << " of " << got.size() << " elements outside the tolerance; worst [" << worst << "]: got "
           << got[worst] << ", reference " << ref.value[worst] << ", tolerance " << ref.tolerance[worst]
           << " (error / tolerance " << worst_ratio << ")";
}

::testing::AssertionResult differs_from_fp32(const Ref& ref, const std::vector<float>& got) {
  size_t off = 0;
  for (size_t i = 0; i < got.size() && i < ref.fp32.size(); ++i)
    if (std::fabs(double(got[i]) - ref.fp32[i]) > ref.tolerance[i]) ++off;
  auto r = off ? ::testing::AssertionSuccess() : ::testing::AssertionFailure();
  return r << off << " of " << got.size() << " elements differ from the FP32 result by more than the tolerance";
}

ConvData conv_data(const ConvParams& p, uint64_t seed) {
  ConvData d;
  d.y_count = p.n * p.out_c * p.out_h * p.out_w;
  d.x = random_vector(p.n * p.c * p.h * p.w, seed);
  d.w = random_vector(p.out_c * (p.c / p.group) * p.kh * p.kw, seed + 1);
  d.dy = random_vector(d.y_count, seed + 2);
  return d;
}

ConvRef conv(const ConvParams& p, const ConvData& d) {
  const int64_t cg = p.c / p.group, og = p.out_c / p.group;
  std::vector<Acc> y(static_cast<size_t>(d.y_count)), dx(d.x.size()), dw(d.w.size());
  for (int64_t b = 0; b < p.n; ++b)
    for (int64_t o = 0; o < p.out_c; ++o)
      for (int64_t oy = 0; oy < p.out_h; ++oy)
        for (int64_t ox = 0; ox < p.out_w; ++ox) {
          const int64_t yi = ((b * p.out_c + o) * p.out_h + oy) * p.out_w + ox;
          for (int64_t cl = 0; cl < cg; ++cl)
            for (int ki = 0; ki < p.kh; ++ki)
              for (int kj = 0; kj < p.kw; ++kj) {
                const int64_t iy = oy * p.sh - p.ph + ki, ix = ox * p.sw - p.pw + kj;
                if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
                const int64_t ci = (o / og) * cg + cl;
                const int64_t xi = ((b * p.c + ci) * p.h + iy) * p.w + ix;
                const int64_t wi = ((o * cg + cl) * p.kh + ki) * p.kw + kj;
                y[yi].add(d.w[wi], d.x[xi], p.prec);
                dx[xi].add(d.w[wi], d.dy[yi], p.prec);
                dw[wi].add(d.x[xi], d.dy[yi], p.prec);
              }
        }
  return {finish(y), finish(dx), finish(dw)};
}

ConvParams conv_params(const ConvCase& k, Precision prec) {
  ConvParams p{k.n, k.c, k.h, k.w, k.out, conv_out_size(k.h, k.k, k.s, k.pad), conv_out_size(k.w, k.k, k.s, k.pad),
               k.k, k.k, k.s, k.s, k.pad, k.pad, k.group};
  p.prec = prec;
  return p;
}

std::string lenet_yaml(int iters, const std::string& engine) {
  return fmt::format(R"(name: lenet_precision
data:
  train: {{source: synthetic, shape: [1, 16, 16], num_classes: 4, num_samples: 16, batch_size: 8,
          scale: 0.00390625}}
solver: {{base_lr: 0.02, momentum: 0.9, weight_decay: 0.0005, max_iter: {iters}, display: 0}}
layers:
  - {{name: data, type: data, top: [data, label]}}
  - {{name: conv1, type: conv, bottom: data, top: conv1, num_output: 8, kernel: 5, weight_filler: {{type: xavier}},
      engine: {engine}}}
  - {{name: pool1, type: pool, bottom: conv1, top: pool1, method: max, kernel: 2, stride: 2}}
  - {{name: conv2, type: conv, bottom: pool1, top: conv2, num_output: 16, kernel: 3, weight_filler: {{type: xavier}},
      engine: {engine}}}
  - {{name: pool2, type: pool, bottom: conv2, top: pool2, method: max, kernel: 2, stride: 2}}
  - {{name: ip1, type: fc, bottom: pool2, top: ip1, num_output: 64, weight_filler: {{type: xavier}}, engine: {fc}}}
  - {{name: relu1, type: relu, bottom: ip1, top: relu1}}
  - {{name: ip2, type: fc, bottom: relu1, top: ip2, num_output: 4, weight_filler: {{type: xavier}}, engine: {fc}}}
  - {{name: loss, type: softmax_loss, bottom: [ip2, label], top: loss}}
)",
                     fmt::arg("iters", iters), fmt::arg("engine", engine),
                     fmt::arg("fc", engine == "cudnn" ? "native" : engine));
}

std::string small_alexnet13_yaml(int iters) {
  return fmt::format(R"(name: small_alexnet13
data:
  train: {{source: synthetic, shape: [3, 32, 32], num_classes: 4, num_samples: 8, batch_size: 8,
          scale: 0.00390625}}
solver: {{base_lr: 0.05, momentum: 0.9, weight_decay: 0.0005, max_iter: {iters}, display: 0}}
layers:
  - {{name: data, type: data, top: [data, label]}}
  - {{name: conv1_1, type: conv, bottom: data, top: c1_1, num_output: 16, kernel: 5, stride: 2,
      weight_filler: {{type: xavier}}}}
  - {{name: relu1_1, type: relu, bottom: c1_1, top: x1_1}}
  - {{name: conv1_2, type: conv, bottom: x1_1, top: c1_2, num_output: 16, kernel: 5, pad: 2,
      weight_filler: {{type: xavier}}}}
  - {{name: relu1_2, type: relu, bottom: c1_2, top: x1_2}}
  - {{name: dropin1, type: dropin, bottom: [x1_1, x1_2], top: d1, length: {length}}}
  - {{name: norm1, type: lrn, bottom: d1, top: n1, local_size: 5, alpha: 0.0001, beta: 0.75}}
  - {{name: pool1, type: pool, bottom: n1, top: p1, method: max, kernel: 3, stride: 2}}
  - {{name: conv2_1, type: conv, bottom: p1, top: c2_1, num_output: 32, kernel: 3, pad: 1, group: 2,
      weight_filler: {{type: xavier}}}}
  - {{name: relu2_1, type: relu, bottom: c2_1, top: x2_1}}
  - {{name: conv2_2, type: conv, bottom: x2_1, top: c2_2, num_output: 32, kernel: 3, pad: 1, group: 2,
      weight_filler: {{type: xavier}}}}
  - {{name: relu2_2, type: relu, bottom: c2_2, top: x2_2}}
  - {{name: dropin2, type: dropin, bottom: [x2_1, x2_2], top: d2, length: {length}}}
  - {{name: pool2, type: pool, bottom: d2, top: p2, method: max, kernel: 3, stride: 2}}
  - {{name: fc6, type: fc, bottom: p2, top: fc6, num_output: 64, weight_filler: {{type: xavier}}}}
  - {{name: relu6, type: relu, bottom: fc6, top: r6}}
  - {{name: drop6, type: dropout, bottom: r6, top: dr6, ratio: 0.1}}
  - {{name: fc8, type: fc, bottom: dr6, top: fc8, num_output: 4, weight_filler: {{type: xavier}}}}
  - {{name: loss, type: softmax_loss, bottom: [fc8, label], top: loss}}
)",
                     fmt::arg("iters", iters), fmt::arg("length", 2 * iters));
}

::testing::AssertionResult curve_tracks(const std::vector<float>& ref, const std::vector<float>& got, double tol) {
  if (ref.size() != got.size()) return ::testing::AssertionFailure() << "lengths " << ref.size() << ", " << got.size();
  double worst = 0;
  size_t at = 0;
  bool ok = true;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double rel = std::fabs(double(got[i]) - ref[i]) / std::max(double(ref[i]), 0.1);
    if (!(rel <= tol)) ok = false;
    if (!(rel <= worst)) worst = rel, at = i;
  }
  auto r = ok ? ::testing::AssertionSuccess() : ::testing::AssertionFailure();
  r << "worst relative loss difference " << worst << " at iteration " << at << " (fp32 " << ref[at] << ", got "
    << got[at] << ", tolerance " << tol << "); curves:";
  for (size_t i = 0; i < ref.size(); i += std::max<size_t>(1, ref.size() / 6)) r << " " << ref[i] << "/" << got[i];
  return r;
}

}  // namespace dropnet::testing::precision_ref
