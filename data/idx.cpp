#include "data/idx.h"

#include <fmt/format.h>
#include <unistd.h>
#include <zlib.h>

#include "core/error.h"
#include "core/fileio.h"
#include "data/file_io.h"

namespace dropnet::data {

namespace {

constexpr uint32_t kImagesMagic = 2051, kLabelsMagic = 2049;

uint32_t be32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}

// The total size an IDX header promises: 16 + n * rows * cols for images, 8 + n for labels; the
// header alone when its fields are out of range (the caller then names the bad field).
int64_t idx_promise(const uint8_t* h, uint32_t magic, size_t header) {
  if (be32(h) != magic) return static_cast<int64_t>(header);
  const int64_t n = be32(h + 4);
  if (n <= 0 || n > (int64_t{1} << 31)) return static_cast<int64_t>(header);
  if (magic == kLabelsMagic) return 8 + n;
  const int64_t rows = be32(h + 8), cols = be32(h + 12);
  if (rows <= 0 || cols <= 0 || rows > 65536 || cols > 65536) return static_cast<int64_t>(header);
  const double total = 16.0 + static_cast<double>(n) * static_cast<double>(rows) * static_cast<double>(cols);
  return total > static_cast<double>(kMaxDataFileBytes) ? kMaxDataFileBytes : static_cast<int64_t>(total);
}

std::vector<uint8_t> read_idx(const std::string& path, uint32_t magic, size_t header, const char* what,
                              std::string* kind, ReadInfo* info) {
  ReadLimit limit;
  limit.header_bytes = header;
  limit.promised = [magic, header](const uint8_t* h) { return idx_promise(h, magic, header); };
  std::vector<uint8_t> b = read_file_bytes(path, limit, info);
  *kind = info->gzip ? " (after gunzip)" : "";
  if (b.empty()) input_error("IDX {} file '{}' is empty (0 bytes)", what, path);
  if (b.size() < 4)
    input_error("IDX {} file '{}' is truncated: {} bytes{}, too short for the 4-byte magic", what, path, b.size(), *kind);
  uint32_t m = be32(b.data());
  if (m != magic) {
    std::string hint;
    if (m == kImagesMagic) hint = " (that is an IDX image file)";
    if (m == kLabelsMagic) hint = " (that is an IDX label file)";
    input_error("IDX {} file '{}': wrong magic number {} (0x{:08x}){}; expected {} (0x{:08x})", what, path, m, m,
                hint, magic, magic);
  }
  if (b.size() < header)
    input_error("IDX {} file '{}' is truncated: header needs {} bytes, got {}{}", what, path, header, b.size(), *kind);
  return b;
}

}  // namespace

IdxImages read_idx_images(const std::string& path) {
  std::string kind;
  ReadInfo info;
  std::vector<uint8_t> b = read_idx(path, kImagesMagic, 16, "image", &kind, &info);
  IdxImages im;
  im.n = be32(b.data() + 4);
  im.rows = be32(b.data() + 8);
  im.cols = be32(b.data() + 12);
  if (im.n <= 0 || im.n > (int64_t{1} << 31)) input_error("IDX image file '{}': bad image count {}", path, im.n);
  if (im.rows <= 0 || im.cols <= 0 || im.rows > 65536 || im.cols > 65536)
    input_error("IDX image file '{}': bad image size {}x{}", path, im.rows, im.cols);
  int64_t want = 0;
  if (__builtin_mul_overflow(im.n, im.rows * im.cols, &want) || want > kMaxDataFileBytes - 16)
    input_error("IDX image file '{}': {} images of {}x{} would be more than {} bytes", path, im.n, im.rows, im.cols,
                kMaxDataFileBytes);
  want += 16;
  int64_t got = static_cast<int64_t>(b.size());
  if (info.stopped)
    input_error("IDX image file '{}': its gzip data inflates to more than the {} bytes its header promises ({} images "
                "of {}x{}); stopped after {} bytes of output", path, want, im.n, im.rows, im.cols, got);
  if (got < want)
    input_error("IDX image file '{}' is truncated: {} images of {}x{} need 16 + {} = {} bytes, got {}{}", path, im.n,
                im.rows, im.cols, want - 16, want, got, kind);
  if (got > want)
    input_error("IDX image file '{}' has the wrong size: {} images of {}x{} need {} bytes, got {}{} ({} extra)", path,
                im.n, im.rows, im.cols, want, got, kind, got - want);
  im.pixels.assign(b.begin() + 16, b.end());
  return im;
}

