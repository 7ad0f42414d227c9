// A product / a sum rounded to float on its own, never contracted into an FMA with the operation it
// feeds (nvcc contracts by default): device results then equal a host loop's float arithmetic.
// Shared by the SGD update (sgd_math.h) and the loss record of the step check (step_check.cu).
#pragma once

#include "core/hostdev.h"

namespace dropnet {

DN_HD float mul_rounded(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

DN_HD float add_rounded(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

}  // namespace dropnet
