// Element-wise kernels: ReLU forward/backward, per-channel bias add (with a fused activation) and its
// gradient.
#pragma once

#include <cstdint>

#include "core/device.h"
#include "kernels/eltwise_math.h"

namespace dropnet {

void relu_forward_cpu(int64_t n, float slope, const float* x, float* y);
// dx = beta * dx + relu'(x) * dy
void relu_backward_cpu(int64_t n, float slope, const float* x, const float* dy, float beta, float* dx);
// y(n, c, inner) = act(y(n, c, inner) + bias(c)); bias may be null (act only).
void bias_forward_cpu(int64_t outer, int64_t channels, int64_t inner, const float* bias, float* y,
                      Activation act = {});
// dbias(c) += sum over outer, inner of dy(n, c, inner)
void bias_backward_cpu(int64_t outer, int64_t channels, int64_t inner, const float* dy, float* dbias);

#if DROPNET_HAVE_CUDA
void relu_forward_cuda(int64_t n, float slope, const float* x, float* y, Stream stream);
void relu_backward_cuda(int64_t n, float slope, const float* x, const float* dy, float beta, float* dx,
                        Stream stream);
void bias_forward_cuda(int64_t outer, int64_t channels, int64_t inner, const float* bias, float* y, Stream stream,
                       Activation act = {});
void bias_backward_cuda(int64_t outer, int64_t channels, int64_t inner, const float* dy, float* dbias,
                        Stream stream);
#endif

}  // namespace dropnet
