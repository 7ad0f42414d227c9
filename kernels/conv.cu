// Native CUDA convolution: im2col over a chunk of images + SGEMM (hand-written or cuBLAS),
// with the index maps of conv_math.h. Deterministic: col2im gathers per input pixel.
#include <algorithm>

#include "core/cuda_check.h"
#include "core/launch.cuh"
#include "kernels/conv.h"
#include "kernels/eltwise.h"
#include "kernels/gemm.h"

namespace dropnet {

namespace {

__global__ void im2col_kernel(ConvParams p, const float* __restrict__ x, int64_t images, float* __restrict__ col) {
  const int64_t ohw = p.out_h * p.out_w, ncols = images * ohw;
  const int64_t total = p.c * p.kh * p.kw * ncols;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t colidx = k % ncols, row = k / ncols;
    const int kj = static_cast<int>(row % p.kw), ki = static_cast<int>((row / p.kw) % p.kh);
    const int64_t ci = row / (p.kw * p.kh);
    const int64_t b = colidx / ohw, pix = colidx % ohw;
    const float* plane = x + (b * p.c + ci) * p.h * p.w;
    col[k] = im2col_value(p, plane, ki, kj, pix / p.out_w, pix % p.out_w);
  }
}

__global__ void col2im_kernel(ConvParams p, const float* __restrict__ col, int64_t images, float beta, float* dx) {
  const int64_t total = images * p.c * p.h * p.w;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ix = k % p.w, iy = (k / p.w) % p.h, ci = (k / (p.w * p.h)) % p.c, b = k / (p.w * p.h * p.c);
    const float v = col2im_pixel(p, col, images, b, ci, iy, ix);
    dx[k] = beta == 0.f ? v : beta * dx[k] + v;
  }
}

// (out_c, b, ohw) <-> (b, out_c, ohw)
__global__ void chunk_transpose_kernel(const float* __restrict__ src, float* __restrict__ dst, int64_t b,
                                       int64_t out_c, int64_t ohw, bool to_batch_major) {
  const int64_t total = b * out_c * ohw;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t pix = k % ohw, co = (k / ohw) % out_c, i = k / (ohw * out_c);  // k indexes (b, out_c, ohw)
    const int64_t t = co * (b * ohw) + i * ohw + pix;                              // (out_c, b, ohw)
    if (to_batch_major) dst[k] = src[t];
    else dst[t] = src[k];
  }
}

// The column buffer holds x (or receives d(col)) unrounded: the GEMMs round their operands.
void gemm(bool use_cublas, Precision prec, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, Stream s) {
  if (use_cublas) sgemm_cublas_prec(ta, tb, m, n, k, 1.f, a, lda, b, ldb, beta, c, ldc, prec, s);
  else sgemm_cuda_prec(ta, tb, m, n, k, 1.f, a, lda, b, ldb, beta, c, ldc, prec, s);
}

constexpr int64_t kMaxColFloats = 64 << 20;  // 256 MB column buffer at most

void prepare(const ConvParams& p, ConvScratch& s) {
  s.chunk = conv_chunk_images(p, kMaxColFloats);
  const int64_t cols = s.chunk * p.out_h * p.out_w;
  const Device dev = Device::cuda(cuda_current_device());  // the device the kernels run on
  Shape col_shape({p.c * p.kh * p.kw, cols}), y_shape({p.out_c, cols});
  if (s.col.empty() || !(s.col.device() == dev)) s.col = Tensor(col_shape, dev);
  else s.col.reshape(col_shape);
  if (s.ytmp.empty() || !(s.ytmp.device() == dev)) s.ytmp = Tensor(y_shape, dev);
  else s.ytmp.reshape(y_shape);
}

}  // namespace

void im2col_cuda(const ConvParams& p, const float* x, int64_t images, float* col, Stream stream) {
  const int64_t total = p.c * p.kh * p.kw * images * p.out_h * p.out_w;
  DN_LAUNCH(im2col_kernel, grid_for(total), 256, 0, stream, p, x, images, col);
}

void col2im_cuda(const ConvParams& p, const float* col, int64_t images, float beta, float* dx, Stream stream) {
  const int64_t total = images * p.c * p.h * p.w;
  DN_LAUNCH(col2im_kernel, grid_for(total), 256, 0, stream, p, col, images, beta, dx);
}

void conv_forward_cuda(const ConvParams& p, const float* x, const float* w, const float* bias, float* y,
                       ConvScratch& s, bool use_cublas, Stream stream, Activation act) {
  prepare(p, s);
  const int64_t ohw = p.out_h * p.out_w;
  const int64_t cg = p.c / p.group, og = p.out_c / p.group, kg = cg * p.kh * p.kw;
  for (int64_t n0 = 0; n0 < p.n; n0 += s.chunk) {
    const int64_t b = std::min(s.chunk, p.n - n0);
    const int64_t cols = b * ohw;
    im2col_cuda(p, x + n0 * p.c * p.h * p.w, b, s.col.data(), stream);
    float* yt = b == 1 ? y + n0 * p.out_c * ohw : s.ytmp.data();
    for (int g = 0; g < p.group; ++g)
      gemm(use_cublas, p.prec, false, false, og, cols, kg, w + g * og * kg, kg, s.col.data() + g * kg * cols, cols, 0.f,
           yt + g * og * cols, cols, stream);
    if (b > 1) {
      DN_LAUNCH(chunk_transpose_kernel, grid_for(b * p.out_c * ohw), 256, 0, stream, yt, y + n0 * p.out_c * ohw, b,
                p.out_c, ohw, true);
    }
  }
  bias_forward_cuda(p.n, p.out_c, ohw, bias, y, stream, act);
}

void conv_backward_cuda(const ConvParams& p, const float* x, const float* w, const float* dy, float* dw, float* db,
                        float beta, float* dx, ConvScratch& s, bool use_cublas, Stream stream) {
  prepare(p, s);
  const int64_t ohw = p.out_h * p.out_w;
  const int64_t cg = p.c / p.group, og = p.out_c / p.group, kg = cg * p.kh * p.kw;
  if (db != nullptr) bias_backward_cuda(p.n, p.out_c, ohw, dy, db, stream);
  for (int64_t n0 = 0; n0 < p.n; n0 += s.chunk) {
    const int64_t b = std::min(s.chunk, p.n - n0);
    const int64_t cols = b * ohw;
    im2col_cuda(p, x + n0 * p.c * p.h * p.w, b, s.col.data(), stream);
    const float* dyt = dy + n0 * p.out_c * ohw;
    if (b > 1) {
      DN_LAUNCH(chunk_transpose_kernel, grid_for(cols * p.out_c), 256, 0, stream, dyt, s.ytmp.data(), b, p.out_c, ohw,
                false);
      dyt = s.ytmp.data();
    }
    for (int g = 0; g < p.group; ++g)
      gemm(use_cublas, p.prec, false, true, og, kg, cols, dyt + g * og * cols, cols, s.col.data() + g * kg * cols,
           cols, 1.f, dw + g * og * kg, kg, stream);
    if (dx != nullptr) {
      for (int g = 0; g < p.group; ++g)
        gemm(use_cublas, p.prec, true, false, kg, cols, og, w + g * og * kg, kg, dyt + g * og * cols, cols, 0.f,
             s.col.data() + g * kg * cols, cols, stream);
      col2im_cuda(p, s.col.data(), b, beta, dx + n0 * p.c * p.h * p.w, stream);
    }
  }
}

}  // namespace dropnet
