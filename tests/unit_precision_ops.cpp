// The `precision` key on the CPU: SGEMM (native kernel and OpenBLAS) and the convolution (forward,
// backward data, backward filter) at tf32 and bf16 against a double-precision reference computed
// from operands pre-rounded with precision::round (the one rounding every backend applies), with
// a tolerance for FP32 accumulation only; each case also checks that the reduced-precision result
// is measurably not the FP32 one (so a backend that skipped the rounding fails). Then the config
// key (default, override, unknown value) and the net carrying it to every conv and fc layer, and a
// LeNet-like net trained at tf32 and bf16 whose loss curve tracks the fp32 curve.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/config.h"
#include "data/sources.h"
#include "kernels/conv.h"
#include "kernels/gemm.h"
#include "kernels/precision_math.h"
#include "optim/solver.h"
#include "tests/testing/harness.h"
#include "tests/testing/precision_ref.h"
#include "tools/cli_common.h"

namespace dropnet {
namespace {

using testing::random_vector;
namespace pref = testing::precision_ref;

constexpr Precision kReduced[] = {Precision::TF32, Precision::BF16};

struct Shape3 {
  int64_t m, n, k;
  bool ta, tb;
};

// Odd sizes, every transpose, K across the packing block (256), a K-split shape (20 x 25 x 3000:
// the weight-gradient form) and one large enough to run on several threads.
const Shape3 kGemmShapes[] = {{1, 1, 1, false, false},    {7, 13, 5, false, true},     {37, 70, 300, true, false},
                              {37, 70, 300, true, true},  {130, 65, 257, false, false}, {20, 25, 3000, false, true},
                              {6, 200, 33, true, true},   {150, 300, 129, false, false}};

void check_gemm(pref::GemmPtr fn, const char* impl, Precision prec) {
  uint64_t seed = 11;
  for (const Shape3& s : kGemmShapes) {
    const int64_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
    const std::vector<float> a = random_vector(s.m * s.k, seed++), b = random_vector(s.k * s.n, seed++);
    std::vector<float> c(static_cast<size_t>(s.m * s.n), NAN);
    fn(s.ta, s.tb, s.m, s.n, s.k, 1.f, a.data(), lda, b.data(), ldb, 0.f, c.data(), s.n, prec);
    const pref::GemmRef ref = pref::gemm(s.ta, s.tb, s.m, s.n, s.k, a.data(), lda, b.data(), ldb, prec);
    EXPECT_TRUE(pref::matches(ref, c))
        << impl << " " << precision_name(prec) << " " << s.m << "x" << s.n << "x" << s.k << " ta " << s.ta
        << " tb " << s.tb;
    if (s.k >= 5) EXPECT_TRUE(pref::differs_from_fp32(ref, c)) << impl << " " << s.m << "x" << s.n << "x" << s.k;
  }
}

TEST(GemmPrecisionTf32Bf16, NativeTf32MatchesRoundedReference) {
  check_gemm(sgemm_native_cpu_prec, "native", Precision::TF32);
}
TEST(GemmPrecisionTf32Bf16, NativeBf16MatchesRoundedReference) {
  check_gemm(sgemm_native_cpu_prec, "native", Precision::BF16);
}
TEST(GemmPrecisionTf32Bf16, OpenBlasTf32MatchesRoundedReference) {
  check_gemm(sgemm_openblas_prec, "openblas", Precision::TF32);
}
TEST(GemmPrecisionTf32Bf16, OpenBlasBf16MatchesRoundedReference) {
  check_gemm(sgemm_openblas_prec, "openblas", Precision::BF16);
}

// fp32 through the _prec form is the plain FP32 form, bit for bit.
TEST(GemmPrecisionTf32Bf16, Fp32PrecFormIsBitIdenticalToThePlainForm) {
  const std::vector<float> a = random_vector(37 * 300, 3), b = random_vector(300 * 70, 4);
  std::vector<float> c1(37 * 70), c2(37 * 70);
  sgemm_native_cpu(true, false, 37, 70, 300, 1.f, a.data(), 37, b.data(), 70, 0.f, c1.data(), 70);
  sgemm_native_cpu_prec(true, false, 37, 70, 300, 1.f, a.data(), 37, b.data(), 70, 0.f, c2.data(), 70, Precision::FP32);
  EXPECT_EQ(c1, c2);
}

// Alpha, beta and a strided C go through the rounded path like the FP32 one (C itself is not an
// operand: it is never rounded).
TEST(GemmPrecisionTf32Bf16, Bf16AlphaBetaKeepCUnrounded) {
  const int64_t m = 9, n = 11, k = 40, ldc = 15;
  const std::vector<float> a = random_vector(m * k, 5), b = random_vector(k * n, 6), c0 = random_vector(m * ldc, 7);
  std::vector<float> c = c0;
  sgemm_native_cpu_prec(false, false, m, n, k, 0.5f, a.data(), k, b.data(), n, 0.25f, c.data(), ldc, Precision::BF16);
  const pref::GemmRef ref = pref::gemm(false, false, m, n, k, a.data(), k, b.data(), n, Precision::BF16);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      const float got = c[i * ldc + j];
      if (j >= n) {
        EXPECT_EQ(got, c0[i * ldc + j]) << "padding column " << j << " was written";
        continue;
      }
      const double want = 0.5 * ref.value[i * n + j] + 0.25 * double(c0[i * ldc + j]);
      EXPECT_NEAR(got, want, 0.5 * ref.tolerance[i * n + j] + 1e-6) << i << "," << j;
    }
}

// ---- convolution --------------------------------------------------------------------------

using pref::ConvCase;
const ConvCase kConvCases[] = {
    {"odd_3x3_pad1", 2, 5, 13, 11, 7, 3, 1, 1, 1},
    {"k5_s2", 3, 3, 17, 15, 6, 5, 2, 0, 1},
    {"group2_s2", 2, 8, 9, 9, 6, 3, 2, 1, 2},
    {"pointwise", 2, 16, 7, 7, 9, 1, 1, 0, 1},
};

using pref::conv_params;

TEST(ConvPrecisionTf32Bf16, CpuForwardAndBackwardMatchRoundedReference) {
  for (Precision prec : kReduced)
    for (const ConvCase& k : kConvCases) {
      SCOPED_TRACE(fmt::format("{} {}", k.name, precision_name(prec)));
      const ConvParams p = conv_params(k, prec);
      const pref::ConvData d = pref::conv_data(p, 21);
      ConvScratch s;
      std::vector<float> y(d.y_count, NAN), dx(d.x.size(), NAN), dw(d.w.size(), 0.f);
      conv_forward_cpu(p, d.x.data(), d.w.data(), nullptr, y.data(), s);
      conv_backward_cpu(p, d.x.data(), d.w.data(), d.dy.data(), dw.data(), nullptr, 0.f, dx.data(), s);
      const pref::ConvRef ref = pref::conv(p, d);
      EXPECT_TRUE(pref::matches(ref.y, y)) << "forward";
      EXPECT_TRUE(pref::matches(ref.dx, dx)) << "backward data";
      EXPECT_TRUE(pref::matches(ref.dw, dw)) << "backward filter";
      EXPECT_TRUE(pref::differs_from_fp32(ref.y, y)) << "forward";
      EXPECT_TRUE(pref::differs_from_fp32(ref.dx, dx)) << "backward data";
      EXPECT_TRUE(pref::differs_from_fp32(ref.dw, dw)) << "backward filter";
    }
}

// ---- the config key -----------------------------------------------------------------------

const char* kSmallNet = R"(name: precision_check
data:
  train: {source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 16, batch_size: 4}
solver: {base_lr: 0.05, max_iter: 4, display: 0}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 4, kernel: 3}
  - {name: relu1, type: relu, bottom: conv1, top: relu1}
  - {name: ip1, type: fc, bottom: relu1, top: ip1, num_output: 4}
  - {name: loss, type: softmax_loss, bottom: [ip1, label], top: loss}
)";

