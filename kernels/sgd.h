// The solver's arithmetic over (segments of) the flat parameter arena: the SGD update, gradient
// scaling, squared norm (clipping) and the NaN/Inf scan. Reductions return host values.
#pragma once

#include <cstdint>

#include "core/device.h"

namespace dropnet {

// lr and weight_decay already include the parameter's lr_mult / decay_mult.
void sgd_update_cpu(int64_t n, float lr, float momentum, float weight_decay, float* w, float* g, float* v);
void scale_cpu(int64_t n, float alpha, float* x);
double sumsq_cpu(int64_t n, const float* x);
int64_t count_nonfinite_cpu(int64_t n, const float* x);

#if DROPNET_HAVE_CUDA
void sgd_update_cuda(int64_t n, float lr, float momentum, float weight_decay, float* w, float* g, float* v,
                     Stream stream);
void scale_cuda(int64_t n, float alpha, float* x, Stream stream);
double sumsq_cuda(int64_t n, const float* x, Stream stream);
int64_t count_nonfinite_cuda(int64_t n, const float* x, Stream stream);
#endif

}  // namespace dropnet
