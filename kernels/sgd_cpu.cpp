#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/sgd.h"
#include "kernels/sgd_math.h"

namespace dropnet {

void sgd_update_cpu(int64_t n, float lr, float momentum, float weight_decay, float* w, float* g, float* v) {
#pragma omp parallel for simd if (n > 262144) schedule(static)
  for (int64_t i = 0; i < n; ++i) sgd_step(w + i, g + i, v + i, lr, momentum, weight_decay);
}

namespace {

// The CUDA kernel finds an element's segment by binary search over the offsets.
void check_segments(const SgdSegment* segs, int nsegs) {
  for (int s = 0; s < nsegs; ++s) {
    DN_CHECK(segs[s].offset >= 0 && segs[s].count >= 0, "SGD segment {}: offset {} count {}", s, segs[s].offset,
             segs[s].count);
    DN_CHECK(s == 0 || segs[s - 1].offset + segs[s - 1].count <= segs[s].offset,
             "SGD segments {} and {} overlap or are out of arena order", s - 1, s);
  }
}

}  // namespace

void sgd_update_arena_cpu(const SgdSegment* segs, int nsegs, double lr, float momentum, double weight_decay,
                          float grad_scale, float clip_scale, float* w, float* g, float* v) {
  check_segments(segs, nsegs);
  int64_t total = 0;
  for (int s = 0; s < nsegs; ++s) total += segs[s].count;
  // One parallel region for the whole arena; the segments are disjoint, so no barrier between them.
#pragma omp parallel if (total > 262144)
  for (int s = 0; s < nsegs; ++s) {
    const SgdSegment& seg = segs[s];
    const float plr = static_cast<float>(lr * seg.lr_mult), pwd = static_cast<float>(weight_decay * seg.decay_mult);
    float *ws = w + seg.offset, *gs = g + seg.offset, *vs = v + seg.offset;
#pragma omp for simd schedule(static) nowait
    for (int64_t i = 0; i < seg.count; ++i)
      sgd_scaled_step(ws + i, gs + i, vs + i, plr, momentum, pwd, grad_scale, clip_scale);
  }
}

void scale_cpu(int64_t n, float alpha, float* x) {
#pragma omp parallel for simd if (n > 262144) schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

double sumsq_cpu(int64_t n, const float* x) {
  double s = 0.0;
#pragma omp parallel for reduction(+ : s) if (n > 262144) schedule(static)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

int64_t count_nonfinite_cpu(int64_t n, const float* x) {
  int64_t c = 0;
#pragma omp parallel for reduction(+ : c) if (n > 262144) schedule(static)
  for (int64_t i = 0; i < n; ++i) c += std::isfinite(x[i]) ? 0 : 1;
  return c;
}

SgdSegmentTable::~SgdSegmentTable() { release(); }

void SgdSegmentTable::release() {
  device_free(device_, table_, bytes_);
  table_ = nullptr;
  bytes_ = 0;
}

const SgdSegment* SgdSegmentTable::upload(const std::vector<SgdSegment>& segs, Device dev) {
  auto same = [](const SgdSegment& a, const SgdSegment& b) {
    return a.offset == b.offset && a.count == b.count && a.lr_mult == b.lr_mult && a.decay_mult == b.decay_mult;
  };
  if (dev == device_ && std::equal(segs.begin(), segs.end(), host_.begin(), host_.end(), same)) return table_;
  check_segments(segs.data(), static_cast<int>(segs.size()));
  const size_t bytes = segs.size() * sizeof(SgdSegment);
  if (!(dev == device_) || bytes > bytes_) {
    release();
    if (bytes > 0) table_ = static_cast<SgdSegment*>(device_alloc(dev, bytes));
    bytes_ = bytes;
    device_ = dev;
  }
  device_copy(table_, dev, segs.data(), Device::cpu(), bytes);
  host_ = segs;
  return table_;
}

}  // namespace dropnet
