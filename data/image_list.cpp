#include "data/image_list.h"

#include <sys/stat.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/fileio.h"
#include "data/file_io.h"

// The one translation unit with stb_image's implementation; JPEG and PNG only.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#endif
#include <stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace dropnet::data {

namespace fs = std::filesystem;

namespace {

bool has_image_extension(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return e == ".jpg" || e == ".jpeg" || e == ".png";
}

// Width and height from a PNG IHDR or a JPEG SOF header, without decoding (stb_image itself
// refuses very large headers with a generic message; this lets the cap name the size).
bool peek_dimensions(const std::vector<uint8_t>& b, int64_t* w, int64_t* h) {
  auto be16 = [&](size_t i) { return (static_cast<int64_t>(b[i]) << 8) | b[i + 1]; };
  auto be32 = [&](size_t i) { return (be16(i) << 16) | be16(i + 2); };
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  if (b.size() >= 24 && std::memcmp(b.data(), kPng, 8) == 0 && std::memcmp(b.data() + 12, "IHDR", 4) == 0) {
    *w = be32(16);
    *h = be32(20);
    return true;
  }
  if (b.size() < 4 || b[0] != 0xff || b[1] != 0xd8) return false;
  size_t i = 2;
  while (i + 3 < b.size()) {
    if (b[i] != 0xff) return false;
    uint8_t m = b[i + 1];
    if (m == 0xff) {  // fill byte
      ++i;
      continue;
    }
    if (m == 0x01 || (m >= 0xd0 && m <= 0xd8)) {
      i += 2;
      continue;
    }
    int64_t len = be16(i + 2);
    if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
      if (i + 9 > b.size()) return false;
      *h = be16(i + 5);
      *w = be16(i + 7);
      return true;
    }
    i += 2 + static_cast<size_t>(len);
  }
  return false;
}

// Debian's stb_image (2.27-era) writes past its Huffman tables when a JPEG DHT segment declares
// more than 256 codes (fixed upstream in nothings/stb#1297; found here by the libFuzzer harness).
// stb finds markers by skipping any run of 0xff fill bytes, so rather than re-implement its
// parser this checks every FF C4 (DHT) byte pair of a file that stb would take for a JPEG
// (0xff+ then 0xd8) the way stb would read it. FF C4 cannot occur in entropy-coded data (0xff is
// stuffed there); a false alarm needs FF C4 plus a bogus table inside an APPn payload.
// Returns "" when the tables are sane.
std::string jpeg_huffman_problem(const std::vector<uint8_t>& b) {
  size_t i = 0;
  while (i < b.size() && b[i] == 0xff) ++i;
  if (i == 0 || i >= b.size() || b[i] != 0xd8) return "";
  auto at = [&](size_t k) -> int { return k < b.size() ? b[k] : 0; };  // stb reads 0 past the end
  for (size_t m = i; m + 1 < b.size(); ++m) {
    if (b[m] != 0xff || b[m + 1] != 0xc4) continue;
    int64_t remaining = ((at(m + 2) << 8) | at(m + 3)) - 2;
    size_t k = m + 4;
    while (remaining > 0 && k < b.size()) {
      const int tc = at(k) >> 4, th = at(k) & 15;
      if (tc > 1 || th > 3) break;  // stb refuses the segment itself
      int n = 0;
      for (int j = 1; j <= 16; ++j) n += at(k + j);
      if (n > 256) return fmt::format("JPEG Huffman table declares {} codes (at most 256)", n);
      k += 17 + static_cast<size_t>(n);
      remaining -= 17 + n;
    }
  }
  // stb also decodes with a Huffman table that no DHT has defined (uninitialized memory; upstream
  // nothings/stb#1291): in stream order, every table a scan uses must have been defined before it.
  unsigned defined[2] = {0, 0};  // bit th set: DC (0) / AC (1) table th defined
  bool progressive = false;
  size_t k = i + 1;
  while (k + 3 < b.size()) {
    if (b[k] != 0xff) {
      ++k;
      continue;
    }
    const int mk = b[k + 1];
    if (mk == 0xff || mk == 0x00 || mk == 0x01 || (mk >= 0xd0 && mk <= 0xd8)) {
      k += (mk == 0xff) ? 1 : 2;
      continue;
    }
    if (mk == 0xd9) break;
    const size_t len = static_cast<size_t>((b[k + 2] << 8) | b[k + 3]);
    if (mk == 0xc2) progressive = true;
    if (mk == 0xc4) {
      size_t t = k + 4;
      while (t + 17 <= k + 2 + len && t < b.size()) {
        const int tc = at(t) >> 4, th = at(t) & 15;
        if (tc > 1 || th > 3) break;
        int n = 0;
        for (int j = 1; j <= 16; ++j) n += at(t + j);
        defined[tc] |= 1u << th;
        t += 17 + static_cast<size_t>(n);
      }
    }
    if (mk == 0xda) {
      const int ns = at(k + 4);
      const int ss = at(k + 5 + 2 * ns);
      for (int c = 0; c < ns; ++c) {
        const int sel = at(k + 6 + 2 * c);
        const bool uses_dc = !progressive || ss == 0, uses_ac = !progressive || ss != 0;
        if ((uses_dc && !(defined[0] & (1u << ((sel >> 4) & 3)))) || (uses_ac && !(defined[1] & (1u << (sel & 3)))))
          return "JPEG scan uses a Huffman table that was never defined";
      }
    }
    k += 2 + len;
  }
  return "";
}

