// CPU SGEMM: the native kernel and the OpenBLAS wrapper against a naive double-precision
// reference, over transposes, odd sizes, padded leading dimensions, alpha/beta, NaN-filled C with
// beta == 0, the LeNet training shapes and 1 or 2 OpenMP threads.
#include <omp.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/gemm.h"
#include "tests/testing/gemm_cases.h"

namespace dropnet {
namespace {

using testing::check_gemm_case;
using testing::GemmCase;
using testing::GemmFn;
using testing::kGemmAlphas;
using testing::kGemmBetas;

// Padding through {0, 3, 16}; host operands are never misaligned.
std::vector<GemmCase> sweep_cases() {
  return testing::gemm_sweep_cases([](int idx, GemmCase& g) { g.pad = (idx % 7 == 0) ? 16 : (idx % 2) * 3; });
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
  testing::expect_gemm_sweep(sweep_cases(), 100, [&](const GemmCase& g, uint64_t seed) {
    return check_gemm_case(fn, g, seed);
  });
}

TEST(Gemm, NativeSweepOneThread) { run_sweep(kNative, 1); }
TEST(Gemm, NativeSweepTwoThreads) { run_sweep(kNative, 2); }
TEST(Gemm, OpenBlasSweep) { run_sweep(kOpenBlas, 1); }

// All alpha/beta combinations on shapes with edges in every dimension and transposes.
TEST(Gemm, NativeAlphaBeta) {
  uint64_t seed = 7;
  for (int t = 0; t < 4; ++t)
    for (float alpha : kGemmAlphas)
      for (float beta : kGemmBetas)
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
          EXPECT_TRUE(check_gemm_case(kNative, g, seed += 3));
        }
}

void run_lenet(const GemmFn& fn, int threads) {
  ThreadScope scope(threads);
  uint64_t seed = 900;
  for (GemmCase g : testing::gemm_lenet_cases()) {
    for (float beta : {0.f, 1.f}) {
      g.beta = beta;
      g.alpha = beta == 0.f ? 1.f : 0.5f;
      EXPECT_TRUE(check_gemm_case(fn, g, seed += 3));
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
  for (const GemmCase& g : shapes) EXPECT_TRUE(check_gemm_case(kNative, g, seed += 3));
}

// Inside a parallel region each thread runs its own GEMM single-threaded (thread-local packing).
TEST(Gemm, NativeInsideParallelRegion) {
  ThreadScope scope(2);
  std::vector<int> ok(4, 0);
#pragma omp parallel for num_threads(2) schedule(static, 1)
  for (int i = 0; i < 4; ++i) {
    GemmCase g{(i & 1) != 0, (i & 2) != 0, 150 + i, 700 - 37 * i, 260 + 11 * i, 1.f, i % 2 ? 0.3f : 0.f, i};
    ok[i] = check_gemm_case(kNative, g, 77 + i) ? 1 : 0;
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
  EXPECT_TRUE(check_gemm_case(kNative, g, 3));
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
    EXPECT_TRUE(check_gemm_case(dispatch, g, 11));
  }
}

}  // namespace
}  // namespace dropnet
