// Convolution on CUDA against the CPU path: im2col / col2im bit for bit (same arithmetic), and the
// conv layer's forward, backward-data (beta 0 and 1), backward-filter and bias gradients for every
// engine (native = im2col + hand-written SGEMM, cublas, cudnn when built) over a sweep of shape
// classes: odd sizes, tile non-multiples, rectangular kernels, stride, pad, groups, depthwise,
// batch 1, 1x1, AlexNet conv1/conv2-like. A separate check proves no engine uses TF32.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "core/device.h"
#include "core/tensor.h"
#include "kernels/conv.h"
#include "kernels/conv_cudnn.h"
#include "tests/testing/gradcheck.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

using testing::all_close;
using testing::LayerUnderTest;
using testing::make_layer_under_test;
using testing::random_vector;

struct ConvCase {
  const char* name;
  int64_t n, c, h, w, out;
  int kh, kw, sh, sw, ph, pw, group;
  bool bias;
};

const ConvCase kCases[] = {
    {"basic_3x3", 2, 3, 8, 8, 4, 3, 3, 1, 1, 0, 0, 1, true},
    {"odd_sizes_pad1", 3, 5, 13, 11, 7, 3, 3, 1, 1, 1, 1, 1, true},
    {"rect_kernel_stride_pad", 2, 4, 9, 14, 6, 3, 5, 2, 1, 1, 2, 1, true},
    {"k5_s3_p2", 2, 3, 17, 17, 5, 5, 5, 3, 3, 2, 2, 1, true},
    {"pad_wider_than_kernel_half", 1, 2, 4, 4, 3, 3, 3, 1, 1, 2, 2, 1, true},
    {"kernel_covers_input", 2, 3, 5, 5, 10, 5, 5, 1, 1, 0, 0, 1, true},
    {"group2", 2, 8, 10, 10, 12, 3, 3, 1, 1, 1, 1, 2, true},
    {"group4_odd", 3, 12, 7, 9, 8, 3, 3, 2, 2, 1, 0, 4, true},
    {"depthwise", 2, 6, 9, 9, 6, 3, 3, 1, 1, 1, 1, 6, true},
    {"batch1_s2", 1, 3, 15, 15, 9, 5, 5, 2, 2, 0, 0, 1, true},
    {"pointwise_1x1", 4, 16, 7, 7, 33, 1, 1, 1, 1, 0, 0, 1, true},
    // Under a sanitizer (emulated thread 3x to 30x dearer) the larger shapes keep their channels,
    // kernel, stride and padding, and their tile non-multiples, on one image or a smaller one.
    {"tile_nonmultiple", testing::on_gpu_or_emulated<int64_t>(3, 3, 1), 7, 31, 29, 65, 3, 3, 1, 1, 1, 1, 1, true},
    {"deep_k576_no_bias", testing::on_gpu_or_emulated<int64_t>(2, 2, 1), 64, 12, 12, 70, 3, 3, 1, 1, 1, 1, 1, false},
    // On the emulated device (one host thread) the AlexNet-like shapes keep their kernel, stride,
    // padding and channels on a smaller image batch: conv1's backward data is ~300x its useful
    // work there (3 input channels in 64-row tiles, 15 of 16 taps missing at stride 4).
    {"alexnet_conv1_like", testing::on_gpu_or_emulated<int64_t>(2, 1), 3,
     testing::on_gpu_or_emulated<int64_t>(227, 63, 31), testing::on_gpu_or_emulated<int64_t>(227, 63, 31), 96, 11, 11,
     4, 4, 0, 0, 1, true},
    {"alexnet_conv2_like", testing::on_gpu_or_emulated<int64_t>(2, 1), 96,
     testing::on_gpu_or_emulated<int64_t>(27, 27, 11), testing::on_gpu_or_emulated<int64_t>(27, 27, 11), 256, 5, 5,
     1, 1, 2, 2, 2, true},
};