// stb_image grows its IDAT buffer to the size a PNG chunk header claims before reading the chunk,
// so a 200-byte file can make it allocate gigabytes (found by the libFuzzer harness). Every
// chunk must fit in the file.
std::string png_chunk_problem(const std::vector<uint8_t>& b) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  if (b.size() < 8 || std::memcmp(b.data(), kPng, 8) != 0) return "";
  size_t i = 8;
  while (i + 8 <= b.size()) {
    const uint64_t len = (static_cast<uint64_t>(b[i]) << 24) | (static_cast<uint64_t>(b[i + 1]) << 16) |
                         (static_cast<uint64_t>(b[i + 2]) << 8) | b[i + 3];
    if (len > b.size() - i - 8) return fmt::format("PNG chunk at byte {} claims {} bytes, the file has {}", i, len,
                                                   b.size() - i - 8);
    if (std::memcmp(b.data() + i + 4, "IEND", 4) == 0) return "";
    i += 12 + static_cast<size_t>(len);  // length, type, data, crc
  }
  return "";
}

}  // namespace

void resize_bilinear_hwc(const uint8_t* in, int h, int w, int c, uint8_t* out, int oh, int ow) {
  const float sy = static_cast<float>(h) / oh, sx = static_cast<float>(w) / ow;
  std::vector<int> x0(ow), x1(ow);
  std::vector<float> fx(ow);
  for (int x = 0; x < ow; ++x) {
    float src = std::max(0.f, (x + 0.5f) * sx - 0.5f);
    int i0 = std::min(static_cast<int>(src), w - 1);
    x0[x] = i0;
    x1[x] = std::min(i0 + 1, w - 1);
    fx[x] = src - i0;
  }
  for (int y = 0; y < oh; ++y) {
    float src = std::max(0.f, (y + 0.5f) * sy - 0.5f);
    int y0 = std::min(static_cast<int>(src), h - 1);
    int y1 = std::min(y0 + 1, h - 1);
    float fy = src - y0;
    const uint8_t* r0 = in + static_cast<int64_t>(y0) * w * c;
    const uint8_t* r1 = in + static_cast<int64_t>(y1) * w * c;
    uint8_t* o = out + static_cast<int64_t>(y) * ow * c;
    for (int x = 0; x < ow; ++x) {
      const uint8_t* a = r0 + x0[x] * c;
      const uint8_t* b = r0 + x1[x] * c;
      const uint8_t* d = r1 + x0[x] * c;
      const uint8_t* e = r1 + x1[x] * c;
      float wx = fx[x];
      for (int ch = 0; ch < c; ++ch) {
        float top = a[ch] + (b[ch] - a[ch]) * wx;
        float bot = d[ch] + (e[ch] - d[ch]) * wx;
        float v = top + (bot - top) * fy;
        o[x * c + ch] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
      }
    }
  }
}

