// MNIST / Fashion-MNIST IDX files: big-endian magic 2051 (images: N, rows, cols, then N*rows*cols
// bytes) and 2049 (labels: N, then N bytes); plain or gzip'd.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace dropnet::data {

struct IdxImages {
  int64_t n = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // (n, rows, cols)
};
IdxImages read_idx_images(const std::string& path);
// The header alone (count and image size; `pixels` stays empty): 16 bytes read, however large
// the file, gzip'd or not. For tools that need shapes, not pixels.
IdxImages read_idx_image_header(const std::string& path);
std::vector<uint8_t> read_idx_labels(const std::string& path);

// Images + labels with matching counts; every label must be < num_classes.
std::shared_ptr<InMemoryDataset> load_mnist(const std::string& images_path, const std::string& labels_path,
                                            int num_classes = 10);

}  // namespace dropnet::data
