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

// Output channels [begin, end) of every image (compute skipping; end -1 = out_c). A range
// narrower than [0, out_c) needs group 1.
struct ConvOutRange {
  int64_t begin = 0, end = -1;
};

// `oc` with end -1 resolved to out_c, checked (inside [0, out_c), not empty, group 1 when partial).
ConvOutRange conv_out_range(const ConvParams& p, ConvOutRange oc);

// y = act(conv(x, w) + bias); bias may be null. Only channels `oc` of y are written.
void conv_forward_cpu(const ConvParams& p, const float* x, const float* w, const float* bias, float* y,
                      ConvScratch& s, Activation act = {}, ConvOutRange oc = {});
// dw, db accumulate (db may be null); dx = beta * dx + dL/dx (dx may be null). With a channel
// range `oc`, dy is taken as zero outside it: the rows of dw outside it are left as they are, and
// dx sums over the channels in it only (db is computed whole: it costs one pass over dy).
void conv_backward_cpu(const ConvParams& p, const float* x, const float* w, const float* dy, float* dw, float* db,
                       float beta, float* dx, ConvScratch& s, ConvOutRange oc = {});

#if DROPNET_HAVE_CUDA
void im2col_cuda(const ConvParams& p, const float* x, int64_t images, float* col, Stream stream);
void col2im_cuda(const ConvParams& p, const float* col, int64_t images, float beta, float* dx, Stream stream);
// Native CUDA convolution: im2col + the hand-written SGEMM (use_cublas = false) or cuBLAS.
void conv_forward_cuda(const ConvParams& p, const float* x, const float* w, const float* bias, float* y,
                       ConvScratch& s, bool use_cublas, Stream stream, Activation act = {});
void conv_backward_cuda(const ConvParams& p, const float* x, const float* w, const float* dy, float* dw, float* db,
                        float beta, float* dx, ConvScratch& s, bool use_cublas, Stream stream);
// Implicit-GEMM convolution (conv_igemm.cuh): operand tiles gathered from x / dy / w, no column
// buffer, bias and activation fused into the forward epilogue. Same contract as the CPU path,
// output channel range `oc` included (results equal the whole computation's where computed).
// p.prec fp32: the SIMT kernels (conv_igemm.cuh); tf32 / bf16: the tensor-core kernels
// (conv_mma.h), the same contract.
void conv_forward_igemm_cuda(const ConvParams& p, const float* x, const float* w, const float* bias, float* y,
                             Stream stream, Activation act = {}, ConvOutRange oc = {});
void conv_backward_igemm_cuda(const ConvParams& p, const float* x, const float* w, const float* dy, float* dw,
                              float* db, float beta, float* dx, Stream stream, ConvOutRange oc = {});
#endif

}  // namespace dropnet
