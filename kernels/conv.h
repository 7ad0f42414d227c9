// 2-D convolution (cross-correlation, Caffe semantics): weights (out_c, c / group, kh, kw).
// Native paths: im2col + SGEMM image by image on the CPU (threads over images); on CUDA implicit
// GEMM (default) or im2col + SGEMM over chunks of images.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "kernels/conv_math.h"
#include "kernels/eltwise_math.h"

namespace dropnet {

// Scratch owned by one conv layer. CUDA: column buffer (c * kh * kw, chunk * out_h * out_w) and
// GEMM output staging (out_c, chunk * out_h * out_w). CPU: one image's column buffer per thread
// and, in backward, per-thread weight-gradient accumulators (in ytmp).
struct ConvScratch {
  Tensor col;
  Tensor ytmp;
  int64_t chunk = 0;  // CUDA: images per chunk
};

// Images per chunk so the column buffer stays under `max_floats`.
int64_t conv_chunk_images(const ConvParams& p, int64_t max_floats);

void im2col_cpu(const ConvParams& p, const float* x, int64_t images, float* col);
// dx = beta * dx + col2im(col) for `images` images. col is scratch: entries that map outside the
// input (padding taps) may be zeroed on the way.
void col2im_cpu(const ConvParams& p, float* col, int64_t images, float beta, float* dx);

// y = act(conv(x, w) + bias); bias may be null.
void conv_forward_cpu(const ConvParams& p, const float* x, const float* w, const float* bias, float* y,
                      ConvScratch& s, Activation act = {});
// dw, db accumulate (db may be null); dx = beta * dx + dL/dx (dx may be null).
void conv_backward_cpu(const ConvParams& p, const float* x, const float* w, const float* dy, float* dw, float* db,
                       float beta, float* dx, ConvScratch& s);

#if DROPNET_HAVE_CUDA
void im2col_cuda(const ConvParams& p, const float* x, int64_t images, float* col, Stream stream);
void col2im_cuda(const ConvParams& p, const float* col, int64_t images, float beta, float* dx, Stream stream);
// Native CUDA convolution: im2col + the hand-written SGEMM (use_cublas = false) or cuBLAS.
void conv_forward_cuda(const ConvParams& p, const float* x, const float* w, const float* bias, float* y,
                       ConvScratch& s, bool use_cublas, Stream stream, Activation act = {});
void conv_backward_cuda(const ConvParams& p, const float* x, const float* w, const float* dy, float* dw, float* db,
                        float beta, float* dx, ConvScratch& s, bool use_cublas, Stream stream);
// Implicit-GEMM convolution (conv_igemm.cuh): operand tiles gathered from x / dy / w, no column
// buffer, bias and activation fused into the forward epilogue. Same contract as the im2col path.
void conv_forward_igemm_cuda(const ConvParams& p, const float* x, const float* w, const float* bias, float* y,
                             Stream stream, Activation act = {});
void conv_backward_igemm_cuda(const ConvParams& p, const float* x, const float* w, const float* dy, float* dw,
                              float* db, float beta, float* dx, Stream stream);
#endif

}  // namespace dropnet