// gtest prints parameters in failure messages: the case name, not the struct's bytes.
void PrintTo(const ConvCase& k, std::ostream* os) { *os << k.name; }

ConvParams params_of(const ConvCase& k) {
  return ConvParams{k.n, k.c, k.h, k.w, k.out, conv_out_size(k.h, k.kh, k.sh, k.ph),
                    conv_out_size(k.w, k.kw, k.sw, k.pw), k.kh, k.kw, k.sh, k.sw, k.ph, k.pw, k.group};
}

// engine: native (implicit GEMM on CUDA), native_im2col (engine native, algo im2col), cublas, cudnn.
std::string layer_yaml(const ConvCase& k, const std::string& engine) {
  const std::string e = engine == "native_im2col" ? "native, algo: im2col" : engine;
  return fmt::format(
      "{{name: conv, type: conv, bottom: x, top: y, num_output: {}, kernel: [{}, {}], stride: [{}, {}], pad: [{}, {}], "
      "group: {}, bias: {}, engine: {}}}",
      k.out, k.kh, k.kw, k.sh, k.sw, k.ph, k.pw, k.group, k.bias ? "true" : "false", e);
}

std::vector<std::string> engines() {
  std::vector<std::string> e = {"native", "native_im2col", "cublas"};
  if (cudnn_compiled()) e.push_back("cudnn");
  return e;
}

#if DROPNET_HAVE_CUDA
using testing::on_device;

// ---- im2col / col2im: the same index maps on both backends, so equality is exact ----------------

class CudaIm2col : public ::testing::TestWithParam<ConvCase> {};

TEST_P(CudaIm2col, MatchesCpuExactly) {
  DN_REQUIRE_CUDA();
  const ConvParams p = params_of(GetParam());
  const int64_t ncols = p.n * p.out_h * p.out_w, rows = p.c * p.kh * p.kw;
  const std::vector<float> x = random_vector(p.n * p.c * p.h * p.w, 11);
  std::vector<float> col(static_cast<size_t>(rows * ncols));
  im2col_cpu(p, x.data(), p.n, col.data());
  Tensor x_d = on_device(x), col_d(Shape{rows * ncols}, Device::cuda());
  col_d.fill(std::nanf(""));  // every element must be written
  im2col_cuda(p, x_d.data(), p.n, col_d.data(), cuda_stream());
  EXPECT_TRUE(all_close(col, col_d.to_host(), 0.f, 0.f)) << "im2col";

  // col2im, beta 0: per pixel both sum the taps in (ki, kj) order starting from 0.
  const std::vector<float> dcol = random_vector(rows * ncols, 12);
  std::vector<float> dx(x.size(), std::nanf("")), dcol_cpu = dcol;  // col2im_cpu may zero padding taps
  col2im_cpu(p, dcol_cpu.data(), p.n, 0.f, dx.data());
  Tensor dcol_d = on_device(dcol), dx_d(Shape{static_cast<int64_t>(x.size())}, Device::cuda());
  dx_d.fill(std::nanf(""));  // beta 0 must not read dx
  col2im_cuda(p, dcol_d.data(), p.n, 0.f, dx_d.data(), cuda_stream());
  EXPECT_TRUE(all_close(dx, dx_d.to_host(), 0.f, 0.f)) << "col2im beta 0";

  // beta 1 adds the old value (CPU before the taps, CUDA after): equal up to rounding.
  const std::vector<float> old = random_vector(static_cast<int64_t>(x.size()), 13);
  std::vector<float> acc = old;
  dcol_cpu = dcol;
  col2im_cpu(p, dcol_cpu.data(), p.n, 1.f, acc.data());
  Tensor acc_d = on_device(old);
  col2im_cuda(p, dcol_d.data(), p.n, 1.f, acc_d.data(), cuda_stream());
  EXPECT_TRUE(all_close(acc, acc_d.to_host(), 1e-5f, 1e-6f)) << "col2im beta 1";
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaIm2col, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<ConvCase>& i) { return std::string(i.param.name); });

#endif  // DROPNET_HAVE_CUDA

