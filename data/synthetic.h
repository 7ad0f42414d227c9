// Synthetic data: `num_samples` fixed random 8-bit images of shape (C, H, W) with labels in
// [0, num_classes), a pure function of the seed (for benchmarks and smoke tests of any net).
#pragma once

#include <cstdint>
#include <memory>

#include "data/dataset.h"

namespace dropnet::data {

std::shared_ptr<InMemoryDataset> make_synthetic(int c, int h, int w, int num_classes, int64_t num_samples,
                                                uint64_t seed);

}  // namespace dropnet::data
