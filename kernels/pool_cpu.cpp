// CPU pooling: OpenMP over the N * C planes, each plane looping over pool_math.h.
#include <algorithm>
#include <cstdint>
#include <experimental/simd>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/pool.h"
#include "kernels/pool_check.h"
#include "kernels/pool_math.h"
#include "kernels/store_grad.h"

namespace dropnet {

namespace {

namespace stdx = std::experimental;

const char* method_name(PoolMethod m) { return m == PoolMethod::Max ? "max" : "ave"; }

// Below this many output (or input) elements a call runs on one thread.
constexpr int64_t kParallelMin = 1 << 14;

// Per-thread scratch that only grows, so steady-state training allocates nothing per call.
float* thread_scratch(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Forward on the CPU. Output columns [ow_a, ow_b) ("interior") have windows wholly inside the
// input rows; they run as SIMD loops over the columns, one kernel cell (i, j) at a time in
// row-major order, the cell order of pool_max_window / pool_ave_window, with the same selection
// (pool_max_takes) and sums, so the results are bit-identical. Since a window's cells are
// `stride` columns apart from one column to the next, each plane is first split into `stride`
// column phases, P[r](h, m) = x(h, base + m * stride + r), padded to whole vectors (the padding
// is zeroed but only ever read into lanes past the interior, which are dropped): cell j of
// interior column base + q * stride is then P[j % stride](h, q + j / stride), a contiguous load
// over q.
using V = stdx::native_simd<float>;
using VI = stdx::rebind_simd_t<int32_t, V>;
constexpr int64_t kLanes = static_cast<int64_t>(V::size());

struct Interior {
  int64_t ow_a, ow_b;  // interior output columns
  int64_t base;        // input column where the window of ow_a starts
  int64_t mp;          // row length of a phase plane
};

Interior interior_of(const PoolParams& p) {
  Interior in;
  in.ow_a = std::min<int64_t>(pool_ceil_div(p.pad_w, p.stride_w), p.out_w);
  in.ow_b = p.w + p.pad_w < p.kernel_w
                ? in.ow_a
                : std::clamp<int64_t>((p.w + p.pad_w - p.kernel_w) / p.stride_w + 1, in.ow_a, p.out_w);
  in.base = in.ow_a * p.stride_w - p.pad_w;
  const int64_t n = in.ow_b - in.ow_a;
  in.mp = (n + kLanes - 1) / kLanes * kLanes + (p.kernel_w - 1) / p.stride_w + 1;
  return in;
}

template <int kStride>
void split_phases(const PoolParams& p, const Interior& in, const float* __restrict xp,
                  float* __restrict phases) {
  const int64_t s = kStride > 0 ? kStride : p.stride_w;
  for (int64_t r = 0; r < s; ++r)
    for (int64_t h = 0; h < p.h; ++h) {
      float* dst = phases + (r * p.h + h) * in.mp;
      const float* src = xp + h * p.w + in.base + r;
      const int64_t left = p.w - in.base - r;  // input columns from this phase's first on
      const int64_t avail = left <= 0 ? 0 : std::min<int64_t>((left + s - 1) / s, in.mp);
      for (int64_t m = 0; m < avail; ++m) dst[m] = src[m * s];
      for (int64_t m = avail; m < in.mp; ++m) dst[m] = 0.f;
    }
}

void interior_row(const PoolParams& p, const Interior& in, const float* phases,
                  const PoolWindow& rows, int64_t oh, float* yr, int32_t* ar) {
  const int64_t n = in.ow_b - in.ow_a, s = p.stride_w;
  // Cell (h, j) for columns q0...: phase j % s, offset j / s (r, m below walk j without dividing).
  auto cell = [&](int64_t h, int64_t r, int64_t m, int64_t q0) {
    return V(phases + (r * p.h + h) * in.mp + q0 + m, stdx::element_aligned);
  };
  const VI lane([](auto l) { return static_cast<int32_t>(l); });
  const float divisor = pool_divisor(p, oh, in.ow_a);  // the same for every interior column
  for (int64_t q0 = 0; q0 < n; q0 += kLanes) {
    V val;
    VI idx = 0;
    if (p.method == PoolMethod::Max) {
      V best = cell(rows.h0, 0, 0, q0), bi = 0.f, bj = 0.f;  // value, cell row and column
      for (int64_t h = rows.h0; h < rows.h1; ++h) {
        const float fi = static_cast<float>(h - rows.h0);
        for (int64_t j = 0, r = 0, m = 0; j < p.kernel_w; ++j, r = r + 1 == s ? 0 : r + 1, m += r == 0) {
          const V v = cell(h, r, m, q0);
          const auto take = pool_max_takes(v, best);
          stdx::where(take, best) = v;
          stdx::where(take, bi) = fi;
          stdx::where(take, bj) = static_cast<float>(j);
        }
      }
      val = best;
      idx = (static_cast<int32_t>(rows.h0) + stdx::static_simd_cast<VI>(bi)) * static_cast<int32_t>(p.w) +
            static_cast<int32_t>(in.base + q0 * s) + lane * static_cast<int32_t>(s) +
            stdx::static_simd_cast<VI>(bj);
    } else {
      V sum = 0.f;
      for (int64_t h = rows.h0; h < rows.h1; ++h)
        for (int64_t j = 0, r = 0, m = 0; j < p.kernel_w; ++j, r = r + 1 == s ? 0 : r + 1, m += r == 0)
          sum += cell(h, r, m, q0);
      val = sum / divisor;
    }
    const int64_t o = in.ow_a + q0, count = std::min(kLanes, n - q0);
    if (count == kLanes) {
      val.copy_to(yr + o, stdx::element_aligned);
      if (ar) idx.copy_to(ar + o, stdx::element_aligned);
    } else {
      float vbuf[kLanes];
      val.copy_to(vbuf, stdx::element_aligned);
      std::copy(vbuf, vbuf + count, yr + o);
      if (ar) {
        int32_t ibuf[kLanes];
        idx.copy_to(ibuf, stdx::element_aligned);
        std::copy(ibuf, ibuf + count, ar + o);
      }
    }
  }
}

}  // namespace

PoolParams make_pool_params(PoolMethod method, int kernel_h, int kernel_w, int stride_h,
                            int stride_w, int pad_h, int pad_w, int64_t n, int64_t c, int64_t h,
                            int64_t w) {
  const char* m = method_name(method);
  if (method != PoolMethod::Max && method != PoolMethod::Ave)
    input_error("pool: unknown method {}", static_cast<int>(method));
  if (kernel_h < 1 || kernel_w < 1)
    input_error("{} pool: kernel must be >= 1, got {}x{}", m, kernel_h, kernel_w);
  if (stride_h < 1 || stride_w < 1)
    input_error("{} pool: stride must be >= 1, got {}x{}", m, stride_h, stride_w);
  if (pad_h < 0 || pad_w < 0) input_error("{} pool: pad must be >= 0, got {}x{}", m, pad_h, pad_w);
  if (pad_h >= kernel_h || pad_w >= kernel_w)
    input_error("{} pool: pad {}x{} must be smaller than the kernel {}x{} (as in Caffe)", m, pad_h,
                pad_w, kernel_h, kernel_w);
  if (n < 1 || c < 1 || h < 1 || w < 1)
    input_error("{} pool: input shape ({}, {}, {}, {}) has an empty dimension", m, n, c, h, w);
  if (h * w > std::numeric_limits<int32_t>::max())
    input_error("{} pool: input plane {}x{} has more than 2^31 cells (argmax is int32)", m, h, w);
  PoolParams p{method, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, n, c, h, w, 0, 0};
  p.out_h = pool_out_size(h, kernel_h, stride_h, pad_h);
  p.out_w = pool_out_size(w, kernel_w, stride_w, pad_w);
  if (p.out_h < 1 || p.out_w < 1)
    input_error("{} pool: kernel {}x{} with pad {}x{} does not fit the {}x{} input", m, kernel_h,
                kernel_w, pad_h, pad_w, h, w);
  return p;
}

void pool_forward_cpu(const PoolParams& p, const float* x, float* y, int32_t* argmax) {
  pool_check_args(p, x, y, argmax);
  const int64_t planes = p.n * p.c, in_sz = p.h * p.w, out_sz = p.out_h * p.out_w;
  const bool is_max = p.method == PoolMethod::Max;
  const Interior in = interior_of(p);
#pragma omp parallel if (planes * out_sz >= kParallelMin)
  {
    const bool has_interior = in.ow_b > in.ow_a;
    float* phases = has_interior ? thread_scratch(static_cast<size_t>(p.stride_w * p.h * in.mp)) : nullptr;
#pragma omp for schedule(static)
    for (int64_t pl = 0; pl < planes; ++pl) {
      const float* xp = x + pl * in_sz;
      if (has_interior) {
        switch (p.stride_w) {  // a compile-time stride lets the split vectorize
          case 1: split_phases<1>(p, in, xp, phases); break;
          case 2: split_phases<2>(p, in, xp, phases); break;
          case 3: split_phases<3>(p, in, xp, phases); break;
          default: split_phases<0>(p, in, xp, phases); break;
        }
      }
      for (int64_t oh = 0; oh < p.out_h; ++oh) {
        float* yr = y + pl * out_sz + oh * p.out_w;
        int32_t* ar = is_max ? argmax + pl * out_sz + oh * p.out_w : nullptr;
        auto border = [&](int64_t ow) {
          const PoolWindow win = pool_window(p, oh, ow);
          if (is_max)
            pool_max_window(xp, p.w, win, &yr[ow], &ar[ow]);
          else
            yr[ow] = pool_ave_window(xp, p.w, win);
        };
        for (int64_t ow = 0; ow < in.ow_a; ++ow) border(ow);
        for (int64_t ow = in.ow_b; ow < p.out_w; ++ow) border(ow);
        if (has_interior) interior_row(p, in, phases, pool_window(p, oh, in.ow_a), oh, yr, ar);
      }
    }
  }
}

// Scatters each output's gradient into its window, outputs in row-major order: every input cell
// receives its terms in the order pool_max_grad / pool_ave_grad (the CUDA kernel's per-cell
// gather) adds them, starting from 0, so both backends give the same sums.
void pool_backward_cpu(const PoolParams& p, const float* dy, const int32_t* argmax, float beta,
                       float* dx) {
  pool_check_args(p, dy, dx, argmax);
  const int64_t planes = p.n * p.c, in_sz = p.h * p.w, out_sz = p.out_h * p.out_w;
  const bool is_max = p.method == PoolMethod::Max;
#pragma omp parallel if (planes * in_sz >= kParallelMin)
  {
    float* acc = beta == 0.f ? nullptr : thread_scratch(static_cast<size_t>(in_sz));
#pragma omp for schedule(static)
    for (int64_t pl = 0; pl < planes; ++pl) {
      const float* dyp = dy + pl * out_sz;
      float* g = beta == 0.f ? dx + pl * in_sz : acc;
      std::fill(g, g + in_sz, 0.f);
      if (is_max) {
        const int32_t* ap = argmax + pl * out_sz;
        for (int64_t o = 0; o < out_sz; ++o) g[ap[o]] += dyp[o];
      } else {
        for (int64_t oh = 0; oh < p.out_h; ++oh)
          for (int64_t ow = 0; ow < p.out_w; ++ow) {
            const PoolWindow win = pool_window(p, oh, ow);
            const float d = dyp[oh * p.out_w + ow] / win.divisor;
            for (int64_t h = win.h0; h < win.h1; ++h)
              for (int64_t w = win.w0; w < win.w1; ++w) g[h * p.w + w] += d;
          }
      }
      if (beta != 0.f) {
        float* dxp = dx + pl * in_sz;
        for (int64_t i = 0; i < in_sz; ++i) store_grad(dxp[i], beta, g[i]);
      }
    }
  }
}

}  // namespace dropnet
