// The cuDNN convolution engine (`engine: cudnn` on a conv layer): the same Caffe semantics as
// kernels/conv.h (cross-correlation, weights (out_c, c / group, kh, kw), optional bias), computed
// by cuDNN's legacy convolution API in FP32 with FMA math only (no TF32 tensor cores) at
// precision fp32. At tf32 the convolution descriptor asks for tensor-op math (cuDNN rounds FP32
// operands to TF32 in the algorithms that use tensor cores; it may still pick an FMA one); at
// bf16 likewise, on copies of x, w and dy rounded to BF16 first (one pass each: cuDNN has no
// BF16 rounding of FP32 tensors), so every algorithm multiplies the BF16 operands.
//
// Per (device, shape) the descriptors and the chosen algorithms are cached process-wide: each
// direction (forward, backward-data, backward-filter) is searched once, on first use, either by
// timing every algorithm (cudnnFind*AlgorithmEx, the default) or by cuDNN's heuristics (Get*_v7).
// Workspace comes from the CUDA caching allocator (one buffer per thread and device, grown on
// demand); the cuDNN handle is cached per thread and device and runs on the stream passed in.
// An algorithm whose workspace exceeds the limit is never chosen; a shape for which no
// algorithm qualifies is an error naming the engine and the shape.
//
// This header compiles without the cuDNN headers (layers include it from C++20 sources).
#pragma once

#include <cstddef>
#include <string>

#include "core/device.h"
#include "kernels/conv_math.h"
#include "kernels/eltwise_math.h"

namespace dropnet {

// True when this build has the cuDNN engine.
constexpr bool cudnn_compiled() { return DROPNET_HAVE_CUDNN != 0; }

#if DROPNET_HAVE_CUDNN

enum class CudnnAlgoSearch { Exhaustive, Heuristic };

struct CudnnConvOptions {
  CudnnAlgoSearch search = CudnnAlgoSearch::Exhaustive;
  // Only algorithms cuDNN reports as deterministic (bit-reproducible runs; excludes the
  // atomics-based backward algorithms).
  bool deterministic = true;
  // Workspace cap in bytes; 0 = min(1 GiB, a quarter of the device's free memory at search time).
  size_t workspace_limit = 0;
};

// Process-wide; changing them drops the cached plans (call it only while no convolution runs).
void set_cudnn_conv_options(const CudnnConvOptions& o);
CudnnConvOptions cudnn_conv_options();

// Device pointers on the current CUDA device. y = act(conv + bias) is overwritten; bias may be null.
void conv_forward_cudnn(const ConvParams& p, const float* x, const float* w, const float* bias, float* y,
                        Stream stream, Activation act = {});
// dw and db accumulate (db may be null); dx = beta * dx + dL/dx (dx may be null; beta 0 does not
// read dx).
void conv_backward_cudnn(const ConvParams& p, const float* x, const float* w, const float* dy, float* dw,
                         float* db, float beta, float* dx, Stream stream);

// The algorithms chosen so far for `p` on the current device, e.g.
// "cuDNN 9.19.0, fwd IMPLICIT_PRECOMP_GEMM (0 B), bwd-data ALGO_1 (0 B), bwd-filter ALGO_1 (12 MB)";
// "not searched" for a direction that has not run yet.
std::string conv_cudnn_describe(const ConvParams& p);
// The cuDNN library version loaded at run time, as "9.19.0".
std::string cudnn_version_string();

#endif

}  // namespace dropnet
