// Resize on the CPU: per-axis tap and range tables filled once per call from resize_math.h, then
// OpenMP loops over the shared plane arithmetic (the CUDA kernels compute the same taps on the fly).
#include <vector>

#include "core/error.h"
#include "kernels/resize.h"
#include "kernels/resize_math.h"

namespace dropnet {

void resize_check_params(const ResizeParams& p) {
  DN_CHECK(p.method == ResizeMethod::Nearest || p.method == ResizeMethod::Bilinear ||
               p.method == ResizeMethod::Area,
           "resize: bad method {}", static_cast<int>(p.method));
  DN_CHECK(p.channel_mode == ChannelMode::Tile || p.channel_mode == ChannelMode::Pad ||
               p.channel_mode == ChannelMode::Average,
           "resize: bad channel mode {}", static_cast<int>(p.channel_mode));
  DN_CHECK(p.n >= 0 && p.c >= 1 && p.h >= 1 && p.w >= 1 && p.out_c >= 1 && p.out_h >= 1 && p.out_w >= 1,
           "resize: bad extents ({}, {}, {}, {}) -> ({}, {}, {}, {})", p.n, p.c, p.h, p.w, p.n,
           p.out_c, p.out_h, p.out_w);
  constexpr int64_t kMaxExtent = int64_t{1} << 24;  // float(dst) and the bilinear source are exact
  DN_CHECK(p.h <= kMaxExtent && p.w <= kMaxExtent && p.out_h <= kMaxExtent && p.out_w <= kMaxExtent,
           "resize: spatial extent above 2^24 ({}x{} -> {}x{})", p.h, p.w, p.out_h, p.out_w);
}

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

void resize_forward_cpu(const ResizeParams& p, const float* x, float* y) {
  resize_check_params(p);
  if (p.n == 0) return;
  DN_CHECK(x && y, "resize_forward_cpu: null pointer");
  const ResizeParams pp = p;
  const AxisTables ty(pp.method, pp.h, pp.out_h, false), tx(pp.method, pp.w, pp.out_w, false);
  const ResizeAxisTap* tys = ty.taps.data();
  const ResizeAxisTap* txs = tx.taps.data();
#pragma omp parallel for collapse(3) schedule(static)
  for (int64_t s = 0; s < pp.n; ++s)
    for (int64_t oc = 0; oc < pp.out_c; ++oc)
      for (int64_t oy = 0; oy < pp.out_h; ++oy) {
        float* row = y + ((s * pp.out_c + oc) * pp.out_h + oy) * pp.out_w;
        const ResizeAxisTap t = tys[oy];
        for (int64_t ox = 0; ox < pp.out_w; ++ox) row[ox] = resize_forward_at(pp, x, s, oc, t, txs[ox]);
      }
}

void resize_backward_cpu(const ResizeParams& p, const float* dy, float beta, float* dx) {
  resize_check_params(p);
  if (p.n == 0) return;
  DN_CHECK(dy && dx, "resize_backward_cpu: null pointer");
  const ResizeParams pp = p;
  const AxisTables ty(pp.method, pp.h, pp.out_h, true), tx(pp.method, pp.w, pp.out_w, true);
  const ResizeAxisTable ay = ty.table(), ax = tx.table();
#pragma omp parallel for collapse(3) schedule(static)
  for (int64_t s = 0; s < pp.n; ++s)
    for (int64_t ic = 0; ic < pp.c; ++ic)
      for (int64_t iy = 0; iy < pp.h; ++iy) {
        const int64_t base = ((s * pp.c + ic) * pp.h + iy) * pp.w;
        const ResizeAxisRange ry = ay.range(iy);
        for (int64_t ix = 0; ix < pp.w; ++ix)
          resize_store_grad(dx, base + ix, beta,
                            resize_backward_at(pp, dy, s, ic, iy, ix, ry, ax.range(ix), ay, ax));
      }
}

}  // namespace dropnet
