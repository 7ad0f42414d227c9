// CPU SGEMM: the native kernel and the OpenBLAS wrapper against a naive double-precision
// reference, over transposes, odd sizes, padded leading dimensions, alpha/beta, NaN-filled C with
// beta == 0, the LeNet training shapes and 1 or 2 OpenMP threads.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/gemm.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

using GemmFn = std::function<void(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                  const float*, int64_t, float, float*, int64_t)>;

struct GemmCase {
  bool ta = false, tb = false;
  int64_t m = 1, n = 1, k = 1;
  float alpha = 1.f, beta = 0.f;
  int64_t pad = 0;  // extra elements per row of A, B and C beyond the logical width
  std::string str() const {
    return std::string(ta ? "T" : "N") + (tb ? "T" : "N") + " m=" + std::to_string(m) +
           " n=" + std::to_string(n) + " k=" + std::to_string(k) + " alpha=" + std::to_string(alpha) +
           " beta=" + std::to_string(beta) + " pad=" + std::to_string(pad);
  }
};

// Sentinel for the padding of C: the kernel must not write outside the logical columns.
constexpr float kPadSentinel = 12345.f;

// Runs one case through `fn` and checks it against the double reference.
::testing::AssertionResult check_case(const GemmFn& fn, const GemmCase& g, uint64_t seed) {
  const int64_t a_rows = g.ta ? g.k : g.m, a_cols = g.ta ? g.m : g.k;
  const int64_t b_rows = g.tb ? g.n : g.k, b_cols = g.tb ? g.k : g.n;
  const int64_t lda = a_cols + g.pad, ldb = b_cols + g.pad, ldc = g.n + g.pad;
  const std::vector<float> a = testing::random_vector(std::max<int64_t>(1, a_rows * lda), seed);
  const std::vector<float> b = testing::random_vector(std::max<int64_t>(1, b_rows * ldb), seed + 1);
  std::vector<float> c = testing::random_vector(std::max<int64_t>(1, g.m * ldc), seed + 2);
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      float& x = c[i * ldc + j];
      if (j >= g.n) x = kPadSentinel;
      else if (g.beta == 0.f) x = std::numeric_limits<float>::quiet_NaN();  // must not be read
    }

  // Reference in double: op(B) copied to a dense (k, n) array, rows of C accumulated in order.
  std::vector<double> opb(g.k * g.n), acc(g.n);
  for (int64_t p = 0; p < g.k; ++p)
    for (int64_t j = 0; j < g.n; ++j) opb[p * g.n + j] = g.tb ? b[j * ldb + p] : b[p * ldb + j];
  std::vector<float> ref(g.m * g.n), got(g.m * g.n);
  for (int64_t i = 0; i < g.m; ++i) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t p = 0; p < g.k; ++p) {
      const double av = g.ta ? a[p * lda + i] : a[i * lda + p];
      const double* brow = opb.data() + p * g.n;
      for (int64_t j = 0; j < g.n; ++j) acc[j] += av * brow[j];
    }
    for (int64_t j = 0; j < g.n; ++j) {
      double r = double(g.alpha) * acc[j];
      if (g.beta != 0.f) r += double(g.beta) * c[i * ldc + j];
      ref[i * g.n + j] = static_cast<float>(r);
    }
  }

  fn(g.ta, g.tb, g.m, g.n, g.k, g.alpha, a.data(), lda, b.data(), ldb, g.beta, c.data(), ldc);

  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) got[i * g.n + j] = c[i * ldc + j];
    for (int64_t j = g.n; j < ldc; ++j)
      if (c[i * ldc + j] != kPadSentinel)
        return ::testing::AssertionFailure() << g.str() << ": wrote C(" << i << ", " << j
                                             << ") outside the n columns";
  }
  // Float accumulation error grows with the reduction length.
  const float atol = 1e-4f * std::sqrt(float(std::max<int64_t>(g.k, 1))) * std::max(1.f, std::fabs(g.alpha));
  ::testing::AssertionResult r = testing::all_close(ref, got, atol, 1e-4f);
  if (!r) r << " [" << g.str() << "]";
  return r;
}

