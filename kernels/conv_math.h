// Convolution geometry and the im2col / col2im index maps, shared by CPU and CUDA.
#pragma once

#include <cstdint>

#include "core/hostdev.h"
#include "kernels/precision_math.h"

namespace dropnet {

struct ConvParams {
  int64_t n, c, h, w;           // input
  int64_t out_c, out_h, out_w;  // output
  int kh, kw, sh, sw, ph, pw, group;
  // Rounding of the operands of every product (the `precision` key): x, w and dy as they enter the
  // forward, backward-data and backward-filter GEMMs; accumulation stays FP32.
  Precision prec = Precision::FP32;
};

// floor((in + 2 pad - kernel) / stride) + 1
DN_HD int64_t conv_out_size(int64_t in, int kernel, int stride, int pad) {
  return (in + 2 * pad - kernel) / stride + 1;
}

// Column-buffer element (row = (ci, ki, kj), column = (image b, oy, ox)): the input value it reads,
// 0 in the padding. `plane` = x + (b * c + ci) * h * w.
DN_HD float im2col_value(const ConvParams& p, const float* plane, int ki, int kj, int64_t oy, int64_t ox) {
  const int64_t iy = oy * p.sh - p.ph + ki;
  const int64_t ix = ox * p.sw - p.pw + kj;
  return (iy >= 0 && iy < p.h && ix >= 0 && ix < p.w) ? plane[iy * p.w + ix] : 0.f;
}

// col2im for one input pixel (iy, ix) of channel ci, image b: sums the column entries that read it.
// col is (c * kh * kw, images * out_h * out_w); b indexes the image within the chunk.
DN_HD float col2im_pixel(const ConvParams& p, const float* col, int64_t images, int64_t b, int64_t ci, int64_t iy,
                         int64_t ix) {
  const int64_t ohw = p.out_h * p.out_w;
  const int64_t ncols = images * ohw;
  float s = 0.f;
  for (int ki = 0; ki < p.kh; ++ki) {
    const int64_t ty = iy + p.ph - ki;
    if (ty < 0 || ty % p.sh != 0) continue;
    const int64_t oy = ty / p.sh;
    if (oy >= p.out_h) continue;
    for (int kj = 0; kj < p.kw; ++kj) {
      const int64_t tx = ix + p.pw - kj;
      if (tx < 0 || tx % p.sw != 0) continue;
      const int64_t ox = tx / p.sw;
      if (ox >= p.out_w) continue;
      const int64_t row = (ci * p.kh + ki) * p.kw + kj;
      s += col[row * ncols + b * ohw + oy * p.out_w + ox];
    }
  }
  return s;
}

}  // namespace dropnet
