#include "tests/testing/gemm_cases.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tests/testing/harness.h"

namespace dropnet::testing {

namespace {

const int64_t kSizes[] = {1, 2, 3, 7, 15, 16, 17, 31, 33, 64, 65, 100, 127, 129};
constexpr int kNumSizes = sizeof(kSizes) / sizeof(kSizes[0]);

// Sentinel for the padding of C: the kernel must not write outside the logical columns.
constexpr float kPadSentinel = 12345.f;

}  // namespace

std::string GemmCase::str() const {
  return std::string(ta ? "T" : "N") + (tb ? "T" : "N") + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
         " k=" + std::to_string(k) + " alpha=" + std::to_string(alpha) + " beta=" + std::to_string(beta) +
         " pad=" + std::to_string(pad) + (misalign ? " misalign=" + std::to_string(misalign) : "");
}

std::vector<GemmCase> gemm_sweep_cases(const std::function<void(int idx, GemmCase& g)>& layout) {
  std::vector<GemmCase> cases;
  int idx = 0;
  for (int t = 0; t < 4; ++t)
    for (int i = 0; i < kNumSizes; ++i)
      for (int j = 0; j < kNumSizes; ++j, ++idx) {
        GemmCase g;
        g.ta = t & 1;
        g.tb = t & 2;
        g.m = kSizes[i];
        g.n = kSizes[j];
        g.k = kSizes[(i * 5 + j * 3 + t) % kNumSizes];
        g.alpha = kGemmAlphas[idx % 3];
        g.beta = kGemmBetas[(idx / 3) % 3];
        layout(idx, g);
        cases.push_back(g);
      }
  return cases;
}

std::vector<GemmCase> gemm_lenet_cases() {
  auto mk = [](bool ta, bool tb, int64_t m, int64_t n, int64_t k) {
    GemmCase g;
    g.ta = ta;
    g.tb = tb;
    g.m = m;
    g.n = n;
    g.k = k;
    return g;
  };
  return {mk(false, false, 20, 36864, 25),  mk(false, true, 20, 25, 36864),  // conv1 fwd, wgrad
          mk(false, false, 50, 4096, 500),  mk(false, true, 50, 500, 4096),  // conv2 fwd, wgrad
          mk(true, false, 500, 4096, 50),                                    // conv2 dgrad
          mk(false, true, 64, 500, 800),    mk(true, false, 500, 800, 64),   // fc1 fwd, wgrad
          mk(false, false, 64, 800, 500),   mk(false, true, 64, 10, 500),    // fc1 dgrad, fc2 fwd
          mk(true, false, 500, 10, 64),     mk(false, false, 64, 500, 10)};  // fc2 wgrad, dgrad
}

void sgemm_reference(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                     const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  // op(B) copied to a dense (k, n) array, rows of C accumulated in order: fast enough for the LeNet shapes.
  std::vector<double> opb(k * n), acc(n);
  for (int64_t p = 0; p < k; ++p)
    for (int64_t j = 0; j < n; ++j) opb[p * n + j] = tb ? b[j * ldb + p] : b[p * ldb + j];
  for (int64_t i = 0; i < m; ++i) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t p = 0; p < k; ++p) {
      const double av = ta ? a[p * lda + i] : a[i * lda + p];
      const double* brow = opb.data() + p * n;
      for (int64_t j = 0; j < n; ++j) acc[j] += av * brow[j];
    }
    for (int64_t j = 0; j < n; ++j) {
      double r = double(alpha) * acc[j];
      if (beta != 0.f) r += double(beta) * c[i * ldc + j];
      c[i * ldc + j] = static_cast<float>(r);
    }
  }
}

::testing::AssertionResult check_gemm_case(const GemmFn& fn, const GemmCase& g, uint64_t seed,
                                           const GemmFn& reference) {
  const int64_t a_rows = g.ta ? g.k : g.m, a_cols = g.ta ? g.m : g.k;
  const int64_t b_rows = g.tb ? g.n : g.k, b_cols = g.tb ? g.k : g.n;
  const int64_t lda = a_cols + g.pad, ldb = b_cols + g.pad, ldc = g.n + g.pad;
  const std::vector<float> a = random_vector(std::max<int64_t>(1, a_rows * lda), seed);
  const std::vector<float> b = random_vector(std::max<int64_t>(1, b_rows * ldb), seed + 1);
  std::vector<float> c = random_vector(std::max<int64_t>(1, g.m * ldc), seed + 2);
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      float& x = c[i * ldc + j];
      if (j >= g.n) x = kPadSentinel;
      else if (g.beta == 0.f) x = std::numeric_limits<float>::quiet_NaN();  // must not be read
    }

  std::vector<float> ref = c;
  reference(g.ta, g.tb, g.m, g.n, g.k, g.alpha, a.data(), lda, b.data(), ldb, g.beta, ref.data(), ldc);
  fn(g.ta, g.tb, g.m, g.n, g.k, g.alpha, a.data(), lda, b.data(), ldb, g.beta, c.data(), ldc);

  std::vector<float> want(g.m * g.n), got(g.m * g.n);
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) {
      want[i * g.n + j] = ref[i * ldc + j];
      got[i * g.n + j] = c[i * ldc + j];
    }
    for (int64_t j = g.n; j < ldc; ++j)
      if (c[i * ldc + j] != kPadSentinel)
        return ::testing::AssertionFailure() << g.str() << ": wrote C(" << i << ", " << j
                                             << ") outside the n columns";
  }
  const float atol = 1e-4f * std::sqrt(float(std::max<int64_t>(g.k, 1))) * std::max(1.f, std::fabs(g.alpha));
  ::testing::AssertionResult r = all_close(want, got, atol, 1e-4f);
  if (!r) r << " [" << g.str() << "]";
  return r;
}

void expect_gemm_sweep(const std::vector<GemmCase>& cases, uint64_t seed,
                       const std::function<::testing::AssertionResult(const GemmCase& g, uint64_t seed)>& check) {
  int failures = 0;
  for (const GemmCase& g : cases) {
    auto r = check(g, seed += 3);
    EXPECT_TRUE(r);
    if (!r && ++failures > 10) FAIL() << "stopping after 10 failing cases";
  }
}

}  // namespace dropnet::testing