const int64_t kSizes[] = {1, 2, 3, 7, 15, 16, 17, 31, 33, 64, 65, 100, 127, 129};
constexpr int kNumSizes = sizeof(kSizes) / sizeof(kSizes[0]);
const float kAlphas[] = {1.f, 0.5f, -2.f};
const float kBetas[] = {0.f, 1.f, 0.3f};

// Every (m, n) pair of kSizes under every transpose combination, k cycling through kSizes,
// alpha/beta cycling through all 9 combinations and the padding through {0, 3, 16}.
std::vector<GemmCase> sweep_cases() {
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
        g.alpha = kAlphas[idx % 3];
        g.beta = kBetas[(idx / 3) % 3];
        g.pad = (idx % 7 == 0) ? 16 : (idx % 2) * 3;
        cases.push_back(g);
      }
  return cases;
}

// The GEMMs of Caffe's LeNet at batch 64 (im2col over the whole batch) in their real layouts.
std::vector<GemmCase> lenet_cases() {
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

const GemmFn kNative = sgemm_native_cpu;
const GemmFn kOpenBlas = sgemm_openblas;

// Restores the OpenMP thread count after a test.
class ThreadScope {
 public:
  explicit ThreadScope(int threads) : saved_(omp_get_max_threads()) { omp_set_num_threads(threads); }
  ~ThreadScope() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

void run_sweep(const GemmFn& fn, int threads) {
  ThreadScope scope(threads);
  uint64_t seed = 100;
  int failures = 0;
  for (const GemmCase& g : sweep_cases()) {
    auto r = check_case(fn, g, seed += 3);
    EXPECT_TRUE(r);
    if (!r && ++failures > 10) FAIL() << "stopping after 10 failing cases";
  }
}

TEST(Gemm, NativeSweepOneThread) { run_sweep(kNative, 1); }
TEST(Gemm, NativeSweepTwoThreads) { run_sweep(kNative, 2); }
TEST(Gemm, OpenBlasSweep) { run_sweep(kOpenBlas, 1); }

// All alpha/beta combinations on shapes with edges in every dimension and transposes.
TEST(Gemm, NativeAlphaBeta) {
  uint64_t seed = 7;
  for (int t = 0; t < 4; ++t)
    for (float alpha : kAlphas)
      for (float beta : kBetas)
        for (int64_t pad : {0, 5}) {
          GemmCase g;
          g.ta = t & 1;
          g.tb = t & 2;
          g.m = 37;
          g.n = 83;
          g.k = 300;  // > KC: later K blocks accumulate onto the first
          g.alpha = alpha;
          g.beta = beta;
          g.pad = pad;
          EXPECT_TRUE(check_case(kNative, g, seed += 3));
        }
}

void run_lenet(const GemmFn& fn, int threads) {
  ThreadScope scope(threads);
  uint64_t seed = 900;
  for (GemmCase g : lenet_cases()) {
    for (float beta : {0.f, 1.f}) {
      g.beta = beta;
      g.alpha = beta == 0.f ? 1.f : 0.5f;
      EXPECT_TRUE(check_case(fn, g, seed += 3));
    }
  }
}

TEST(Gemm, NativeLeNetOneThread) { run_lenet(kNative, 1); }
TEST(Gemm, NativeLeNetTwoThreads) { run_lenet(kNative, 2); }
TEST(Gemm, OpenBlasLeNet) { run_lenet(kOpenBlas, 1); }

// Shapes that take each parallel partition (N split, M split, K split with its reduction)
// with ragged edges, beta != 0 and NaN-filled C under beta == 0.
TEST(Gemm, NativeParallelPartitions) {
  ThreadScope scope(2);
  uint64_t seed = 500;
  const GemmCase shapes[] = {
      {false, false, 300, 1000, 33, 1.f, 0.f, 0},   // N split
      {true, true, 1001, 15, 400, -2.f, 0.3f, 4},   // M split (N is one panel)
      {false, true, 20, 25, 9000, 0.5f, 1.f, 0},    // K split
      {true, false, 13, 7, 20011, 1.f, 0.f, 3},     // K split, odd K
      {false, false, 7, 3000, 500, 1.f, 0.3f, 1},   // few rows
  };
  for (const GemmCase& g : shapes) EXPECT_TRUE(check_case(kNative, g, seed += 3));
}

// Inside a parallel region each thread runs its own GEMM single-threaded (thread-local packing).
TEST(Gemm, NativeInsideParallelRegion) {
  ThreadScope scope(2);
  std::vector<int> ok(4, 0);
#pragma omp parallel for num_threads(2) schedule(static, 1)
  for (int i = 0; i < 4; ++i) {
    GemmCase g{(i & 1) != 0, (i & 2) != 0, 150 + i, 700 - 37 * i, 260 + 11 * i, 1.f, i % 2 ? 0.3f : 0.f, i};
    ok[i] = check_case(kNative, g, 77 + i) ? 1 : 0;
  }
  for (int i = 0; i < 4; ++i) EXPECT_EQ(ok[i], 1) << "case " << i;
}

TEST(Gemm, DegenerateSizes) {
  for (const GemmFn* fn : {&kNative, &kOpenBlas}) {
    // k == 0: C = beta * C; beta == 0 overwrites NaN with zeros.
    std::vector<float> c = {1.f, 2.f, std::numeric_limits<float>::quiet_NaN(), 4.f};
    const float dummy = 0.f;
    (*fn)(false, false, 2, 2, 0, 1.f, &dummy, 1, &dummy, 2, 0.f, c.data(), 2);
    for (float x : c) EXPECT_EQ(x, 0.f);
    c = {1.f, 2.f, 3.f, 4.f};
    (*fn)(false, false, 2, 2, 0, 1.f, &dummy, 1, &dummy, 2, 0.5f, c.data(), 2);
    EXPECT_EQ(c[3], 2.f);
    // m == 0 / n == 0: nothing is touched.
    (*fn)(false, false, 0, 2, 3, 1.f, &dummy, 3, &dummy, 2, 0.f, c.data(), 2);
    (*fn)(false, false, 2, 0, 3, 1.f, &dummy, 3, &dummy, 1, 0.f, c.data(), 1);
    EXPECT_EQ(c[0], 0.5f);
  }
  // alpha == 0 scales C by beta without reading A or B.
  GemmCase g{false, true, 9, 40, 17, 0.f, 0.3f, 2};
  EXPECT_TRUE(check_case(kNative, g, 3));
}

TEST(Gemm, RejectsBadLeadingDimension) {
  std::vector<float> a(64), b(64), c(64);
  EXPECT_THROW(sgemm_native_cpu(false, false, 4, 4, 4, 1.f, a.data(), 3, b.data(), 4, 0.f, c.data(), 4),
               Error);
  EXPECT_THROW(sgemm_native_cpu(true, false, 4, 4, 4, 1.f, a.data(), 4, b.data(), 4, 0.f, c.data(), 3),
               Error);
  EXPECT_THROW(sgemm_native_cpu(false, false, -1, 4, 4, 1.f, a.data(), 4, b.data(), 4, 0.f, c.data(), 4),
               Error);
}

TEST(Gemm, DispatchFollowsSetting) {
  EXPECT_EQ(cpu_gemm_impl(), CpuGemmImpl::Native);
  const GemmFn dispatch = sgemm_cpu;
  for (CpuGemmImpl impl : {CpuGemmImpl::OpenBlas, CpuGemmImpl::Native}) {
    set_cpu_gemm_impl(impl);
    EXPECT_EQ(cpu_gemm_impl(), impl);
    GemmCase g{true, false, 33, 65, 129, 0.5f, 0.f, 3};
    EXPECT_TRUE(check_case(dispatch, g, 11));
  }
}

}  // namespace
}  // namespace dropnet
