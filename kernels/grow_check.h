// The parameter checks of the channel-growth entry points (grow_cpu.cpp, grow.cu): one backend-
// neutral place, called by both backends' launchers.
#pragma once

#include "core/error.h"
#include "kernels/grow.h"

namespace dropnet {

// Checks the sizes (>= 0, active <= c); the launchers call it. Throws dropnet::Error.
inline void grow_check_params(const GrowParams& p) {
  DN_CHECK(p.n >= 0 && p.c >= 0 && p.hw >= 0, "grow: negative size (n {}, c {}, hw {})", p.n, p.c, p.hw);
  DN_CHECK(p.active >= 0 && p.active <= p.c, "grow: {} active channels of {}", p.active, p.c);
}

}  // namespace dropnet
