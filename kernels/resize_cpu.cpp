// Resize on the CPU: per-axis tap and range tables filled once per call from resize_math.h, then
// OpenMP loops over the shared plane arithmetic (the CUDA kernels compute the same taps on the fly).
#include <vector>

#include "core/error.h"
#include "kernels/resize.h"
#include "kernels/resize_check.h"
#include "kernels/resize_math.h"
#include "kernels/store_grad.h"

namespace dropnet {

namespace {

// Taps of every output index and ranges of every input index along one axis.
struct AxisTables {
  std::vector<ResizeAxisTap> taps;
  std::vector<ResizeAxisRange> ranges;
  AxisTables(ResizeMethod m, int64_t in, int64_t out, bool with_ranges) : taps(out) {
    for (int64_t o = 0; o < out; ++o) taps[o] = resize_axis_tap(m, o, in, out);
    if (!with_ranges) return;
    ranges.resize(in);
    for (int64_t i = 0; i < in; ++i) ranges[i] = resize_axis_range(m, i, in, out);
  }
  ResizeAxisTable table() const { return {taps.data(), ranges.empty() ? nullptr : ranges.data()}; }
};

}  // namespace

// Both loops work a row at a time: the channel mapping (integer divisions) is resolved once per
// row, and each element accumulates its channel terms in the same order as resize_forward_at /
// resize_backward_at (the CUDA element functions), so the results are bit-identical.
void resize_forward_cpu(const ResizeParams& p, const float* x, float* y) {
  resize_check_params(p);
  if (p.n == 0) return;
  DN_CHECK(x && y, "resize_forward_cpu: null pointer");
  const ResizeParams pp = p;
  const AxisTables ty(pp.method, pp.h, pp.out_h, false), tx(pp.method, pp.w, pp.out_w, false);
  const ResizeAxisTap* tys = ty.taps.data();
  const ResizeAxisTap* txs = tx.taps.data();
  const int64_t plane = pp.h * pp.w;
#pragma omp parallel for collapse(3) schedule(static)
  for (int64_t s = 0; s < pp.n; ++s)
    for (int64_t oc = 0; oc < pp.out_c; ++oc)
      for (int64_t oy = 0; oy < pp.out_h; ++oy) {
        float* row = y + ((s * pp.out_c + oc) * pp.out_h + oy) * pp.out_w;
        const ResizeAxisTap t = tys[oy];
        const int64_t count = resize_src_channel_count(pp, oc);
        for (int64_t ox = 0; ox < pp.out_w; ++ox) row[ox] = 0.f;
        for (int64_t k = 0; k < count; ++k) {
          const float* src = x + (s * pp.c + resize_src_channel(pp, oc, k)) * plane;
          for (int64_t ox = 0; ox < pp.out_w; ++ox) row[ox] += resize_plane_forward(pp, src, t, txs[ox]);
        }
        for (int64_t ox = 0; ox < pp.out_w; ++ox) row[ox] = resize_channel_finish(pp, row[ox], count);
      }
}

void resize_backward_cpu(const ResizeParams& p, const float* dy, float beta, float* dx) {
  resize_check_params(p);
  if (p.n == 0) return;
  DN_CHECK(dy && dx, "resize_backward_cpu: null pointer");
  const ResizeParams pp = p;
  const AxisTables ty(pp.method, pp.h, pp.out_h, true), tx(pp.method, pp.w, pp.out_w, true);
  const ResizeAxisTable ay = ty.table(), ax = tx.table();
  const int64_t out_plane = pp.out_h * pp.out_w;
#pragma omp parallel
  {
    std::vector<float> acc(pp.w);  // one row of R^T dy
#pragma omp for collapse(3) schedule(static)
    for (int64_t s = 0; s < pp.n; ++s)
      for (int64_t ic = 0; ic < pp.c; ++ic)
        for (int64_t iy = 0; iy < pp.h; ++iy) {
          const ResizeAxisRange ry = ay.range(iy);
          const int64_t count = resize_dst_channel_count(pp, ic);
          for (int64_t ix = 0; ix < pp.w; ++ix) acc[ix] = 0.f;
          for (int64_t k = 0; k < count; ++k) {
            const int64_t oc = resize_dst_channel(pp, ic, k);
            const float* g = dy + (s * pp.out_c + oc) * out_plane;
            for (int64_t ix = 0; ix < pp.w; ++ix)
              acc[ix] += resize_adjoint_channel_term(pp, resize_plane_adjoint(pp, g, iy, ix, ry, ax.range(ix), ay, ax), oc);
          }
          const int64_t base = ((s * pp.c + ic) * pp.h + iy) * pp.w;
          for (int64_t ix = 0; ix < pp.w; ++ix) store_grad(dx[base + ix], beta, acc[ix]);
        }
  }
}

}  // namespace dropnet