// ---- the conv layer, every engine vs the CPU -----------------------------------------------------

using EngineCase = std::tuple<ConvCase, std::string>;

class CudaConvEngine : public ::testing::TestWithParam<EngineCase> {};

// FP32 sums of `terms` products of values in [-1, 1], in different orders (and, for cuDNN, possibly
// Winograd/FFT transforms): the typical rounding difference grows ~ eps * terms.
float atol_for(int64_t terms) { return 1e-4f + 2e-6f * static_cast<float>(terms); }
constexpr float kRtol = 1e-4f;

TEST_P(CudaConvEngine, ForwardBackwardMatchCpu) {
  DN_REQUIRE_CUDA();
  const ConvCase& k = std::get<0>(GetParam());
  const std::string& engine = std::get<1>(GetParam());
  const ConvParams p = params_of(k);
  const Shape xs({k.n, k.c, k.h, k.w});
  LayerUnderTest cpu = make_layer_under_test(layer_yaml(k, "native"), {xs}, 7, Device::cpu());
  LayerUnderTest gpu = make_layer_under_test(layer_yaml(k, engine), {xs}, 7, Device::cuda());
  const RunContext ctx{};
  const int64_t fwd_terms = (p.c / p.group) * p.kh * p.kw;
  const int64_t bwd_data_terms = (p.out_c / p.group) * p.kh * p.kw;
  const int64_t bwd_filter_terms = p.n * p.out_h * p.out_w;

  cpu.forward(ctx);
  gpu.tops[0].value.fill(std::nanf(""));  // forward must overwrite every output
  gpu.forward(ctx);
  EXPECT_TRUE(all_close(cpu.tops[0].value, gpu.tops[0].value, atol_for(fwd_terms), kRtol)) << "forward";

  const std::vector<float> dy = random_vector(cpu.tops[0].value.count(), 21);
  cpu.tops[0].grad.from_host(dy);
  gpu.tops[0].grad.from_host(dy);
  // beta 0: dx overwritten without being read.
  cpu.bottoms[0].grad.zero();
  gpu.bottoms[0].grad.fill(std::nanf(""));
  cpu.backward(ctx, 0.f);
  gpu.backward(ctx, 0.f);
  EXPECT_TRUE(all_close(cpu.bottoms[0].grad, gpu.bottoms[0].grad, atol_for(bwd_data_terms), kRtol))
      << "backward-data, beta 0";
  EXPECT_TRUE(all_close(cpu.layer->params()[0].grad, gpu.layer->params()[0].grad, atol_for(bwd_filter_terms), kRtol))
      << "backward-filter";
  if (k.bias) {
    EXPECT_TRUE(all_close(cpu.layer->params()[1].grad, gpu.layer->params()[1].grad, atol_for(bwd_filter_terms), kRtol))
        << "bias gradient";
  }

  // beta 1: dx accumulates onto what is there; parameter gradients accumulate as always.
  const std::vector<float> old = random_vector(cpu.bottoms[0].grad.count(), 22);
  cpu.bottoms[0].grad.from_host(old);
  gpu.bottoms[0].grad.from_host(old);
  cpu.backward(ctx, 1.f);
  gpu.backward(ctx, 1.f);
  EXPECT_TRUE(all_close(cpu.bottoms[0].grad, gpu.bottoms[0].grad, atol_for(bwd_data_terms) + 1e-5f, kRtol))
      << "backward-data, beta 1";
  EXPECT_TRUE(
      all_close(cpu.layer->params()[0].grad, gpu.layer->params()[0].grad, 2.f * atol_for(bwd_filter_terms), kRtol))
      << "backward-filter accumulated twice";
  if (k.bias) {
    EXPECT_TRUE(
        all_close(cpu.layer->params()[1].grad, gpu.layer->params()[1].grad, 2.f * atol_for(bwd_filter_terms), kRtol))
        << "bias gradient accumulated twice";
  }

  // The accumulation really added: CUDA dx(beta 1) - old equals CUDA dx(beta 0) of the same dy.
  std::vector<float> dx1 = gpu.bottoms[0].grad.to_host();
  for (size_t i = 0; i < dx1.size(); ++i) dx1[i] -= old[i];
  gpu.bottoms[0].grad.zero();
  gpu.backward(ctx, 0.f);
  EXPECT_TRUE(all_close(gpu.bottoms[0].grad.to_host(), dx1, 1e-5f, 1e-5f)) << "beta 1 minus old != beta 0";
}

