// Element-wise math shared by the CPU loops and the CUDA kernels: ReLU (leaky), bias, and the
// activation a producer (conv, fc) applies in its output epilogue when the Net fuses a ReLU into it.
#pragma once

#include "core/hostdev.h"

namespace dropnet {

DN_HD float relu_fwd(float x, float slope) { return x > 0.f ? x : x * slope; }
// Gradient through ReLU, decided by the input (Caffe: x > 0).
DN_HD float relu_bwd(float x, float dy, float slope) { return x > 0.f ? dy : dy * slope; }
// Identity, or ReLU with `slope` (>= 0, so that sign(act(x)) == sign(x) and the ReLU's backward may
// read the activated value in place of its input).
struct Activation {
  bool relu = false;
  float slope = 0.f;
  DN_HD float operator()(float v) const { return relu ? relu_fwd(v, slope) : v; }
};
DN_HD float axpby(float a, float x, float b, float y) { return b == 0.f ? a * x : a * x + b * y; }

}  // namespace dropnet
