// CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32);
// data_batch_1..5.bin (train) and test_batch.bin (test), 10,000 records each. The per-pixel mean
// image of the training files is computed once and cached as a float32 .npy file (3, 32, 32).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace dropnet::data {

constexpr int kCifarRecordBytes = 1 + 3 * 32 * 32;

std::vector<std::string> cifar_default_files(bool train);  // basenames
// `dir` itself, or dir/cifar-10-batches-bin when the files live there (the tarball's layout).
std::string cifar_resolve_dir(const std::string& dir, const std::vector<std::string>& files);

// Reads the files (paths) in order; each must hold exactly `records_per_file` records
// (0 = any positive whole number of records).
std::shared_ptr<InMemoryDataset> load_cifar10(const std::vector<std::string>& paths, int64_t records_per_file);

// Mean image (3, 32, 32), C-order, over the records of `paths`. With a cache: look for
// "<dir>/dropnet_mean_<hash>.npy" (hash of the files' names and sizes), else compute it and write
// it there, or under `cache_dir` (default $XDG_CACHE_HOME/dropnet or ~/.cache/dropnet) when `dir`
// is not writable. `cache_path` (optional) receives the file used.
std::vector<float> cifar_mean_image(const std::vector<std::string>& paths, int64_t records_per_file, const std::string& dir,
                          const std::string& cache_dir, std::string* cache_path = nullptr);

}  // namespace dropnet::data
