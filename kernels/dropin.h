// DropIn (Smith, Hand, Doster 2016): y = r * new + (1 - r) * skip, element-wise over (N, C, H*W)
// with a mask r that is a pure function of the parameters below, so backward regenerates it and
// the CPU and CUDA paths agree bit for bit (DESIGN.md §4 "DropIn").
//
// - Gradual (paper eq. 1): with p the fraction taken from `new` (the layer computes it with
//   dropin_gradual_p), q = 1 - p and n units per sample, the first floor(q * n) units in C-order
//   read `skip`, the rest read `new`; the same mask for every sample and phase.
// - Regularize (paper eq. 2): sample = true draws r ~ Bernoulli(p) per (sample, unit) from the
//   counter-based RNG keyed by (seed, stream, step); sample = false uses the expectation r = p.
// A unit is an element (Element) or a whole feature map (Channel).
//
// Backward: d_new = r * dy (+ beta_new * d_new), d_skip = (1 - r) * dy (+ beta_skip * d_skip).
// beta = 0 overwrites without reading. Element-wise aliasing (y == skip, d_new == dy, ...) is
// allowed.
#pragma once

#include <cstdint>

#include "core/device.h"

namespace dropnet {

enum class DropinMode { Gradual, Regularize };
enum class DropinUnit { Element, Channel };

struct DropinParams {
  DropinMode mode = DropinMode::Gradual;
  DropinUnit unit = DropinUnit::Element;
  int64_t n = 0, c = 0, hw = 0;  // blobs are (n, c, hw); one sample holds c * hw elements
  float p = 0.f;      // probability of taking `new`: p(t) for gradual, the fixed p for regularize
  bool sample = true;  // regularize: Bernoulli draw (TRAIN, or TEST with `test: sample`) vs expectation
  uint64_t seed = 0;   // RNG key (regularize + sample only)
  uint32_t stream = 0;  // the layer's RNG stream id
  uint32_t step = 0;    // iteration
};

// Gradual mode: units (elements, or channels for unit Channel) of one sample that read `new`,
// n_units - floor(q * n_units). Same formula as the kernels (dropin_gradual_skip_units).
int64_t dropin_units_from_new(const DropinParams& p);

void dropin_forward_cpu(const DropinParams& p, const float* skip, const float* new_, float* y);
// Either gradient pointer may be null (that bottom needs no gradient).
void dropin_backward_cpu(const DropinParams& p, const float* dy, float beta_skip, float* d_skip,
                         float beta_new, float* d_new);

#if DROPNET_HAVE_CUDA
void dropin_forward_cuda(const DropinParams& p, const float* skip, const float* new_, float* y,
                         Stream stream);
void dropin_backward_cuda(const DropinParams& p, const float* dy, float beta_skip, float* d_skip,
                          float beta_new, float* d_new, Stream stream);
#endif

}  // namespace dropnet