TEST(ConfigPrecisionTf32Bf16, DefaultIsFp32AndOverridesSetBf16AndTf32) {
  EXPECT_EQ(cli::read_run_settings(load_config_text(kSmallNet, "net.yaml")).precision, Precision::FP32);
  EXPECT_EQ(cli::read_run_settings(load_config_text(kSmallNet, "net.yaml", {"precision=bf16"})).precision,
            Precision::BF16);
  EXPECT_EQ(cli::read_run_settings(load_config_text(std::string("precision: tf32\n") + kSmallNet, "net.yaml"))
                .precision,
            Precision::TF32);
  // The command line wins over the file.
  EXPECT_EQ(cli::read_run_settings(
                load_config_text(std::string("precision: tf32\n") + kSmallNet, "net.yaml", {"precision=fp32"}))
                .precision,
            Precision::FP32);
}

TEST(ConfigPrecisionTf32Bf16, UnknownValueIsAnInputErrorNamingKeyAndValue) {
  const std::string msg = testing::input_error_of(
      [] { cli::read_run_settings(load_config_text(kSmallNet, "net.yaml", {"precision=fp16"})); });
  EXPECT_NE(msg.find("precision"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fp16"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tf32"), std::string::npos) << msg;  // the choices are listed
}

TEST(ConfigPrecisionTf32Bf16, NetCarriesBf16ToEveryConvAndFcLayer) {
  const LoadedConfig cfg = load_config_text(kSmallNet, "net.yaml", {"precision=bf16"});
  const cli::RunSettings run = cli::read_run_settings(cfg);
  NetOptions no = cli::net_options(run, Device::cpu(), Phase::Train);
  Net net(cfg, no);
  int checked = 0;
  for (int i = 0; i < net.num_layers(); ++i) {
    const LayerInfo& info = net.layer(i).info();
    EXPECT_EQ(info.precision, Precision::BF16) << info.name;
    checked += info.type == "conv" || info.type == "fc";
  }
  EXPECT_EQ(checked, 2);
}

