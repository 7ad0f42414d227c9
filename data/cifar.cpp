#include "data/cifar.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/npy.h"
#include "data/file_io.h"

namespace dropnet::data {

namespace fs = std::filesystem;

std::vector<std::string> cifar_default_files(bool train) {
  if (!train) return {"test_batch.bin"};
  return {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"};
}

std::string cifar_resolve_dir(const std::string& dir, const std::vector<std::string>& files) {
  if (files.empty() || fs::exists(fs::path(dir) / files[0])) return dir;
  fs::path sub = fs::path(dir) / "cifar-10-batches-bin";
  if (fs::exists(sub / files[0])) return sub.string();
  return dir;
}

namespace {

// Checks a file's size: a whole, non-zero number of records (exactly `per_file` when > 0).
int64_t checked_records(const std::string& path, int64_t bytes, int64_t per_file) {
  if (bytes == 0) input_error("CIFAR-10 file '{}' is empty (0 bytes)", path);
  if (per_file > 0 && bytes != per_file * kCifarRecordBytes)
    input_error("CIFAR-10 file '{}' has the wrong size: {} records of {} bytes = {} bytes expected, got {} bytes{}",
                path, per_file, kCifarRecordBytes, per_file * kCifarRecordBytes, bytes,
                bytes < per_file * kCifarRecordBytes ? " (truncated)" : "");
  if (bytes % kCifarRecordBytes != 0)
    input_error("CIFAR-10 file '{}' has the wrong size: {} bytes is not a whole number of {}-byte records "
                "({} records + {} bytes; truncated?)", path, bytes, kCifarRecordBytes, bytes / kCifarRecordBytes,
                bytes % kCifarRecordBytes);
  return bytes / kCifarRecordBytes;
}

// A CIFAR-10 file, plain or gzip. The format has no header, but `per_file` records promise its
// size: a gzip stream stops inflating as soon as its output passes that (a gzip bomb is not
// inflated in full before the size check refuses it).
std::vector<uint8_t> read_cifar_file(const std::string& path, int64_t per_file) {
  ReadLimit limit;
  if (per_file > 0) limit.promised = [per_file](const uint8_t*) { return per_file * kCifarRecordBytes; };
  ReadInfo info;
  std::vector<uint8_t> b = read_file_bytes(path, limit, &info);
  if (info.stopped)
    input_error("CIFAR-10 file '{}' (gzip) inflates to more than the {} records of {} bytes = {} bytes expected; "
                "stopped after {} bytes of output",
                path, per_file, kCifarRecordBytes, info.limit, b.size());
  return b;
}

}  // namespace

std::shared_ptr<InMemoryDataset> load_cifar10(const std::vector<std::string>& paths, int64_t records_per_file) {
  if (paths.empty()) input_error("CIFAR-10: no files given");
  auto ds = std::make_shared<InMemoryDataset>(paths.size() == 1 ? paths[0] : paths[0] + "...", 3, 32, 32, 10);
  std::vector<int32_t> labels;
  std::vector<uint8_t> pixels;
  for (const auto& path : paths) {
    std::vector<uint8_t> b = read_cifar_file(path, records_per_file);
    int64_t n = checked_records(path, static_cast<int64_t>(b.size()), records_per_file);
    labels.resize(static_cast<size_t>(n));
    pixels.resize(static_cast<size_t>(n) * 3072);
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* rec = b.data() + i * kCifarRecordBytes;
      if (rec[0] >= 10)
        input_error("CIFAR-10 file '{}': record {} (byte offset {}) has label {}, expected 0..9", path, i,
                    i * kCifarRecordBytes, rec[0]);
      labels[i] = rec[0];
      std::memcpy(pixels.data() + i * 3072, rec + 1, 3072);
    }
    ds->append(pixels.data(), labels.data(), n);
  }
  return ds;
}

namespace {

std::string default_cache_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg) return (fs::path(xdg) / "dropnet").string();
  const char* home = std::getenv("HOME");
  if (home && *home) return (fs::path(home) / ".cache" / "dropnet").string();
  return (fs::temp_directory_path() / "dropnet-cache").string();
}

bool valid_mean(const Tensor& a) { return a.count() == 3 * 32 * 32; }

}  // namespace

std::vector<float> cifar_mean_image(const std::vector<std::string>& paths, int64_t records_per_file, const std::string& dir,
                          const std::string& cache_dir, std::string* cache_path) {
  // The key: each file's name and size (a changed file set gives another cache file).
  uint64_t h = fnv1a64("dropnet-cifar-mean-v1");
  for (const auto& p : paths) {
    int64_t sz = file_size_or_neg(p);
    if (sz < 0) input_error("cannot open '{}': {}", p, std::strerror(errno));
    checked_records(p, sz, records_per_file);
    h = fnv1a64(fs::path(p).filename().string() + ":" + std::to_string(sz) + ";", h);
  }
  std::string name = fmt::format("dropnet_mean_{:016x}.npy", h);
  std::string abs_dir = fs::absolute(dir).lexically_normal().string();
  std::string alt_dir = cache_dir.empty() ? default_cache_dir() : cache_dir;
  // In the alternative cache the name also carries the data directory.
  std::string alt_name = fmt::format("dropnet_mean_{:016x}.npy", fnv1a64(abs_dir, h));
  std::vector<std::string> candidates = {(fs::path(dir) / name).string(), (fs::path(alt_dir) / alt_name).string()};
  for (const auto& c : candidates) {
    if (file_size_or_neg(c) < 0) continue;
    Tensor a = read_npy(c);
    if (!valid_mean(a)) input_error("cached CIFAR-10 mean '{}' is not a 3x32x32 array; delete it to recompute", c);
    if (cache_path) *cache_path = c;
    return a.to_host();
  }

  std::vector<double> sum(3072, 0.0);
  int64_t count = 0;
  for (const auto& p : paths) {
    std::vector<uint8_t> b = read_cifar_file(p, records_per_file);
    int64_t n = checked_records(p, static_cast<int64_t>(b.size()), records_per_file);
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* px = b.data() + i * kCifarRecordBytes + 1;
      for (int j = 0; j < 3072; ++j) sum[j] += px[j];
    }
    count += n;
  }
  std::vector<float> mean(3072);
  for (int j = 0; j < 3072; ++j) mean[j] = static_cast<float>(sum[j] / static_cast<double>(count));

  // Beside the data when possible (read-only data directories are common), else the cache dir.
  std::string used = candidates[0];
  try {
    write_npy(candidates[0], Shape{3, 32, 32}, mean.data());
  } catch (const Error& first) {
    std::error_code ec;
    fs::create_directories(alt_dir, ec);
    try {
      write_npy(candidates[1], Shape{3, 32, 32}, mean.data());
    } catch (const Error& second) {
      input_error("cannot cache the CIFAR-10 mean image: {}; {}", first.what(), second.what());
    }
    used = candidates[1];
  }
  spdlog::info("CIFAR-10 mean image over {} images written to {}", count, used);
  if (cache_path) *cache_path = used;
  return mean;
}

}  // namespace dropnet::data
