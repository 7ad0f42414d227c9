// The one gradient store of the backward passes, shared by every CPU loop and CUDA kernel.
#pragma once

#include <math.h>

#include "core/hostdev.h"

namespace dropnet {

// d = beta * d + g in one rounding, spelled as fmaf so that no compiler can contract it another
// way (GCC and nvcc both contract a * b + c, each choosing which product to fuse: the CPU loop and
// the kernel then differed in the last bit, found by the emulated device). beta == 0 overwrites d
// without reading it (it may be uninitialised, garbage or NaN).
DN_HD void store_grad(float& d, float beta, float g) { d = beta == 0.f ? g : fmaf(beta, d, g); }

}  // namespace dropnet
