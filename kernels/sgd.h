// The solver's arithmetic over (segments of) the flat parameter arena: the SGD update, gradient
// scaling, squared norm (clipping) and the NaN/Inf scan. Reductions return host values.
#pragma once

#include <cstdint>
#include <vector>

#include "core/device.h"

namespace dropnet {

// lr and weight_decay already include the parameter's lr_mult / decay_mult.
void sgd_update_cpu(int64_t n, float lr, float momentum, float weight_decay, float* w, float* g, float* v);
void scale_cpu(int64_t n, float alpha, float* x);
double sumsq_cpu(int64_t n, const float* x);
int64_t count_nonfinite_cpu(int64_t n, const float* x);

// One parameter of the arena for the fused update: elements [offset, offset + count).
struct SgdSegment {
  int64_t offset, count;
  float lr_mult, decay_mult;
};

// The whole SGD update in one pass over the arena w / g / v: every segment's elements get
// g *= grad_scale, g *= clip_scale (each skipped at 1), then sgd_update_cpu's step with
// float(lr * lr_mult) and float(weight_decay * decay_mult). lr and weight_decay are doubles
// because the per-parameter path rounded those products from double; the result is that of
// scale_cpu(grad_scale), scale_cpu(clip_scale) and one sgd_update_cpu per segment, bit for bit.
// Segments are in arena order and disjoint (checked); elements between them are not touched.
void sgd_update_arena_cpu(const SgdSegment* segs, int nsegs, double lr, float momentum, double weight_decay,
                          float grad_scale, float clip_scale, float* w, float* g, float* v);

#if DROPNET_HAVE_CUDA
void sgd_update_cuda(int64_t n, float lr, float momentum, float weight_decay, float* w, float* g, float* v,
                     Stream stream);
void scale_cuda(int64_t n, float alpha, float* x, Stream stream);
double sumsq_cuda(int64_t n, const float* x, Stream stream);
int64_t count_nonfinite_cuda(int64_t n, const float* x, Stream stream);
// sgd_update_arena_cpu in one kernel launch. `device_segs` is the segment table in device memory
// (SgdSegmentTable), in arena order and disjoint (not checked here); `n`, the arena's size, sizes
// the grid. `halt` (device memory, may be null): when *halt is nonzero the kernel changes nothing
// (the solver's device-side checks found a non-finite loss or gradient, or a bad label).
void sgd_update_arena_cuda(const SgdSegment* device_segs, int nsegs, int64_t n, double lr, float momentum,
                           double weight_decay, float grad_scale, float clip_scale, float* w, float* g, float* v,
                           Stream stream, const int* halt = nullptr);
#endif

// The segment table of sgd_update_arena_cuda on a device, uploaded (on the compute stream, so
// ordered after the kernels that read the previous table) only when it differs from the last one:
// the solver's parameter list is fixed, so in practice once.
class SgdSegmentTable {
 public:
  SgdSegmentTable() = default;
  SgdSegmentTable(const SgdSegmentTable&) = delete;
  SgdSegmentTable& operator=(const SgdSegmentTable&) = delete;
  ~SgdSegmentTable();

  // The device copy of `segs` (checked like sgd_update_arena_cpu's segments).
  const SgdSegment* upload(const std::vector<SgdSegment>& segs, Device dev);

 private:
  void release();

  std::vector<SgdSegment> host_;  // what the device copy holds
  Device device_;
  SgdSegment* table_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace dropnet