// A layer whose input needs no gradient (the first conv of a net) still produces dw and db.
TEST_P(CudaConvEngine, ParamGradientsWithoutInputGradient) {
  DN_REQUIRE_CUDA();
  const ConvCase& k = std::get<0>(GetParam());
  const std::string& engine = std::get<1>(GetParam());
  const ConvParams p = params_of(k);
  const Shape xs({k.n, k.c, k.h, k.w});
  LayerUnderTest cpu = make_layer_under_test(layer_yaml(k, "native"), {xs}, 8, Device::cpu());
  LayerUnderTest gpu = make_layer_under_test(layer_yaml(k, engine), {xs}, 8, Device::cuda());
  const RunContext ctx{};
  cpu.forward(ctx);
  gpu.forward(ctx);
  const std::vector<float> dy = random_vector(cpu.tops[0].value.count(), 23);
  cpu.tops[0].grad.from_host(dy);
  gpu.tops[0].grad.from_host(dy);
  const std::vector<float> sentinel = random_vector(cpu.bottoms[0].grad.count(), 24);
  gpu.bottoms[0].grad.from_host(sentinel);
  const std::vector<BottomGrad> none = {BottomGrad{false, 0.f}};
  for (LayerUnderTest* t : {&cpu, &gpu}) {
    std::vector<Blob*> tops = {&t->tops[0]}, bottoms = {&t->bottoms[0]};
    t->layer->backward(tops, bottoms, none, ctx);
  }
  const float atol = atol_for(p.n * p.out_h * p.out_w);
  EXPECT_TRUE(all_close(cpu.layer->params()[0].grad, gpu.layer->params()[0].grad, atol, kRtol)) << "dw";
  if (k.bias) {
    EXPECT_TRUE(all_close(cpu.layer->params()[1].grad, gpu.layer->params()[1].grad, atol, kRtol)) << "db";
  }
  EXPECT_TRUE(all_close(sentinel, gpu.bottoms[0].grad.to_host(), 0.f, 0.f)) << "dx was written although not needed";
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaConvEngine, ::testing::Combine(::testing::ValuesIn(kCases),
                                                                    ::testing::ValuesIn(engines())),
                         [](const ::testing::TestParamInfo<EngineCase>& i) {
                           return std::string(std::get<0>(i.param).name) + "_" + std::get<1>(i.param);
                         });

