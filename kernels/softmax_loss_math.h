// Softmax + multinomial logistic loss and top-k accuracy, per position (outer, inner) over the
// class axis with stride `inner`. Shared by the CPU loop and the CUDA kernel.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "core/hostdev.h"

namespace dropnet {

struct SoftmaxParams {
  int64_t outer, classes, inner;
  int ignore_label;  // label value to skip; meaningful only when has_ignore
  bool has_ignore;
};

// Writes the max-subtracted softmax of one position into prob; returns the loss term
// -log(max(p_label, FLT_MIN)), or 0 for an ignored label. *valid = 0/1.
DN_HD float softmax_loss_position(const SoftmaxParams& p, const float* x, const float* labels, float* prob,
                                  int64_t o, int64_t i, int* valid) {
  const float* xs = x + o * p.classes * p.inner + i;
  float* ps = prob + o * p.classes * p.inner + i;
  float m = xs[0];
  for (int64_t c = 1; c < p.classes; ++c) m = fmaxf(m, xs[c * p.inner]);
  float sum = 0.f;
  for (int64_t c = 0; c < p.classes; ++c) {
    float e = expf(xs[c * p.inner] - m);
    ps[c * p.inner] = e;
    sum += e;
  }
  const float inv = 1.f / sum;
  for (int64_t c = 0; c < p.classes; ++c) ps[c * p.inner] *= inv;
  const int label = static_cast<int>(labels[o * p.inner + i]);
  if (p.has_ignore && label == p.ignore_label) {
    *valid = 0;
    return 0.f;
  }
  *valid = 1;
  // A NaN probability (NaN or inf scores) gives a NaN loss: fmaxf would turn it into -log(FLT_MIN) = 87.3,
  // a finite loss that hides the NaN from the solver's check.
  const float pl = ps[label * p.inner];
  return pl != pl ? pl : -logf(fmaxf(pl, FLT_MIN));
}

// dx = scale * (prob - onehot(label)), 0 for ignored positions; scale = loss_weight / valid.
DN_HD float softmax_loss_grad(const SoftmaxParams& p, const float* prob, const float* labels, int64_t o,
                              int64_t c, int64_t i, float scale) {
  const int label = static_cast<int>(labels[o * p.inner + i]);
  if (p.has_ignore && label == p.ignore_label) return 0.f;
  float g = prob[(o * p.classes + c) * p.inner + i] - (c == label ? 1.f : 0.f);
  return scale * g;
}

// Caffe's rule: correct when fewer than k other classes score >= the true class. A position with
// a non-finite score (NaN, inf) is a wrong answer: every comparison with NaN is false, so under
// Caffe's rule alone NaN scores were "correct" (top-1 = 1 for a diverged net).
DN_HD int topk_correct(const float* x, int64_t classes, int64_t stride, int label, int k) {
  const float truth = x[label * stride];
  int better = -1;  // the true class counts itself once
  for (int64_t c = 0; c < classes; ++c) {
    const float v = x[c * stride];
    if (!(v - v == 0.f)) return 0;  // NaN or +-inf (inf - inf is NaN); no fast-math in this project
    better += (v >= truth) ? 1 : 0;
  }
  return better < k ? 1 : 0;
}

}  // namespace dropnet
