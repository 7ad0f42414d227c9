// Packed data sets: fixed-size 8-bit (C, H, W) samples with int32 labels in one memory-mapped
// file, for data too large to decode per epoch (pre-resized ImageNet) or to hold in memory.
// Layout (little-endian):
//   char magic[8] = "DNPACK1\0"; int64 n; int32 c, h, w, num_classes;
//   int32 labels[n]; uint8 pixels[n][c][h][w]
#pragma once

#include <cstdint>
#include <string>

#include "data/dataset.h"

namespace dropnet::data {

class PackedDataset : public Dataset {
 public:
  explicit PackedDataset(const std::string& path);
  ~PackedDataset() override;
  PackedDataset(const PackedDataset&) = delete;
  PackedDataset& operator=(const PackedDataset&) = delete;

  int64_t size() const override { return n_; }
  int num_classes() const override { return num_classes_; }
  int channels() const override { return c_; }
  std::pair<int, int> fixed_hw() const override { return {h_, w_}; }
  Sample get(int64_t i, std::vector<uint8_t>& scratch) const override;
  std::string describe(int64_t i) const override;
  bool expensive() const override { return true; }  // page faults on first touch

 private:
  std::string path_;
  int64_t n_ = 0;
  int c_ = 0, h_ = 0, w_ = 0, num_classes_ = 0;
  const uint8_t* map_ = nullptr;
  size_t map_bytes_ = 0;
  const int32_t* labels_ = nullptr;
  const uint8_t* pixels_ = nullptr;
};

// Writes a data set (every sample must have the data set's fixed size) to a packed file,
// atomically (temporary file, then rename).
void write_packed(const std::string& path, const Dataset& ds);

}  // namespace dropnet::data