ImageListDataset::ImageListDataset(const ImageListOptions& opt) : opt_(opt) {
  DN_CHECK(opt_.channels == 1 || opt_.channels == 3, "channels {}", opt_.channels);
  if (!opt_.list.empty()) {
    read_list();
  } else {
    read_folders();
  }
  if (paths_.empty())
    input_error("image list {}: no images{}", opt_.list.empty() ? "'" + opt_.root + "'" : "'" + opt_.list + "'",
                skipped_lines_ ? fmt::format(" ({} bad entries skipped)", skipped_lines_) : std::string());
  if (skipped_lines_ > 0)
    spdlog::warn("image list {}: skipped {} bad entries (skip_bad: true)", opt_.list.empty() ? opt_.root : opt_.list,
                 skipped_lines_);
  bad_ = std::make_unique<std::atomic<uint8_t>[]>(paths_.size());
  for (size_t i = 0; i < paths_.size(); ++i) bad_[i].store(0);
}

void ImageListDataset::read_list() {
  // A regular file of at most 4 GiB (a FIFO or a device is refused before a byte is read).
  std::istringstream in(read_file(opt_.list, "image list", int64_t{4} << 30));
  fs::path base = opt_.root.empty() ? fs::path(opt_.list).parent_path() : fs::path(opt_.root);
  int max_label = -1;
  std::string line;
  int lineno = 0;
  auto bad = [&](const std::string& why) {
    if (!opt_.skip_bad) input_error("{}:{}: {}", opt_.list, lineno, why);
    if (skipped_lines_ < 5) spdlog::warn("{}:{}: {} (skipped)", opt_.list, lineno, why);
    ++skipped_lines_;
  };
  while (std::getline(in, line)) {
    ++lineno;
    std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    size_t sp = t.find_last_of(" \t");
    std::string rel = sp == std::string::npos ? t : trim(t.substr(0, sp));
    std::string lab = sp == std::string::npos ? std::string() : t.substr(sp + 1);
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(lab.c_str(), &end, 10);
    const bool is_label = !lab.empty() && end != lab.c_str() && *end == '\0' && errno == 0;
    if (opt_.labels_optional && !is_label) {
      rel = t;  // the whole line is the path
      v = 0;
      labeled_ = false;
    } else if (sp == std::string::npos) {
      bad(fmt::format("expected '<path> <label>', got '{}' (no label)", t));
      continue;
    } else if (!is_label || v < 0) {
      bad(fmt::format("bad label '{}' (expected a non-negative integer) in '{}'", clip_text(lab), clip_text(t)));
      continue;
    }
    // Labels travel as float32, exact below 2^24; 16,777,216 passed here and was refused by the
    // loss layer in training, without the file's name.
    if (v >= (1 << 24)) {
      bad(fmt::format("label {} is too large (labels are float32 values: at most {})", lab, (1 << 24) - 1));
      continue;
    }
    if (opt_.num_classes > 0 && v >= opt_.num_classes) {
      bad(fmt::format("label {} is out of range [0, {}) (num_classes)", v, opt_.num_classes));
      continue;
    }
    fs::path p = fs::path(rel).is_absolute() ? fs::path(rel) : base / rel;
    struct stat st;
    if (::stat(p.c_str(), &st) != 0) {
      // "cannot find" only when it is not there: an unreadable folder says so.
      const int err = errno;
      bad(err == ENOENT || err == ENOTDIR ? fmt::format("cannot find image '{}'", p.string())
                                          : fmt::format("cannot access image '{}': {}", p.string(), std::strerror(err)));
      continue;
    }
    if (!S_ISREG(st.st_mode)) {
      bad(fmt::format("image '{}' is not a regular file", p.string()));
      continue;
    }
    paths_.push_back(p.string());
    labels_.push_back(static_cast<int>(v));
    lines_.push_back(lineno);
    max_label = std::max(max_label, static_cast<int>(v));
  }
  if (in.bad()) input_error("error reading image list '{}'", opt_.list);
  num_classes_ = opt_.num_classes > 0 ? opt_.num_classes : max_label + 1;
}

