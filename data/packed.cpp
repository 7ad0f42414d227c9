#include "data/packed.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace dropnet::data {

namespace {
constexpr char kMagic[8] = {'D', 'N', 'P', 'A', 'C', 'K', '1', '\0'};
constexpr size_t kHeader = 8 + 8 + 4 * 4;
}  // namespace

PackedDataset::PackedDataset(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) input_error("cannot open packed data '{}': {}", path, std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    input_error("cannot stat '{}': {}", path, std::strerror(errno));
  }
  const size_t bytes = static_cast<size_t>(st.st_size);
  if (bytes < kHeader) {
    ::close(fd);
    input_error("packed data '{}' is truncated: {} bytes, the header alone needs {}", path, bytes, kHeader);
  }
  void* m = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  int map_errno = errno;
  ::close(fd);
  if (m == MAP_FAILED) input_error("cannot map '{}': {}", path, std::strerror(map_errno));
  map_ = static_cast<const uint8_t*>(m);
  map_bytes_ = bytes;
  auto fail = [&](const std::string& msg) {
    ::munmap(const_cast<uint8_t*>(map_), map_bytes_);
    map_ = nullptr;
    input_error("packed data '{}': {}", path, msg);
  };
  if (std::memcmp(map_, kMagic, 8) != 0) fail("bad magic (expected \"DNPACK1\")");
  int32_t dims[4];
  std::memcpy(&n_, map_ + 8, 8);
  std::memcpy(dims, map_ + 16, 16);
  c_ = dims[0];
  h_ = dims[1];
  w_ = dims[2];
  num_classes_ = dims[3];
  if (n_ <= 0 || c_ <= 0 || h_ <= 0 || w_ <= 0 || num_classes_ <= 0 || c_ > 4 || h_ > 65536 || w_ > 65536)
    fail(fmt::format("bad header: n {} c {} h {} w {} num_classes {}", n_, c_, h_, w_, num_classes_));
  const size_t want = kHeader + static_cast<size_t>(n_) * 4 + static_cast<size_t>(n_) * c_ * h_ * w_;
  if (bytes != want)
    fail(fmt::format("{} samples of {}x{}x{} need {} bytes, the file has {}{}", n_, c_, h_, w_, want, bytes,
                     bytes < want ? " (truncated)" : ""));
  labels_ = reinterpret_cast<const int32_t*>(map_ + kHeader);
  pixels_ = map_ + kHeader + static_cast<size_t>(n_) * 4;
  for (int64_t i = 0; i < n_; ++i)
    if (labels_[i] < 0 || labels_[i] >= num_classes_)
      fail(fmt::format("label {} of sample {} is out of range [0, {})", labels_[i], i, num_classes_));
  ::madvise(const_cast<uint8_t*>(map_), map_bytes_, MADV_RANDOM);
}

PackedDataset::~PackedDataset() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_bytes_);
}

Sample PackedDataset::get(int64_t i, std::vector<uint8_t>&) const {
  DN_CHECK(i >= 0 && i < n_, "sample {} of {}", i, n_);
  return Sample{ImageView{pixels_ + static_cast<size_t>(i) * c_ * h_ * w_, c_, h_, w_}, labels_[i]};
}

std::string PackedDataset::describe(int64_t i) const { return fmt::format("{}[{}]", path_, i); }

void write_packed(const std::string& path, const Dataset& ds) {
  auto [h, w] = ds.fixed_hw();
  const int c = ds.channels();
  const int64_t n = ds.size();
  std::vector<uint8_t> scratch;
  if (h <= 0 && n > 0) {
    Sample s = ds.get(0, scratch);
    h = s.image.h;
    w = s.image.w;
  }
  std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) input_error("cannot write '{}': {}", tmp, std::strerror(errno));
  int32_t dims[4] = {c, h, w, ds.num_classes()};
  bool ok = std::fwrite(kMagic, 1, 8, f) == 8 && std::fwrite(&n, 8, 1, f) == 1 && std::fwrite(dims, 4, 4, f) == 4;
  for (int64_t i = 0; ok && i < n; ++i) {
    Sample s = ds.get(i, scratch);
    int32_t lab = s.label;
    ok = std::fwrite(&lab, 4, 1, f) == 1;
  }
  for (int64_t i = 0; ok && i < n; ++i) {
    Sample s = ds.get(i, scratch);
    if (s.image.c != c || s.image.h != h || s.image.w != w) {
      std::fclose(f);
      std::remove(tmp.c_str());
      input_error("{}: is {}x{}x{}, the packed file holds {}x{}x{} samples (resize first)", ds.describe(i), s.image.c,
                  s.image.h, s.image.w, c, h, w);
    }
    size_t sz = static_cast<size_t>(c) * h * w;
    ok = std::fwrite(s.image.px, 1, sz, f) == sz;
  }
  ok = std::fflush(f) == 0 && ok;
  if (ok) ::fsync(::fileno(f));
  std::fclose(f);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    input_error("cannot write '{}': {}", path, std::strerror(errno));
  }
}

}  // namespace dropnet::data
