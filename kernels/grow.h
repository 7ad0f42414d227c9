// Width growth (thin-to-wide, the paper's future work (c)): of the c channels of every sample, the
// first `active` pass through and the rest are zero, forward and backward. A gradual DropIn whose
// `skip` is zero with channel units: the layer raises `active` on a schedule (grow_math.h), and
// compute skipping (README "DropIn compute skipping") leaves the inactive channels of the
// producer uncomputed.
#pragma once

#include <cstdint>

#include "core/device.h"

namespace dropnet {

struct GrowParams {
  int64_t n = 0, c = 0, hw = 0;  // blobs are (n, c, hw)
  int64_t active = 0;            // channels [0, active) pass; 0 <= active <= c
};

// y = x on the active channels, 0 elsewhere.
void grow_forward_cpu(const GrowParams& p, const float* x, float* y);
// dx = (active ? dy : 0) + beta * dx; beta = 0 overwrites without reading dx.
void grow_backward_cpu(const GrowParams& p, const float* dy, float beta, float* dx);

#if DROPNET_HAVE_CUDA
void grow_forward_cuda(const GrowParams& p, const float* x, float* y, Stream stream);
void grow_backward_cuda(const GrowParams& p, const float* dy, float beta, float* dx, Stream stream);
#endif

}  // namespace dropnet