void ImageListDataset::read_folders() {
  std::error_code ec;
  if (opt_.root.empty()) input_error("image list: give a list file or a root folder with one folder per class");
  if (!fs::is_directory(opt_.root, ec)) input_error("image folder '{}' is not a directory", opt_.root);
  for (const auto& e : fs::directory_iterator(opt_.root, ec))
    if (e.is_directory()) class_names_.push_back(e.path().filename().string());
  if (ec) input_error("cannot list image folder '{}': {}", opt_.root, ec.message());
  std::sort(class_names_.begin(), class_names_.end());
  if (class_names_.empty()) input_error("image folder '{}' has no class folders", opt_.root);
  if (opt_.num_classes > 0 && static_cast<int>(class_names_.size()) > opt_.num_classes)
    input_error("image folder '{}' has {} class folders but num_classes is {}", opt_.root, class_names_.size(),
                opt_.num_classes);
  int64_t ignored = 0;
  for (size_t k = 0; k < class_names_.size(); ++k) {
    std::vector<std::string> files;
    fs::path dir = fs::path(opt_.root) / class_names_[k];
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.is_regular_file() && has_image_extension(e.path())) {
        files.push_back(e.path().string());
      } else if (!e.is_directory()) {
        ++ignored;
      }
    }
    if (ec) input_error("cannot list image folder '{}': {}", dir.string(), ec.message());
    std::sort(files.begin(), files.end());
    for (auto& f : files) {
      paths_.push_back(std::move(f));
      labels_.push_back(static_cast<int>(k));
      lines_.push_back(0);
    }
  }
  if (ignored) spdlog::info("image folder '{}': ignored {} files without a .jpg/.jpeg/.png extension", opt_.root, ignored);
  num_classes_ = opt_.num_classes > 0 ? opt_.num_classes : static_cast<int>(class_names_.size());
}

std::pair<int, int> ImageListDataset::fixed_hw() const {
  if (opt_.resize_h > 0) return {opt_.resize_h, opt_.resize_w};
  return {0, 0};
}

namespace {

// Why stb_image refused `b`, in words that fit the file. stb_image reports the failure of the last
// format it tried, so a truncated JPEG said "Not a PNG": the signature decides what the file is.
std::string undecodable(const std::vector<uint8_t>& b) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  const bool jpeg = b.size() >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff;
  const bool png = b.size() >= 8 && std::memcmp(b.data(), kPng, 8) == 0;
  const char* r = stbi_failure_reason();
  const std::string reason = r ? r : "unknown error";
  if (jpeg) {
    size_t end = b.size();
    while (end > 2 && b[end - 1] == 0) --end;  // zero padding after the end-of-image marker
    if (b[end - 2] != 0xff || b[end - 1] != 0xd9)
      return fmt::format("truncated or corrupt JPEG ({} bytes): no end-of-image marker", b.size());
    return fmt::format("corrupt JPEG ({} bytes){}", b.size(), reason == "Not a PNG" ? "" : ": " + reason);
  }
  if (png) {
    static const char kIend[4] = {'I', 'E', 'N', 'D'};
    const bool has_end = b.size() >= 20 && std::search(b.end() - 20, b.end(), kIend, kIend + 4) != b.end();
    if (!has_end) return fmt::format("truncated or corrupt PNG ({} bytes): no IEND chunk", b.size());
    return fmt::format("corrupt PNG ({} bytes): {}", b.size(), reason);
  }
  return fmt::format("not a readable JPEG or PNG image ({} bytes): it starts with neither signature", b.size());
}

}  // namespace

std::string ImageListDataset::describe(int64_t i) const {
  if (lines_[i] > 0) return fmt::format("{}:{} ({})", opt_.list, lines_[i], paths_[i]);
  return paths_[i];
}

