// The safetensors format (https://github.com/huggingface/safetensors), read and written without
// dependencies: an 8-byte little-endian header length, a JSON header
//   {"__metadata__": {"k": "v", ...}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
// (padded with spaces to a multiple of 8 bytes), then the raw little-endian tensor data, offsets
// relative to the start of the data section. dropnet reads and writes F32 and I64 tensors.
//
// Files dropnet writes carry two checksums in __metadata__: "crc32" of the data section and
// "file_crc32" of the whole file computed with that value written as "00000000" (so a flipped byte
// anywhere, header included, is detected). Other tools ignore both.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace dropnet {

enum class StDtype { F32, I64 };
const char* st_dtype_name(StDtype t);
size_t st_dtype_size(StDtype t);

// A tensor to write; `data` points at count(shape) elements of `dtype` (host, little-endian).
struct StTensorOut {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// Serializes tensors (in the given order) and metadata, adding "crc32" and "file_crc32".
// Names must be unique and must not be "__metadata__"; the metadata keys "crc32"/"file_crc32"
// are reserved.
std::string encode_safetensors(const std::vector<StTensorOut>& tensors, std::map<std::string, std::string> metadata);
// encode + write_file_atomic; returns the bytes written (for their checksum).
std::string write_safetensors(const std::string& path, const std::vector<StTensorOut>& tensors,
                              const std::map<std::string, std::string>& metadata);

struct StTensorInfo {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data section
  int64_t count() const;
  std::string shape_str() const;  // "[20, 1, 5, 5]"
};

// A parsed file. The structure is fully validated on parse (header length, JSON, dtypes, shapes,
// offsets inside the file, sizes matching shapes, the data section exactly covered without
// overlap); errors are input errors naming `origin` (the file path) and the problem.
class SafeTensors {
 public:
  static SafeTensors parse(std::string bytes, const std::string& origin);
  static SafeTensors read(const std::string& path);

  // Verifies "crc32" and "file_crc32" when present; with `required`, their absence is an error.
  void verify_checksums(bool required) const;

  const std::string& origin() const { return origin_; }
  const std::string& bytes() const { return bytes_; }
  const std::vector<StTensorInfo>& tensors() const { return tensors_; }
  const StTensorInfo* find(const std::string& name) const;  // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // A metadata value; absent is an input error naming the key.
  const std::string& meta(const std::string& key) const;
  int64_t meta_int(const std::string& key) const;

  // Copies of a tensor's elements; a dtype other than the one asked for is an input error.
  std::vector<float> floats(const StTensorInfo& t) const;
  std::vector<int64_t> int64s(const StTensorInfo& t) const;
  void copy_floats(const StTensorInfo& t, float* dst) const;

 private:
  std::string origin_;
  std::string bytes_;
  size_t data_start_ = 0;
  std::vector<StTensorInfo> tensors_;  // in header order
  std::map<std::string, std::string> metadata_;
};

// Longest header accepted (the reference implementation's limit).
inline constexpr uint64_t kMaxSafetensorsHeader = 100u << 20;

}  // namespace dropnet