// ---- training -----------------------------------------------------------------------------

std::vector<float> train_losses(Precision prec, int iters) {
  SolverOptions so;
  so.net.device = Device::cpu();
  so.net.seed = 5;
  so.net.source_factory = make_batch_source;
  so.net.precision = prec;
  so.quiet = true;
  Solver s(load_config_text(pref::lenet_yaml(iters), "lenet_precision.yaml"), so);
  std::vector<float> losses;
  for (int i = 0; i < iters; ++i) {
    s.step(1);
    losses.push_back(s.loss_window().back());
  }
  return losses;
}

// A small LeNet (precision_ref.h) memorizing 16 synthetic images, 30 iterations from the same seed
// at fp32, tf32 and bf16. Tolerance (stated in precision_ref.h, kLossTolerance*): the
// reduced-precision curve stays within 2% (tf32) / 5% (bf16) of the fp32 loss, relative, at every
// iteration (observed: 0.6% / 2.9%), and the fp32 run learns (last loss under 60% of the first).
TEST(TrainPrecisionTf32Bf16, LenetLossCurveTracksFp32OnCpu) {
  // One thread: the net is tiny (OpenMP's fork / join would dominate on a loaded 2-core runner).
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const int iters = 30;
  const std::vector<float> fp32 = train_losses(Precision::FP32, iters);
  for (Precision prec : kReduced) {
    const std::vector<float> got = train_losses(prec, iters);
    const double tol = prec == Precision::TF32 ? pref::kLossToleranceTf32 : pref::kLossToleranceBf16;
    const ::testing::AssertionResult tracks = pref::curve_tracks(fp32, got, tol);
    EXPECT_TRUE(tracks) << precision_name(prec);
    std::printf("%s: %s\n", precision_name(prec), tracks.message());
    EXPECT_NE(fp32, got) << precision_name(prec) << ": the curve is the fp32 one, bit for bit";
  }
  EXPECT_LT(fp32.back(), 0.6f * fp32.front()) << "the fp32 reference did not learn";
  omp_set_num_threads(saved_threads);
}

}  // namespace
}  // namespace dropnet
