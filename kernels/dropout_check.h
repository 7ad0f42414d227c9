// The parameter checks of the dropout entry points (dropout_cpu.cpp, dropout.cu): one backend-
// neutral place, called by both backends' launchers.
#pragma once

#include "core/error.h"
#include "kernels/dropout.h"

namespace dropnet {

// count >= 0 and 0 <= ratio < 1; throws dropnet::Error.
inline void dropout_check_params(const DropoutParams& p) {
  DN_CHECK(p.count >= 0, "dropout: negative count {}", p.count);
  DN_CHECK(p.ratio >= 0.f && p.ratio < 1.f, "dropout: ratio = {} is outside [0, 1)", p.ratio);
}

}  // namespace dropnet
