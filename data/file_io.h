// Whole-file reads for the dataset readers: plain or gzip, told apart by the 0x1f8b magic, not by
// the file name. (.npy mean images go through core/npy.h.)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dropnet::data {

// Reads a file; a gzip stream (possibly several concatenated members) is inflated. Errors
// (missing file, truncated or corrupt gzip data) are input errors naming the file.
std::vector<uint8_t> read_file_bytes(const std::string& path);
bool is_gzip(const std::vector<uint8_t>& bytes);
// Byte size of a file on disk, or -1 when it cannot be stat'ed.
int64_t file_size_or_neg(const std::string& path);

// 64-bit FNV-1a, for cache file names.
uint64_t fnv1a64(const std::string& s, uint64_t h = 1469598103934665603ull);

}  // namespace dropnet::data
