#include "data/synthetic.h"

#include "core/error.h"
#include "core/rng.h"

namespace dropnet::data {

namespace {
constexpr uint32_t kSyntheticStream = 0x5E7D47A0u;

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

std::shared_ptr<InMemoryDataset> make_synthetic(int c, int h, int w, int num_classes, int64_t num_samples,
                                                uint64_t seed) {
  auto ds = std::make_shared<InMemoryDataset>("synthetic", c, h, w, num_classes);
  const int64_t bytes = ds->sample_bytes();
  ds->pixels().resize(static_cast<size_t>(num_samples * bytes));
  ds->labels().resize(static_cast<size_t>(num_samples));
  uint8_t* px = ds->pixels().data();
  int32_t* lab = ds->labels().data();
  // Sample i is keyed by (seed, i) alone: the same whatever num_samples or the thread count.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < num_samples; ++i) {
    Philox4 r = philox4x32_10(static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32), kSyntheticStream, 0,
                              static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    lab[i] = static_cast<int32_t>(r.v[0] % static_cast<uint32_t>(num_classes));
    uint64_t state = (static_cast<uint64_t>(r.v[1]) << 32) | r.v[2];
    uint8_t* p = px + i * bytes;
    int64_t k = 0;
    for (; k + 8 <= bytes; k += 8) {
      uint64_t v = splitmix64(state);
      for (int b = 0; b < 8; ++b) p[k + b] = static_cast<uint8_t>(v >> (8 * b));
    }
    uint64_t v = splitmix64(state);
    for (int b = 0; k < bytes; ++k, ++b) p[k] = static_cast<uint8_t>(v >> (8 * b));
  }
  return ds;
}

}  // namespace dropnet::data
