// References for the `precision` tests (unit_precision_ops, cuda_precision): SGEMM and convolution
// results computed in double from operands pre-rounded with precision::round, each element with
// the tolerance FP32 accumulation needs, and the FP32 (unrounded) result beside it, so a test can
// check both that a backend applied the rounding and that the rounding changed something.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/conv_math.h"
#include "kernels/precision_math.h"

namespace dropnet::testing::precision_ref {

// The Precision forms of kernels/gemm.h (host pointers).
using GemmPtr = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                         float, float*, int64_t, Precision);

// One reference output: value from the rounded operands, `tolerance` = 4 sqrt(K) 2^-24 sum |a b|
// (FP32 accumulation in any order, K terms; actual errors are far below it), and fp32 = the exact
// result of the unrounded operands.
struct Ref {
  std::vector<double> value, tolerance, fp32;
  std::vector<double> abs_sum;  // sum |a b| of the rounded operands
};
using GemmRef = Ref;

// C = op(A) op(B) (alpha 1, beta 0), row-major as kernels/gemm.h.
Ref gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
         Precision prec);

// Every element within its tolerance of value (the message names the worst one).
::testing::AssertionResult matches(const Ref& ref, const std::vector<float>& got);
// Some element further than its tolerance from the FP32 result: the rounding was applied.
::testing::AssertionResult differs_from_fp32(const Ref& ref, const std::vector<float>& got);

// Random x, w (in [-1, 1]) and dy for `p`.
struct ConvData {
  std::vector<float> x, w, dy;
  int64_t y_count = 0;
};
ConvData conv_data(const ConvParams& p, uint64_t seed);

// y = conv(x, w) (no bias), dx = conv^T(dy, w), dw = corr(x, dy), at p.prec.
struct ConvRef {
  Ref y, dx, dw;
};
ConvRef conv(const ConvParams& p, const ConvData& d);

// A convolution case of the precision tests (square kernel, stride and padding) and its ConvParams
// at `prec`.
struct ConvCase {
  const char* name;
  int64_t n, c, h, w, out;
  int k, s, pad, group;
};
ConvParams conv_params(const ConvCase& k, Precision prec);

// The training tests' net: a small LeNet (conv 5x5 x8, max pool, conv 3x3 x16, max pool, fc 64,
// relu, fc 4, softmax loss) on 1x16x16 synthetic images (16 samples, 4 classes, batch 8: it
// memorizes them, so the loss falls steadily), SGD with momentum, `iters` iterations; conv and fc
// layers on `engine`.
std::string lenet_yaml(int iters, const std::string& engine = "native");
// A small AlexNet-13-shaped net (3 x 32 x 32 synthetic data, 8 samples, one batch: it memorizes
// them): pairs of convs (a strided first conv, a grouped pair) each merged by a gradual DropIn whose
// p rises to ~0.5 over the run (compute skipping narrows the second conv of each pair), LRN, max
// pooling, fc + ReLU + dropout, softmax loss.
std::string small_alexnet13_yaml(int iters);

// The stated tolerance of the training tests: at every iteration |loss - fp32 loss| <= tol *
// max(fp32 loss, 0.1).
constexpr double kLossToleranceTf32 = 0.02;
constexpr double kLossToleranceBf16 = 0.05;
::testing::AssertionResult curve_tracks(const std::vector<float>& ref, const std::vector<float>& got, double tol);

}  // namespace dropnet::testing::precision_ref
