// Element-wise math shared by the CPU loops and the CUDA kernels: ReLU (leaky), bias.
#pragma once

#include "core/hostdev.h"

namespace dropnet {

DN_HD float relu_fwd(float x, float slope) { return x > 0.f ? x : x * slope; }
// Gradient through ReLU, decided by the input (Caffe: x > 0).
DN_HD float relu_bwd(float x, float dy, float slope) { return x > 0.f ? dy : dy * slope; }
DN_HD float axpby(float a, float x, float b, float y) { return b == 0.f ? a * x : a * x + b * y; }

}  // namespace dropnet
