// Counter-based RNG: Philox 4x32-10 (Salmon et al., SC'11). A random number is a pure function
// of (key, counter), so dropout/DropIn masks are identical on CPU and CUDA, can be regenerated in
// backward instead of stored, and runs are reproducible.
#pragma once

#include <cstdint>

#include "core/hostdev.h"

namespace dropnet {

struct Philox4 {
  uint32_t v[4];
};

DN_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// counter (c0..c3), key (k0, k1) -> 4 x 32 random bits.
DN_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                            uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo32(kM0, c0, &hi0);
    uint32_t lo1 = mulhilo32(kM1, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0;
    uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// 24 random bits -> float in [0, 1), exactly representable, same on host and device.
DN_HD float u32_to_unit_float(uint32_t x) { return static_cast<float>(x >> 8) * (1.0f / 16777216.0f); }

// The stream of uniforms for (seed, stream id, step): element i is word i%4 of block i/4.
// `stream` separates layers (layer id) and `step` separates iterations.
DN_HD float philox_uniform(uint64_t seed, uint32_t stream, uint32_t step, uint64_t index) {
  Philox4 r = philox4x32_10(static_cast<uint32_t>(index >> 2), static_cast<uint32_t>(index >> 34),
                            stream, step, static_cast<uint32_t>(seed),
                            static_cast<uint32_t>(seed >> 32));
  return u32_to_unit_float(r.v[index & 3]);
}

// Host-side generator for fillers and shuffles: sequential draws over a Philox stream.
class HostRng {
 public:
  HostRng(uint64_t seed, uint32_t stream) : seed_(seed), stream_(stream) {}
  uint32_t next_u32() {
    if (have_ == 0) {
      block_ = philox4x32_10(static_cast<uint32_t>(counter_), static_cast<uint32_t>(counter_ >> 32),
                             stream_, 0xA5A5A5A5u, static_cast<uint32_t>(seed_),
                             static_cast<uint32_t>(seed_ >> 32));
      ++counter_;
      have_ = 4;
    }
    return block_.v[--have_];
  }
  float uniform() { return u32_to_unit_float(next_u32()); }  // [0, 1)
  float uniform(float a, float b) { return a + (b - a) * uniform(); }
  float normal(float mean, float stddev);                  // Box-Muller
  uint64_t below(uint64_t n);                              // uniform integer in [0, n)
  uint64_t counter() const { return counter_; }
  int buffered() const { return have_; }
  // Restores a position saved with counter()/buffered() (snapshots).
  void seek(uint64_t counter, int buffered);

 private:
  uint64_t seed_;
  uint32_t stream_;
  uint64_t counter_ = 0;
  Philox4 block_{};
  int have_ = 0;
};

}  // namespace dropnet