// ---- no TF32 -------------------------------------------------------------------------------------
// 1 + 2^-12 is exact in FP32 but rounds to 1 in TF32 (10 mantissa bits). Sums of k copies of it
// (k < 2^10) are exact in FP32, so the CPU result is exact, while an engine rounding its inputs to
// TF32 would lose k * 2^-12. An engine within a quarter of that loss is not using TF32.
class CudaConvNoTf32 : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaConvNoTf32, AllDirectionsAreFp32) {
  DN_REQUIRE_CUDA();
  // 64 * 3 * 3 = 576 forward terms, 4 * 8 * 8 = 256 filter-gradient terms, up to 32 * 9 = 288
  // data-gradient terms.
  const ConvCase k{"tf32", 4, 64, 10, 10, 32, 3, 3, 1, 1, 0, 0, 1, false};
  const Shape xs({k.n, k.c, k.h, k.w});
  LayerUnderTest cpu = make_layer_under_test(layer_yaml(k, "native"), {xs}, 9, Device::cpu());
  LayerUnderTest gpu = make_layer_under_test(layer_yaml(k, GetParam()), {xs}, 9, Device::cuda());
  const float odd = 1.f + std::ldexp(1.f, -12), ulp12 = std::ldexp(1.f, -12);
  const RunContext ctx{};
  // Pass A: x = odd, w = 1, dy = 1 -> y = 576 odd, dw = 256 odd.
  for (LayerUnderTest* t : {&cpu, &gpu}) {
    t->bottoms[0].value.fill(odd);
    t->layer->params()[0].value.fill(1.f);
    t->layer->params()[0].grad.zero();
    t->forward(ctx);
    t->tops[0].grad.fill(1.f);
    t->backward(ctx, 0.f);
  }
  ASSERT_EQ(cpu.tops[0].value.to_host()[0], 576.f * odd) << "CPU forward is not exact: the premise fails";
  EXPECT_TRUE(all_close(cpu.tops[0].value, gpu.tops[0].value, 0.25f * 576.f * ulp12, 0.f)) << "forward";
  EXPECT_TRUE(all_close(cpu.layer->params()[0].grad, gpu.layer->params()[0].grad, 0.25f * 256.f * ulp12, 0.f))
      << "backward-filter";
  // Pass B: w = odd, dy = 1 -> dx = taps * odd (taps = 9 * 32 in the interior, fewer at the border).
  for (LayerUnderTest* t : {&cpu, &gpu}) {
    t->layer->params()[0].value.fill(odd);
    t->backward(ctx, 0.f);
  }
  // The smallest border count is 32 taps (corner pixels see one kernel position).
  EXPECT_TRUE(all_close(cpu.bottoms[0].grad, gpu.bottoms[0].grad, 0.25f * 32.f * ulp12, 0.f)) << "backward-data";
}

INSTANTIATE_TEST_SUITE_P(Engines, CudaConvNoTf32, ::testing::ValuesIn(engines()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

#if DROPNET_HAVE_CUDNN
// The plan cache: a second run of the same shape reuses the chosen algorithms (same results bit for
// bit), the heuristic search also gives CPU-close results, and the description names each direction.
TEST(CudaConvCudnn, CachedPlansHeuristicSearchAndDescription) {
  DN_REQUIRE_CUDA();
  const ConvCase k = kCases[7];  // group4_odd
  const ConvParams p = params_of(k);
  const Shape xs({k.n, k.c, k.h, k.w});
  const CudnnConvOptions saved = cudnn_conv_options();
  LayerUnderTest cpu = make_layer_under_test(layer_yaml(k, "native"), {xs}, 5, Device::cpu());
  const RunContext ctx{};
  cpu.forward(ctx);
  for (CudnnAlgoSearch search : {CudnnAlgoSearch::Exhaustive, CudnnAlgoSearch::Heuristic}) {
    CudnnConvOptions o;
    o.search = search;
    set_cudnn_conv_options(o);
    EXPECT_NE(conv_cudnn_describe(p).find("fwd not searched"), std::string::npos) << conv_cudnn_describe(p);
    LayerUnderTest gpu = make_layer_under_test(layer_yaml(k, "cudnn"), {xs}, 5, Device::cuda());
    gpu.forward(ctx);
    const std::vector<float> first = gpu.tops[0].value.to_host();
    EXPECT_TRUE(all_close(cpu.tops[0].value.to_host(), first, atol_for(27), kRtol));
    gpu.forward(ctx);
    EXPECT_TRUE(all_close(first, gpu.tops[0].value.to_host(), 0.f, 0.f)) << "second run differs";
    gpu.tops[0].grad.fill(1.f);
    gpu.backward(ctx, 0.f);
    const std::string d = conv_cudnn_describe(p);
    EXPECT_EQ(d.find("not searched"), std::string::npos) << d;
    std::printf("%s search: %s\n", search == CudnnAlgoSearch::Exhaustive ? "exhaustive" : "heuristic", d.c_str());
  }
  set_cudnn_conv_options(saved);
}
#endif

}  // namespace
}  // namespace dropnet
