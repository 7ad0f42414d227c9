// Caffe's SGD step for one element: L2 regularization into the gradient, the learning rate
// inside the momentum buffer, then the update (REFERENCE.md "SGD order").
#pragma once

#include "core/hostdev.h"
#include "kernels/rounded_math.h"

namespace dropnet {

DN_HD void sgd_step(float* w, float* g, float* v, float lr, float momentum, float weight_decay) {
  float grad = *g + weight_decay * *w;
  *g = grad;
  float vel = momentum * *v + lr * grad;
  *v = vel;
  *w -= vel;
}

// mul_rounded (kernels/rounded_math.h) keeps the products below from contracting into FMAs. On the host
// GCC leaves the products of sgd_scaled_step alone behind their branches;
// Sgd.ArenaUpdateEqualsPerParameterLoop pins that bit for bit.

// The fused arena update for one element (sgd_update_arena_*): the gradient scaled by
// 1 / (iter_size * world), then by the clipping factor, then sgd_step. The two products are
// rounded on their own, as the separate scale passes this replaces rounded them; each is skipped
// at 1, where it is exact anyway.
DN_HD void sgd_scaled_step(float* w, float* g, float* v, float lr, float momentum, float weight_decay, float grad_scale,
                           float clip_scale) {
  float grad = *g;
  if (grad_scale != 1.f) grad = mul_rounded(grad, grad_scale);
  if (clip_scale != 1.f) grad = mul_rounded(grad, clip_scale);
  *g = grad;
  sgd_step(w, g, v, lr, momentum, weight_decay);
}

}  // namespace dropnet
