// Dropout (inverted, as Caffe): at TRAIN y = x * mask / (1 - ratio) with mask = (u >= ratio),
// u = philox_uniform(seed, stream, step, i) for flat element i, so the mask is a pure function of
// (seed, layer stream, iteration, element): identical on CPU and CUDA and regenerated in backward.
// At TEST dropout is the identity (the layer copies; no kernel).
#pragma once

#include <cstdint>

#include "core/device.h"

namespace dropnet {

struct DropoutParams {
  int64_t count = 0;   // elements
  float ratio = 0.5f;  // drop probability, in [0, 1)
  uint64_t seed = 0;
  uint32_t stream = 0;  // the layer's RNG stream id
  uint32_t step = 0;    // iteration
};

// y may alias x.
void dropout_forward_cpu(const DropoutParams& p, const float* x, float* y);
// dx = mask * dy / (1 - ratio) + beta * dx; beta = 0 overwrites without reading dx.
void dropout_backward_cpu(const DropoutParams& p, const float* dy, float beta, float* dx);

#if DROPNET_HAVE_CUDA
void dropout_forward_cuda(const DropoutParams& p, const float* x, float* y, Stream stream);
void dropout_backward_cuda(const DropoutParams& p, const float* dy, float beta, float* dx,
                           Stream stream);
#endif

}  // namespace dropnet
