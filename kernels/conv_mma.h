// Tensor-core implicit-GEMM convolution (TF32 or BF16 operands, FP32 accumulation): the forward pass,
// the data gradient and the filter gradient, on the mainloop of kernels/gemm_mma.cuh with the im2col operand gathered
// by cp.async straight from x (zero-filled in the padding). Rounds the operands as precision::round
// does on the CPU.
#pragma once

#include "core/device.h"
#include "kernels/conv.h"
#include "kernels/conv_math.h"
#include "kernels/eltwise_math.h"
#include "kernels/precision_math.h"

namespace dropnet {

#if DROPNET_HAVE_CUDA
// Block tiles (output channels x output pixels): 64 x 64 for 64-channel layers, 32 x 128 for
// layers whose channel count is a multiple of 32 but not 64 (96).
enum class ConvMmaTile { Auto, M64N64, M32N128 };

// The same contracts as conv_forward_igemm_cuda / conv_backward_igemm_cuda (kernels/conv.h), at
// p = Precision::TF32 or BF16, any group count:
// y = act(conv(x, w) + bias) (bias may be null; the SIMT epilogue's arithmetic); only the output
// channels `oc` of y are written (a range narrower than [0, out_c) needs group 1).
void conv_forward_mma_cuda(Precision precision, const ConvParams& p, const float* x, const float* w,
                           const float* bias, float* y, Stream stream, Activation act = {}, ConvOutRange oc = {},
                           ConvMmaTile tile = ConvMmaTile::Auto);
// dw += dL/dw and db += dL/db (db may be null: the SIMT path's FP32 bias_backward_cuda); dx = beta *
// dx + dL/dx (dx may be null; beta == 0 does not read dx). With a range `oc`, dy is taken as zero
// outside it: the rows of dw outside it are left as they are, dx sums over the channels in it only,
// db is computed whole. The filter gradient splits a long K = n * out_h * out_w over the grid
// (tile_plan::split_k), partial tiles summed in a fixed order: deterministic.
void conv_backward_mma_cuda(Precision precision, const ConvParams& p, const float* x, const float* w,
                            const float* dy, float* dw, float* db, float beta, float* dx, Stream stream,
                            ConvOutRange oc = {}, ConvMmaTile tile = ConvMmaTile::Auto);
// The two gradients alone, whole output range:
// dw = dL/dw + beta * dw (beta == 0 does not read dw; 1 accumulates, as the layers do), from x and
// dy. K split as in conv_backward_mma_cuda.
void conv_filter_grad_mma_cuda(Precision precision, const ConvParams& p, const float* x, const float* dy,
                               float beta, float* dw, Stream stream, ConvMmaTile tile = ConvMmaTile::Auto);
// dx = dL/dx + beta * dx (beta == 0 does not read dx), from w and dy; any stride.
void conv_data_grad_mma_cuda(Precision precision, const ConvParams& p, const float* w, const float* dy,
                             float beta, float* dx, Stream stream, ConvMmaTile tile = ConvMmaTile::Auto);
#endif

}  // namespace dropnet
