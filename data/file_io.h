// Whole-file reads for the dataset readers: plain or gzip, told apart by the 0x1f8b magic, not by
// the file name. (.npy mean images go through core/npy.h.)
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dropnet::data {

// Bounds on a read. A file must be a regular file (core/fileio.h) of at most max_bytes, and a
// gzip stream stops inflating once its output passes max_bytes or, when `promised` is given,
// once the first header_bytes of output are in and the output passes promised(header): a 4 MB
// gzip bomb no longer inflates to 4 GB before a size check refuses it.
inline constexpr int64_t kMaxDataFileBytes = int64_t{16} << 30;
struct ReadLimit {
  int64_t max_bytes = kMaxDataFileBytes;
  size_t header_bytes = 0;
  std::function<int64_t(const uint8_t* header)> promised;  // total bytes the header promises
};
// What a read stopped short of: set when inflating stopped at the promise (the bytes returned
// hold the header and more, never the whole stream).
struct ReadInfo {
  bool gzip = false;
  bool stopped = false;
  int64_t limit = 0;  // the bound it stopped at
};

// Reads a file; a gzip stream (possibly several concatenated members) is inflated. Errors
// (missing file, not a regular file, too large, truncated or corrupt gzip data, output past
// max_bytes) are input errors naming the file; output past the header's promise sets
// info->stopped (the caller's own checks name what the header says) or, without `info`, is an error.
std::vector<uint8_t> read_file_bytes(const std::string& path, const ReadLimit& limit = {}, ReadInfo* info = nullptr);
bool is_gzip(const std::vector<uint8_t>& bytes);
// Byte size of a file on disk, or -1 when it cannot be stat'ed.
int64_t file_size_or_neg(const std::string& path);

// 64-bit FNV-1a, for cache file names.
uint64_t fnv1a64(const std::string& s, uint64_t h = 1469598103934665603ull);

}  // namespace dropnet::data
