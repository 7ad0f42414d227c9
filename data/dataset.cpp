#include "data/dataset.h"

#include <fmt/format.h>

#include "core/error.h"

namespace dropnet::data {

InMemoryDataset::InMemoryDataset(std::string name, int c, int h, int w, int num_classes)
    : name_(std::move(name)), c_(c), h_(h), w_(w), num_classes_(num_classes) {
  DN_CHECK(c > 0 && h > 0 && w > 0 && num_classes > 0, "bad dataset shape {}x{}x{} / {}",
           c, h, w, num_classes);
}

Sample InMemoryDataset::get(int64_t i, std::vector<uint8_t>&) const {
  DN_CHECK(i >= 0 && i < size(), "sample index {} out of range [0, {})", i, size());
  return Sample{ImageView{pixels_.data() + i * sample_bytes(), c_, h_, w_}, labels_[i]};
}

std::string InMemoryDataset::describe(int64_t i) const { return fmt::format("{}[{}]", name_, i); }

void InMemoryDataset::reserve(int64_t n) {
  pixels_.reserve(static_cast<size_t>(n * sample_bytes()));
  labels_.reserve(static_cast<size_t>(n));
}

void InMemoryDataset::append(const uint8_t* pixels, const int32_t* labels, int64_t n) {
  pixels_.insert(pixels_.end(), pixels, pixels + n * sample_bytes());
  labels_.insert(labels_.end(), labels, labels + n);
}

}  // namespace dropnet::data
