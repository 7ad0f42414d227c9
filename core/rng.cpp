#include "core/rng.h"

#include <cmath>

namespace dropnet {

float HostRng::normal(float mean, float stddev) {
  // Box-Muller; u1 in (0, 1] so log is finite.
  float u1 = 1.0f - uniform();
  float u2 = uniform();
  float r = std::sqrt(-2.0f * std::log(u1));
  return mean + stddev * r * std::cos(6.28318530717958647692f * u2);
}

uint64_t HostRng::below(uint64_t n) {
  uint64_t x = (static_cast<uint64_t>(next_u32()) << 32) | next_u32();
  return n == 0 ? 0 : x % n;
}

void HostRng::seek(uint64_t counter, int buffered) {
  have_ = 0;
  counter_ = counter;
  if (buffered > 0) {
    // Regenerate the block that was being consumed.
    counter_ = counter - 1;
    next_u32();
    have_ = buffered;
  }
}

}  // namespace dropnet
