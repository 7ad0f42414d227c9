// Tensor-core implicit-GEMM convolution (TF32 or BF16 operands, FP32 accumulation), forward pass:
// the mainloop of kernels/gemm_mma.cuh with the input's im2col tile gathered by cp.async straight
// from x (zero-filled in the padding). Rounds x and w as precision::round does on the CPU.
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
#endif

}  // namespace dropnet
