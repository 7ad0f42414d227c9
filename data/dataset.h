// Random access to the samples of a data set as 8-bit (C, H, W) images with an integer label.
// Readers (IDX, CIFAR, image lists, synthetic) implement it; IndexedSource (sampler.h) turns one
// into a BatchSource with shuffling, sharding, transforms and resumable positions.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dropnet::data {

struct ImageView {
  const uint8_t* px = nullptr;  // (C, H, W)
  int c = 0, h = 0, w = 0;
};

struct Sample {
  ImageView image;
  int label = 0;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual int num_classes() const = 0;
  virtual int channels() const = 0;
  // (H, W) when every sample has that size; {0, 0} when sizes vary (decoded images).
  virtual std::pair<int, int> fixed_hw() const = 0;
  // Sample i. May decode into `scratch` (one per calling thread); the view stays valid until
  // the next call with the same scratch. Thread-safe.
  virtual Sample get(int64_t i, std::vector<uint8_t>& scratch) const = 0;
  // Names sample i in error messages ("list.txt:12 (cat/1.jpg)", "train-images.gz[57]").
  virtual std::string describe(int64_t i) const = 0;
  // Whether loading a sample costs enough to spread a batch over threads (decoding).
  virtual bool expensive() const { return false; }
};

// All samples in memory, one shape: MNIST, CIFAR-10, synthetic.
class InMemoryDataset : public Dataset {
 public:
  InMemoryDataset(std::string name, int c, int h, int w, int num_classes);
  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  int num_classes() const override { return num_classes_; }
  int channels() const override { return c_; }
  std::pair<int, int> fixed_hw() const override { return {h_, w_}; }
  Sample get(int64_t i, std::vector<uint8_t>& scratch) const override;
  std::string describe(int64_t i) const override;

  int64_t sample_bytes() const { return static_cast<int64_t>(c_) * h_ * w_; }
  // Appends samples: `pixels` holds n * sample_bytes() bytes.
  void append(const uint8_t* pixels, const int32_t* labels, int64_t n);
  void reserve(int64_t n);
  std::vector<uint8_t>& pixels() { return pixels_; }
  std::vector<int32_t>& labels() { return labels_; }
  const std::vector<uint8_t>& pixels() const { return pixels_; }
  const std::vector<int32_t>& labels() const { return labels_; }

 private:
  std::string name_;
  int c_, h_, w_;
  int num_classes_;
  std::vector<uint8_t> pixels_;  // (N, C, H, W)
  std::vector<int32_t> labels_;  // (N)
};

}  // namespace dropnet::data
