// Spatial pooling (Caffe's PoolingLayer): MAX and AVE over (N, C, H, W), NCHW, with Caffe's
// ceil-mode output size. The window arithmetic lives in kernels/pool_math.h, shared by the CPU
// loops (pool_cpu.cpp) and the CUDA kernels (pool.cu).
#pragma once

#include <cstdint>

#include "core/device.h"

namespace dropnet {

enum class PoolMethod { Max, Ave };

// Trivially copyable: passed by value to the CUDA kernels. Build it with make_pool_params, which
// validates the configuration and computes out_h / out_w.
struct PoolParams {
  PoolMethod method;
  int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  int64_t n, c, h, w;     // input (N, C, H, W)
  int64_t out_h, out_w;   // output (N, C, out_h, out_w)
};

// Validates (kernel >= 1, stride >= 1, 0 <= pad < kernel as Caffe requires, a non-empty output,
// H * W < 2^31 so the argmax fits int32) and fills the output size. Bad values are input errors.
PoolParams make_pool_params(PoolMethod method, int kernel_h, int kernel_w, int stride_h,
                            int stride_w, int pad_h, int pad_w, int64_t n, int64_t c, int64_t h,
                            int64_t w);

// y: (N, C, out_h, out_w). argmax (same shape as y): for MAX, the flat index h * W + w inside the
// input plane of the chosen element (first maximum in row-major order; a NaN wins over numbers);
// may be null for AVE and is ignored there. Required for MAX.
void pool_forward_cpu(const PoolParams& p, const float* x, float* y, int32_t* argmax);
// dx = beta * dx + d(pool)/dx^T dy; beta == 0 overwrites dx without reading it. argmax is the one
// written by the forward pass (MAX only; ignored for AVE).
void pool_backward_cpu(const PoolParams& p, const float* dy, const int32_t* argmax, float beta,
                       float* dx);

#if DROPNET_HAVE_CUDA
// Device pointers, same semantics and results as the CPU twins (the backward pass gathers per
// input element, so overlapping windows need no atomics and results are deterministic).
void pool_forward_cuda(const PoolParams& p, const float* x, float* y, int32_t* argmax,
                       Stream stream);
void pool_backward_cuda(const PoolParams& p, const float* dy, const int32_t* argmax, float beta,
                        float* dx, Stream stream);
#endif

}  // namespace dropnet
