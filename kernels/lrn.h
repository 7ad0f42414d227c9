// Local response normalization (Caffe's LRNLayer) over (N, C, H, W), NCHW.
//   ACROSS_CHANNELS: scale = k + (alpha / n) * sum of x^2 over channels c - (n-1)/2 .. c + (n-1)/2
//   WITHIN_CHANNEL:  scale = 1 + (alpha / n^2) * sum of x^2 over the n x n spatial window (k unused)
// (zero outside the tensor), y = x * scale^-beta. The arithmetic lives in kernels/lrn_math.h,
// shared by the CPU loops (lrn_cpu.cpp) and the CUDA kernels (lrn.cu).
#pragma once

#include <cstdint>

#include "core/device.h"

namespace dropnet {

// Trivially copyable: passed by value to the CUDA kernels.
struct LrnParams {
  bool across_channels;  // false: WITHIN_CHANNEL
  int local_size;        // n, odd (Caffe requires it)
  float alpha, beta, k;  // k is ignored for WITHIN_CHANNEL (Caffe uses 1 there)
  int64_t n, c, h, w;    // input (N, C, H, W) = output shape
};

// Input errors for: an even or non-positive local_size, an empty dimension, alpha < 0, a
// non-finite beta, k <= 0 across channels (the scale must stay positive). Every launcher calls it.
void validate_lrn_params(const LrnParams& p);

// y, scale: (N, C, H, W). scale keeps the un-powered scale for the backward pass.
void lrn_forward_cpu(const LrnParams& p, const float* x, float* y, float* scale);
// dx = beta_accum * dx + dL/dx from the forward's x, y and scale; beta_accum == 0 overwrites dx
// without reading it.
void lrn_backward_cpu(const LrnParams& p, const float* x, const float* y, const float* scale,
                      const float* dy, float beta_accum, float* dx);

#if DROPNET_HAVE_CUDA
// Device pointers, same semantics and arithmetic as the CPU twins.
void lrn_forward_cuda(const LrnParams& p, const float* x, float* y, float* scale, Stream stream);
void lrn_backward_cuda(const LrnParams& p, const float* x, const float* y, const float* scale,
                       const float* dy, float beta_accum, float* dx, Stream stream);
#endif

}  // namespace dropnet
