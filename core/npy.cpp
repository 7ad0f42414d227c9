#include "core/npy.h"

#include <fmt/format.h>

#include <bit>
#include <cstring>

#include "core/error.h"
#include "core/fileio.h"

namespace dropnet {

static_assert(std::endian::native == std::endian::little, ".npy I/O assumes a little-endian host");

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

// The value text of `'key':` in a header dict (up to the next top-level ',' or '}').
std::string dict_value(const std::string& header, const std::string& key, const std::string& origin) {
  size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) k = header.find("\"" + key + "\"");
  if (k == std::string::npos) input_error(".npy file '{}': the header has no '{}' entry", origin, key);
  size_t p = header.find(':', k + key.size() + 2);
  if (p == std::string::npos) input_error(".npy file '{}': malformed header near '{}'", origin, key);
  ++p;
  int depth = 0;
  size_t e = p;
  for (; e < header.size(); ++e) {
    const char c = header[e];
    if (c == '(' || c == '[') ++depth;
    else if (c == ')' || c == ']') --depth;
    else if ((c == ',' || c == '}') && depth == 0) break;
  }
  if (depth != 0 || e >= header.size()) input_error(".npy file '{}': malformed header near '{}'", origin, key);
  std::string v = header.substr(p, e - p);
  const size_t a = v.find_first_not_of(" \t");
  const size_t b = v.find_last_not_of(" \t");
  return a == std::string::npos ? std::string() : v.substr(a, b - a + 1);
}

}  // namespace

void write_npy(const std::string& path, const Tensor& t) {
  std::vector<float> host = t.to_host();
  write_npy(path, t.shape(), host.data());
}

void write_npy(const std::string& path, const Shape& shape, const float* data) {
  std::string dims;
  for (int i = 0; i < shape.ndim(); ++i) dims += fmt::format("{}, ", shape[i]);
  if (shape.ndim() > 1) dims.resize(dims.size() - 2);  // (3,) keeps its comma
  std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims);
  // Pad so magic + version + length + header is a multiple of 64 and ends with '\n'.
  const size_t pre = kMagicLen + 2 + 2;
  while ((pre + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out(kMagic, kMagicLen);
  out += '\x01';
  out += '\x00';
  const uint16_t hl = static_cast<uint16_t>(header.size());
  out.append(reinterpret_cast<const char*>(&hl), 2);
  out += header;
  const size_t n = static_cast<size_t>(shape.count());
  if (n > 0) out.append(reinterpret_cast<const char*>(data), n * sizeof(float));
  write_file_atomic(path, out);
}

Tensor read_npy(const std::string& path) { return parse_npy(read_file(path, ".npy file"), path); }

Tensor parse_npy(const std::string& b, const std::string& origin) {
  if (b.size() < 10 || std::memcmp(b.data(), kMagic, kMagicLen) != 0)
    input_error(".npy file '{}': not a .npy file (bad magic or shorter than 10 bytes)", origin);
  const int major = static_cast<unsigned char>(b[6]);
  size_t hlen = 0, pre = 0;
  if (major == 1) {
    uint16_t v;
    std::memcpy(&v, b.data() + 8, 2);
    hlen = v;
    pre = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) input_error(".npy file '{}': truncated header", origin);
    uint32_t v;
    std::memcpy(&v, b.data() + 8, 4);
    hlen = v;
    pre = 12;
  } else {
    input_error(".npy file '{}': unsupported format version {}.{}", origin, major, static_cast<unsigned char>(b[7]));
  }
  if (hlen > b.size() - pre) input_error(".npy file '{}': header length {} runs past the end of the file", origin, hlen);
  const std::string header = b.substr(pre, hlen);
  if (header.find('{') == std::string::npos || header.find('}') == std::string::npos)
    input_error(".npy file '{}': the header is not a dict", origin);
  std::string descr = dict_value(header, "descr", origin);
  if (descr.size() >= 2 && (descr.front() == '\'' || descr.front() == '"')) descr = descr.substr(1, descr.size() - 2);
  if (descr != "<f4" && descr != "=f4")
    input_error(".npy file '{}': dtype '{}' is not supported (only float32 '<f4'; convert with a.astype(np.float32))",
                origin, descr);
  const std::string fortran = dict_value(header, "fortran_order", origin);
  if (fortran == "True")
    input_error(".npy file '{}': Fortran-order arrays are not supported (save np.ascontiguousarray(a))", origin);
  if (fortran != "False") input_error(".npy file '{}': malformed fortran_order '{}'", origin, fortran);
  const std::string shape_text = dict_value(header, "shape", origin);
  if (shape_text.size() < 2 || shape_text.front() != '(' || shape_text.back() != ')')
    input_error(".npy file '{}': malformed shape '{}'", origin, shape_text);
  std::vector<int64_t> dims;
  std::string inner = shape_text.substr(1, shape_text.size() - 2);
  size_t p = 0;
  while (p < inner.size()) {
    while (p < inner.size() && (inner[p] == ' ' || inner[p] == ',')) ++p;
    if (p >= inner.size()) break;
    size_t e = p;
    int64_t d = 0;
    while (e < inner.size() && inner[e] >= '0' && inner[e] <= '9') {
      if (d > (int64_t{1} << 40)) input_error(".npy file '{}': dimension too large in '{}'", origin, shape_text);
      d = d * 10 + (inner[e] - '0');
      ++e;
    }
    if (e == p) input_error(".npy file '{}': malformed shape '{}'", origin, shape_text);
    dims.push_back(d);
    p = e;
  }
  if (dims.size() > static_cast<size_t>(Shape::kMaxDims))
    input_error(".npy file '{}': {} dimensions, at most {} are supported", origin, dims.size(), Shape::kMaxDims);
  Shape shape(dims);
  const uint64_t expect = static_cast<uint64_t>(shape.count()) * sizeof(float);
  const uint64_t have = b.size() - pre - hlen;
  if (have != expect)
    input_error(".npy file '{}': shape {} needs {} data bytes but the file has {} (truncated or corrupt)", origin,
                shape_text, expect, have);
  Tensor t(shape);
  if (shape.count() > 0) std::memcpy(t.data(), b.data() + pre + hlen, expect);
  return t;
}

}  // namespace dropnet
