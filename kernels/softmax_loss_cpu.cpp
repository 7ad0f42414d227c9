#include <cmath>

#include "core/error.h"
#include "kernels/softmax_loss.h"

namespace dropnet {

namespace {
void check_labels(const SoftmaxParams& p, const float* labels) {
  const int64_t n = p.outer * p.inner;
  for (int64_t j = 0; j < n; ++j) {
    float l = labels[j];
    if (p.has_ignore && static_cast<int>(l) == p.ignore_label) continue;
    if (!(l >= 0.f) || l >= static_cast<float>(p.classes) || l != std::floor(l))
      input_error("label {} at position {} is not a class index in [0, {})", l, j, p.classes);
  }
}

int64_t count_valid(const SoftmaxParams& p, const float* labels) {
  if (!p.has_ignore) return p.outer * p.inner;
  int64_t v = 0;
  for (int64_t j = 0; j < p.outer * p.inner; ++j) v += static_cast<int>(labels[j]) != p.ignore_label;
  return v;
}
}  // namespace

void softmax_loss_forward_cpu(const SoftmaxParams& p, const float* x, const float* labels, float* prob, float* loss) {
  check_labels(p, labels);
  double total = 0.0;
  int64_t valid = 0;
#pragma omp parallel for reduction(+ : total, valid) if (p.outer * p.classes * p.inner > 65536)
  for (int64_t o = 0; o < p.outer; ++o)
    for (int64_t i = 0; i < p.inner; ++i) {
      int v = 0;
      total += softmax_loss_position(p, x, labels, prob, o, i, &v);
      valid += v;
    }
  *loss = valid > 0 ? static_cast<float>(total / static_cast<double>(valid)) : 0.f;
}

void softmax_loss_backward_cpu(const SoftmaxParams& p, const float* prob, const float* labels, float loss_weight,
                               float beta, float* dx) {
  const int64_t valid = count_valid(p, labels);
  const float scale = valid > 0 ? loss_weight / static_cast<float>(valid) : 0.f;
#pragma omp parallel for if (p.outer * p.classes * p.inner > 65536)
  for (int64_t o = 0; o < p.outer; ++o)
    for (int64_t c = 0; c < p.classes; ++c)
      for (int64_t i = 0; i < p.inner; ++i) {
        float g = softmax_loss_grad(p, prob, labels, o, c, i, scale);
        float& d = dx[(o * p.classes + c) * p.inner + i];
        d = beta == 0.f ? g : beta * d + g;
      }
}

void accuracy_forward_cpu(const SoftmaxParams& p, int top_k, const float* x, const float* labels, float* accuracy) {
  check_labels(p, labels);
  int64_t hits = 0, valid = 0;
  for (int64_t o = 0; o < p.outer; ++o)
    for (int64_t i = 0; i < p.inner; ++i) {
      int label = static_cast<int>(labels[o * p.inner + i]);
      if (p.has_ignore && label == p.ignore_label) continue;
      ++valid;
      hits += topk_correct(x + o * p.classes * p.inner + i, p.classes, p.inner, label, top_k);
    }
  *accuracy = valid > 0 ? static_cast<float>(static_cast<double>(hits) / static_cast<double>(valid)) : 0.f;
}

}  // namespace dropnet
