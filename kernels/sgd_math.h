// Caffe's SGD step for one element: L2 regularization into the gradient, the learning rate
// inside the momentum buffer, then the update (REFERENCE.md "SGD order").
#pragma once

#include "core/hostdev.h"

namespace dropnet {

DN_HD void sgd_step(float* w, float* g, float* v, float lr, float momentum, float weight_decay) {
  float grad = *g + weight_decay * *w;
  *g = grad;
  float vel = momentum * *v + lr * grad;
  *v = vel;
  *w -= vel;
}

}  // namespace dropnet