std::string ImageListDataset::decode(int64_t i, std::vector<uint8_t>& scratch, int* oh, int* ow) const {
  std::vector<uint8_t> bytes;
  try {
    bytes = read_file_bytes(paths_[i]);
  } catch (const Error& e) {
    return e.what();
  }
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) return fmt::format("file of {} bytes is too large", bytes.size());
  int64_t pw = 0, ph = 0;
  auto too_large = [&](int64_t ww, int64_t hh) {
    // Header fields reach 2^32 each: the product is formatted in double, never overflows.
    return fmt::format("image of {}x{} = {:.0f} pixels exceeds max_pixels {}", ww, hh,
                       static_cast<double>(ww) * static_cast<double>(hh), opt_.max_pixels);
  };
  if (peek_dimensions(bytes, &pw, &ph) &&
      static_cast<double>(pw) * static_cast<double>(ph) > static_cast<double>(opt_.max_pixels))
    return too_large(pw, ph);
  if (std::string why = jpeg_huffman_problem(bytes); !why.empty()) return "corrupt JPEG: " + why;
  if (std::string why = png_chunk_problem(bytes); !why.empty()) return "corrupt PNG: " + why;
  int w = 0, h = 0, comp = 0;
  const int len = static_cast<int>(bytes.size());
  if (!stbi_info_from_memory(bytes.data(), len, &w, &h, &comp)) return undecodable(bytes);
  if (static_cast<int64_t>(w) * h > opt_.max_pixels) return too_large(w, h);
  const int c = opt_.channels;
  int dw = 0, dh = 0, dc = 0;
  stbi_uc* px = stbi_load_from_memory(bytes.data(), len, &dw, &dh, &dc, c);
  if (!px) return undecodable(bytes);
  std::unique_ptr<stbi_uc, void (*)(void*)> owner(px, stbi_image_free);
  const uint8_t* hwc = px;
  int h2 = dh, w2 = dw;
  if (opt_.resize_h > 0) {
    h2 = opt_.resize_h;
    w2 = opt_.resize_w;
  } else if (opt_.resize_shorter > 0) {
    const int s = opt_.resize_shorter;
    if (dh <= dw) {
      h2 = s;
      w2 = std::max(1, static_cast<int>(std::lround(static_cast<double>(dw) * s / dh)));
    } else {
      w2 = s;
      h2 = std::max(1, static_cast<int>(std::lround(static_cast<double>(dh) * s / dw)));
    }
  }
  thread_local std::vector<uint8_t> resized;
  if (h2 != dh || w2 != dw) {
    resized.resize(static_cast<size_t>(h2) * w2 * c);
    resize_bilinear_hwc(px, dh, dw, c, resized.data(), h2, w2);
    hwc = resized.data();
  }
  // (H, W, C) RGB -> (C, H, W) in the configured order.
  scratch.resize(static_cast<size_t>(c) * h2 * w2);
  const int64_t plane = static_cast<int64_t>(h2) * w2;
  for (int ch = 0; ch < c; ++ch) {
    int src = (c == 3 && opt_.bgr) ? 2 - ch : ch;
    uint8_t* dst = scratch.data() + ch * plane;
    for (int64_t k = 0; k < plane; ++k) dst[k] = hwc[k * c + src];
  }
  *oh = h2;
  *ow = w2;
  return "";
}

Sample ImageListDataset::get(int64_t i, std::vector<uint8_t>& scratch) const {
  const int64_t n = size();
  DN_CHECK(i >= 0 && i < n, "image index {} of {}", i, n);
  for (int64_t k = 0; k < n; ++k) {
    // With skip_bad an undecodable image is replaced by the next decodable one in list order,
    // which keeps batches deterministic.
    int64_t j = (i + k) % n;
    if (bad_[j].load(std::memory_order_relaxed)) continue;
    int h = 0, w = 0;
    std::string why = decode(j, scratch, &h, &w);
    if (why.empty()) return Sample{ImageView{scratch.data(), opt_.channels, h, w}, labels_[j]};
    if (!opt_.skip_bad) input_error("{}: {}", describe(j), why);
    if (bad_[j].exchange(1) == 0) {
      int64_t count = ++skipped_decodes_;
      if (count <= 5) spdlog::warn("{}: {} (skipped)", describe(j), why);
      if (count == 5) spdlog::warn("image list: further bad images are skipped silently");
    }
  }
  input_error("image list '{}': none of the {} images can be decoded", opt_.list.empty() ? opt_.root : opt_.list, n);
}

}  // namespace dropnet::data
