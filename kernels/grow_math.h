// Width-growth schedule and mask, shared by grow_cpu.cpp and grow.cu (DESIGN.md §3).
#pragma once

#include <math.h>

#include <cstdint>

#include "core/hostdev.h"
#include "kernels/grow.h"

namespace dropnet {

// Active channels at iteration t: the fraction from + (1 - from) * clamp((t - start) / length, 0, 1)
// of c, rounded up, at least 1. In double; the 1e-9 keeps a fraction that is an exact multiple of
// 1 / c in decimal (0.3 of 10) from rounding up past it (0.3 * 10 = 3.0000000000000004).
inline int64_t grow_active_channels(int64_t t, double from, int64_t start, int64_t length, int64_t c) {
  double r = length <= 0 ? (t >= start ? 1.0 : 0.0) : static_cast<double>(t - start) / static_cast<double>(length);
  r = r < 0.0 ? 0.0 : (r > 1.0 ? 1.0 : r);
  const double f = from + (1.0 - from) * r;
  int64_t a = static_cast<int64_t>(ceil(f * static_cast<double>(c) - 1e-9));
  if (a < 1) a = 1;
  return a > c ? c : a;
}

// Whether flat element i of an (n, c, hw) blob lies in an active channel.
DN_HD bool grow_active(const GrowParams& p, int64_t i) { return (i / p.hw) % p.c < p.active; }

DN_HD float grow_value(const GrowParams& p, int64_t i, float v) { return grow_active(p, i) ? v : 0.f; }

}  // namespace dropnet
