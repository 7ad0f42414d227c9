// Tensor-core implicit-GEMM convolution (TF32 or BF16 operands, FP32 accumulation): the forward pass,
// the data gradient and the filter gradient, on the mainloop of kernels/gemm_mma.cuh with the im2col operand gathered
// by cp.async straight from x (zero-filled in the padding). Rounds the operands as precision::round
// does on the CPU.
#pragma once

#include "core/device.h"
#include "kernels/conv_math.h"
#include "kernels/precision_math.h"

namespace dropnet {

#if DROPNET_HAVE_CUDA
// Block tiles (output channels x output pixels): 64 x 64 for 64-channel layers, 32 x 128 for
// layers whose channel count is a multiple of 32 but not 64 (96).
enum class ConvMmaTile { Auto, M64N64, M32N128 };

// y = conv(x, w) + bias (bias may be null), any group count; p is Precision::TF32 or BF16.
void conv_forward_mma_cuda(Precision precision, const ConvParams& p, const float* x, const float* w,
                           const float* bias, float* y, Stream stream, ConvMmaTile tile = ConvMmaTile::Auto);
// dw = dL/dw + beta * dw (beta == 0 does not read dw; 1 accumulates, as the layers do), from x and
// dy; any group count. One block per output tile over the whole K = n * out_h * out_w (no K split).
void conv_filter_grad_mma_cuda(Precision precision, const ConvParams& p, const float* x, const float* dy,
                               float beta, float* dw, Stream stream, ConvMmaTile tile = ConvMmaTile::Auto);
// dx = dL/dx + beta * dx (beta == 0 does not read dx), from w and dy; any group count and stride.
void conv_data_grad_mma_cuda(Precision precision, const ConvParams& p, const float* w, const float* dy,
                             float beta, float* dx, Stream stream, ConvMmaTile tile = ConvMmaTile::Auto);
#endif

}  // namespace dropnet