IdxImages read_idx_image_header(const std::string& path) {
  int64_t size = 0;
  const int fd = open_regular_file(path, "IDX image file", kMaxDataFileBytes, &size);
  gzFile f = gzdopen(fd, "rb");  // plain files are read as they are
  if (f == nullptr) {
    ::close(fd);
    input_error("IDX image file '{}': cannot read it", path);
  }
  uint8_t h[16];
  const int got = gzread(f, h, sizeof h);
  gzclose(f);
  if (got < static_cast<int>(sizeof h))
    input_error("IDX image file '{}' is truncated: header needs 16 bytes, got {}", path, got < 0 ? 0 : got);
  if (be32(h) != kImagesMagic)
    input_error("IDX image file '{}': wrong magic number {} (0x{:08x}); expected {} (0x{:08x})", path, be32(h), be32(h),
                kImagesMagic, kImagesMagic);
  IdxImages im;
  im.n = be32(h + 4);
  im.rows = be32(h + 8);
  im.cols = be32(h + 12);
  if (im.n <= 0 || im.n > (int64_t{1} << 31)) input_error("IDX image file '{}': bad image count {}", path, im.n);
  if (im.rows <= 0 || im.cols <= 0 || im.rows > 65536 || im.cols > 65536)
    input_error("IDX image file '{}': bad image size {}x{}", path, im.rows, im.cols);
  return im;
}

std::vector<uint8_t> read_idx_labels(const std::string& path) {
  std::string kind;
  ReadInfo info;
  std::vector<uint8_t> b = read_idx(path, kLabelsMagic, 8, "label", &kind, &info);
  int64_t n = be32(b.data() + 4);
  if (n <= 0 || n > (int64_t{1} << 31)) input_error("IDX label file '{}': bad label count {}", path, n);
  int64_t want = 8 + n, got = static_cast<int64_t>(b.size());
  if (info.stopped)
    input_error("IDX label file '{}': its gzip data inflates to more than the {} bytes its header promises ({} "
                "labels); stopped after {} bytes of output", path, want, n, got);
  if (got < want)
    input_error("IDX label file '{}' is truncated: {} labels need 8 + {} = {} bytes, got {}{}", path, n, n, want, got,
                kind);
  if (got > want)
    input_error("IDX label file '{}' has the wrong size: {} labels need {} bytes, got {}{} ({} extra)", path, n, want,
                got, kind, got - want);
  return std::vector<uint8_t>(b.begin() + 8, b.end());
}

std::shared_ptr<InMemoryDataset> load_mnist(const std::string& images_path, const std::string& labels_path,
                                            int num_classes) {
  IdxImages im = read_idx_images(images_path);
  std::vector<uint8_t> labels = read_idx_labels(labels_path);
  if (static_cast<int64_t>(labels.size()) != im.n)
    input_error("MNIST count mismatch: image file '{}' has {} images but label file '{}' has {} labels", images_path,
                im.n, labels_path, labels.size());
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] >= num_classes)
      input_error("IDX label file '{}': label {} of sample {} is out of range [0, {})", labels_path, labels[i], i,
                  num_classes);
  auto ds = std::make_shared<InMemoryDataset>(images_path, 1, static_cast<int>(im.rows), static_cast<int>(im.cols),
                                              num_classes);
  ds->pixels() = std::move(im.pixels);
  ds->labels().assign(labels.begin(), labels.end());
  return ds;
}

}  // namespace dropnet::data
