// The parameter checks of the DropIn entry points (dropin_cpu.cpp, dropin.cu): one backend-
// neutral place, called by both backends' launchers.
#pragma once

#include "core/error.h"
#include "kernels/dropin.h"

namespace dropnet {

// Checks the parameters (sizes >= 0, p in [0, 1]); the launchers call it. Throws dropnet::Error.
inline void dropin_check_params(const DropinParams& p) {
  DN_CHECK(p.n >= 0 && p.c >= 0 && p.hw >= 0, "dropin: negative size (n {}, c {}, hw {})", p.n, p.c, p.hw);
  DN_CHECK(p.p >= 0.f && p.p <= 1.f, "dropin: p = {} is outside [0, 1]", p.p);  // false for NaN
  DN_CHECK(p.mode == DropinMode::Gradual || p.mode == DropinMode::Regularize, "dropin: bad mode {}",
           static_cast<int>(p.mode));
  DN_CHECK(p.unit == DropinUnit::Element || p.unit == DropinUnit::Channel, "dropin: bad unit {}",
           static_cast<int>(p.unit));
}

}  // namespace dropnet
