#include "core/safetensors.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>
#include <set>

#include "core/error.h"
#include "core/fileio.h"

namespace dropnet {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

const char* st_dtype_name(StDtype t) { return t == StDtype::F32 ? "F32" : "I64"; }
size_t st_dtype_size(StDtype t) { return t == StDtype::F32 ? 4 : 8; }

int64_t StTensorInfo::count() const {
  int64_t c = 1;
  for (int64_t d : shape) c *= d;
  return c;
}

std::string StTensorInfo::shape_str() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

namespace {

constexpr const char* kFileCrcKey = "file_crc32";
constexpr const char* kDataCrcKey = "crc32";
constexpr std::string_view kFileCrcPattern = "\"file_crc32\":\"";

// ---- a small strict JSON reader (RFC 8259), enough for safetensors headers ------------------
struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool b = false;
  std::string text;  // String: decoded value; Number: the literal
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;  // in file order
};

class JsonReader {
 public:
  JsonReader(std::string_view s, const std::string& origin) : s_(s), origin_(origin) {}

  Json parse_document() {
    Json v = value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected data after the JSON object");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    input_error("safetensors file '{}': header is not valid JSON: {} at header byte {}", origin_, what, pos_);
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  char peek() {
    skip_ws();
    if (pos_ >= s_.size()) fail("unexpected end");
    return s_[pos_];
  }
  void expect(char c) {
    if (peek() != c) fail(fmt::format("expected '{}'", c));
    ++pos_;
  }
  bool literal(std::string_view w) {
    if (s_.substr(pos_, w.size()) != w) return false;
    pos_ += w.size();
    return true;
  }
  Json value(int depth) {
    if (depth > 32) fail("nesting too deep");
    Json v;
    const char c = peek();
    if (c == '{') {
      v.kind = Json::Object;
      ++pos_;
      if (peek() == '}') {
        ++pos_;
        return v;
      }
      for (;;) {
        if (peek() != '"') fail("expected a string key");
        std::string key = string();
        for (const auto& m : v.members)
          if (m.first == key) fail(fmt::format("duplicate key \"{}\"", key));
        expect(':');
        v.members.emplace_back(std::move(key), value(depth + 1));
        const char d = peek();
        ++pos_;
        if (d == '}') break;
        if (d != ',') fail("expected ',' or '}'");
      }
    } else if (c == '[') {
      v.kind = Json::Array;
      ++pos_;
      if (peek() == ']') {
        ++pos_;
        return v;
      }
      for (;;) {
        v.items.push_back(value(depth + 1));
        const char d = peek();
        ++pos_;
        if (d == ']') break;
        if (d != ',') fail("expected ',' or ']'");
      }
    } else if (c == '"') {
      v.kind = Json::String;
      v.text = string();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Json::Number;
      v.text = number();
    } else if (literal("true")) {
      v.kind = Json::Bool;
      v.b = true;
    } else if (literal("false")) {
      v.kind = Json::Bool;
    } else if (literal("null")) {
      v.kind = Json::Null;
    } else {
      fail(fmt::format("unexpected character 0x{:02x}", static_cast<unsigned char>(c)));
    }
    return v;
  }
  std::string number() {
    const size_t start = pos_;
    if (s_[pos_] == '-') ++pos_;
    auto digits = [&] {
      const size_t d0 = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      if (pos_ == d0) fail("malformed number");
      return pos_ - d0;
    };
    const size_t int_start = pos_;
    const size_t nd = digits();
    if (nd > 1 && s_[int_start] == '0') fail("number with a leading zero");
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      digits();
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      digits();
    }
    return std::string(s_.substr(start, pos_ - start));
  }
  unsigned hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f') v |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= static_cast<unsigned>(h - 'A' + 10);
      else fail("bad \\u escape");
    }
    return v;
  }
  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated string");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (!literal("\\u")) fail("unpaired surrogate");
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("unpaired surrogate");
          }
          utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
    return out;
  }

  std::string_view s_;
  const std::string& origin_;
  size_t pos_ = 0;
};

void json_escape(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (u < 0x20) out += fmt::format("\\u{:04x}", u);
    else out += c;
  }
  out += '"';
}

uint64_t read_u64_le(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// The position of the file_crc32 value (8 hex digits) inside the file, or npos.
size_t file_crc_value_pos(const std::string& bytes, size_t header_end, const std::string& origin) {
  std::string_view header(bytes.data() + 8, header_end - 8);
  const size_t first = header.find(kFileCrcPattern);
  if (first == std::string_view::npos) return std::string::npos;
  if (header.find(kFileCrcPattern, first + 1) != std::string_view::npos)
    input_error("safetensors file '{}': the header has more than one \"file_crc32\" entry", origin);
  const size_t pos = 8 + first + kFileCrcPattern.size();
  if (pos + 9 > header_end || bytes[pos + 8] != '"')
    input_error("safetensors file '{}': \"file_crc32\" is not 8 hex digits", origin);
  return pos;
}

uint32_t whole_file_crc(const std::string& bytes, size_t value_pos) {
  uint32_t c = crc32_bytes(bytes.data(), value_pos);
  c = crc32_bytes("00000000", 8, c);
  return crc32_bytes(bytes.data() + value_pos + 8, bytes.size() - value_pos - 8, c);
}

int64_t parse_int(const Json& v, const std::string& origin, const std::string& what) {
  if (v.kind != Json::Number || v.text.find_first_of(".eE") != std::string::npos || v.text[0] == '-' ||
      v.text.size() > 18)
    input_error("safetensors file '{}': {} must be a non-negative integer", origin, what);
  return std::stoll(v.text);
}

}  // namespace

std::string encode_safetensors(const std::vector<StTensorOut>& tensors, std::map<std::string, std::string> metadata) {
  if (metadata.count(kDataCrcKey) || metadata.count(kFileCrcKey))
    input_error("safetensors metadata keys '{}' and '{}' are reserved", kDataCrcKey, kFileCrcKey);
  std::set<std::string> names;
  uint64_t data_bytes = 0;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__" || !names.insert(t.name).second)
      input_error("safetensors: tensor name '{}' is reserved or repeated", t.name);
    int64_t c = 1;
    for (int64_t d : t.shape) {
      DN_CHECK(d >= 0, "negative dimension in tensor '{}'", t.name);
      c *= d;
    }
    DN_CHECK(c == 0 || t.data != nullptr, "tensor '{}' has no data", t.name);
    data_bytes += static_cast<uint64_t>(c) * st_dtype_size(t.dtype);
  }
  std::string data;
  data.reserve(data_bytes);
  std::string header = "{\"__metadata__\":{";
  metadata[kDataCrcKey] = "";  // filled below
  metadata[kFileCrcKey] = "00000000";
  std::string tensor_json;
  for (const auto& t : tensors) {
    int64_t c = 1;
    for (int64_t d : t.shape) c *= d;
    const size_t n = static_cast<size_t>(c) * st_dtype_size(t.dtype);
    const uint64_t b = data.size();
    if (n > 0) data.append(static_cast<const char*>(t.data), n);
    tensor_json += ',';
    json_escape(tensor_json, t.name);
    tensor_json += fmt::format(":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}", st_dtype_name(t.dtype),
                               fmt::join(t.shape, ","), b, data.size());
  }
  metadata[kDataCrcKey] = crc32_hex(crc32_bytes(data));
  bool first = true;
  for (const auto& [k, v] : metadata) {
    if (!first) header += ',';
    first = false;
    json_escape(header, k);
    header += ':';
    json_escape(header, v);
  }
  header += '}';
  header += tensor_json;
  header += '}';
  while (header.size() % 8 != 0) header += ' ';
  std::string out(8, '\0');
  const uint64_t hlen = header.size();
  std::memcpy(out.data(), &hlen, 8);
  out += header;
  out += data;
  const size_t pos = file_crc_value_pos(out, 8 + header.size(), "<encoding>");
  DN_CHECK(pos != std::string::npos, "file_crc32 placeholder missing");
  const std::string hex = crc32_hex(whole_file_crc(out, pos));
  std::memcpy(out.data() + pos, hex.data(), 8);
  return out;
}

std::string write_safetensors(const std::string& path, const std::vector<StTensorOut>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::string bytes = encode_safetensors(tensors, metadata);
  write_file_atomic(path, bytes);
  return bytes;
}

SafeTensors SafeTensors::read(const std::string& path) { return parse(read_file(path, "safetensors file"), path); }

SafeTensors SafeTensors::parse(std::string bytes, const std::string& origin) {
  SafeTensors st;
  st.origin_ = origin;
  st.bytes_ = std::move(bytes);
  const std::string& b = st.bytes_;
  if (b.size() < 8)
    input_error("safetensors file '{}': {} bytes, shorter than the 8-byte header length (truncated?)", origin,
                b.size());
  const uint64_t hlen = read_u64_le(b.data());
  if (hlen < 2 || hlen > kMaxSafetensorsHeader)
    input_error("safetensors file '{}': bad header length {} (not a safetensors file, or corrupt)", origin, hlen);
  if (hlen > b.size() - 8)
    input_error("safetensors file '{}': header length {} runs past the end of the {}-byte file (truncated?)", origin,
                hlen, b.size());
  st.data_start_ = 8 + hlen;
  if (b[8] != '{') input_error("safetensors file '{}': the header does not start with '{{'", origin);
  Json root = JsonReader(std::string_view(b.data() + 8, hlen), origin).parse_document();
  if (root.kind != Json::Object) input_error("safetensors file '{}': the header is not a JSON object", origin);
  const uint64_t data_size = b.size() - st.data_start_;
  for (const auto& [name, v] : root.members) {
    if (name == "__metadata__") {
      if (v.kind != Json::Object) input_error("safetensors file '{}': __metadata__ is not an object", origin);
      for (const auto& [k, mv] : v.members) {
        if (mv.kind != Json::String)
          input_error("safetensors file '{}': __metadata__ value of '{}' is not a string", origin, k);
        st.metadata_[k] = mv.text;
      }
      continue;
    }
    if (v.kind != Json::Object) input_error("safetensors file '{}': entry '{}' is not an object", origin, name);
    const Json *dtype = nullptr, *shape = nullptr, *offsets = nullptr;
    for (const auto& [k, f] : v.members) {
      if (k == "dtype") dtype = &f;
      else if (k == "shape") shape = &f;
      else if (k == "data_offsets") offsets = &f;
      else input_error("safetensors file '{}': tensor '{}' has an unknown field '{}'", origin, name, k);
    }
    if (!dtype || !shape || !offsets)
      input_error("safetensors file '{}': tensor '{}' lacks dtype, shape or data_offsets", origin, name);
    StTensorInfo t;
    t.name = name;
    if (dtype->kind != Json::String) input_error("safetensors file '{}': tensor '{}': dtype is not a string", origin, name);
    if (dtype->text == "F32") t.dtype = StDtype::F32;
    else if (dtype->text == "I64") t.dtype = StDtype::I64;
    else
      input_error("safetensors file '{}': tensor '{}' has dtype {}; dropnet reads F32 (and I64) only", origin, name,
                  dtype->text);
    if (shape->kind != Json::Array) input_error("safetensors file '{}': tensor '{}': shape is not a list", origin, name);
    uint64_t count = 1;
    for (const Json& d : shape->items) {
      const int64_t dim = parse_int(d, origin, fmt::format("a dimension of tensor '{}'", name));
      t.shape.push_back(dim);
      if (dim != 0 && count > (uint64_t{1} << 62) / static_cast<uint64_t>(dim))
        input_error("safetensors file '{}': tensor '{}' is impossibly large", origin, name);
      count *= static_cast<uint64_t>(dim);
    }
    if (offsets->kind != Json::Array || offsets->items.size() != 2)
      input_error("safetensors file '{}': tensor '{}': data_offsets is not a [begin, end] pair", origin, name);
    t.begin = static_cast<uint64_t>(parse_int(offsets->items[0], origin, fmt::format("data_offsets of '{}'", name)));
    t.end = static_cast<uint64_t>(parse_int(offsets->items[1], origin, fmt::format("data_offsets of '{}'", name)));
    if (t.begin > t.end || t.end > data_size)
      input_error("safetensors file '{}': tensor '{}' has data_offsets [{}, {}] outside the {}-byte data section "
                  "(truncated?)",
                  origin, name, t.begin, t.end, data_size);
    if (t.end - t.begin != count * st_dtype_size(t.dtype))
      input_error("safetensors file '{}': tensor '{}' of shape {} ({}) needs {} bytes but data_offsets span {}", origin,
                  name, t.shape_str(), dtype->text, count * st_dtype_size(t.dtype), t.end - t.begin);
    st.tensors_.push_back(std::move(t));
  }
  // The data section must be covered exactly, without gaps or overlaps (as the reference reader
  // requires): trailing or missing bytes mean a damaged file.
  std::vector<const StTensorInfo*> order;
  for (const auto& t : st.tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const StTensorInfo* a, const StTensorInfo* c) {
    return a->begin != c->begin ? a->begin < c->begin : a->end < c->end;
  });
  uint64_t at = 0;
  for (const StTensorInfo* t : order) {
    if (t->begin != at)
      input_error("safetensors file '{}': tensor '{}' starts at data byte {} but the previous data ends at {} "
                  "(overlap or gap)",
                  origin, t->name, t->begin, at);
    at = t->end;
  }
  if (at != data_size)
    input_error("safetensors file '{}': the tensors cover {} bytes but the data section has {} (truncated or extra "
                "bytes)",
                origin, at, data_size);
  return st;
}

void SafeTensors::verify_checksums(bool required) const {
  auto it = metadata_.find(kDataCrcKey);
  if (it == metadata_.end()) {
    if (required) input_error("'{}' has no \"crc32\" in its metadata (not written by dropnet?)", origin_);
  } else {
    const std::string got = crc32_hex(crc32_bytes(bytes_.data() + data_start_, bytes_.size() - data_start_));
    if (it->second != got)
      input_error("'{}' is corrupt: crc32 of the data section is {} but the header says {}", origin_, got, it->second);
  }
  auto ft = metadata_.find(kFileCrcKey);
  if (ft == metadata_.end()) {
    if (required) input_error("'{}' has no \"file_crc32\" in its metadata (not written by dropnet?)", origin_);
    return;
  }
  const size_t pos = file_crc_value_pos(bytes_, data_start_, origin_);
  if (pos == std::string::npos)
    input_error("'{}': cannot locate the \"file_crc32\" entry in the header (not written by dropnet?)", origin_);
  const std::string got = crc32_hex(whole_file_crc(bytes_, pos));
  if (ft->second != got || std::string_view(bytes_.data() + pos, 8) != got)
    input_error("'{}' is corrupt: crc32 of the file is {} but the header says {}", origin_, got, ft->second);
}

const StTensorInfo* SafeTensors::find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const std::string& SafeTensors::meta(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) input_error("'{}': metadata entry \"{}\" is missing", origin_, key);
  return it->second;
}

int64_t SafeTensors::meta_int(const std::string& key) const {
  const std::string& v = meta(key);
  size_t i = (!v.empty() && v[0] == '-') ? 1 : 0;
  if (v.size() <= i || v.size() > 19) input_error("'{}': metadata \"{}\" = \"{}\" is not an integer", origin_, key, v);
  for (size_t k = i; k < v.size(); ++k)
    if (v[k] < '0' || v[k] > '9') input_error("'{}': metadata \"{}\" = \"{}\" is not an integer", origin_, key, v);
  return std::stoll(v);
}

void SafeTensors::copy_floats(const StTensorInfo& t, float* dst) const {
  if (t.dtype != StDtype::F32)
    input_error("'{}': tensor '{}' has dtype {}, expected F32", origin_, t.name, st_dtype_name(t.dtype));
  if (t.end > t.begin) std::memcpy(dst, bytes_.data() + data_start_ + t.begin, t.end - t.begin);
}

std::vector<float> SafeTensors::floats(const StTensorInfo& t) const {
  std::vector<float> v(static_cast<size_t>(t.count()));
  copy_floats(t, v.data());
  return v;
}

std::vector<int64_t> SafeTensors::int64s(const StTensorInfo& t) const {
  if (t.dtype != StDtype::I64)
    input_error("'{}': tensor '{}' has dtype {}, expected I64", origin_, t.name, st_dtype_name(t.dtype));
  std::vector<int64_t> v(static_cast<size_t>(t.count()));
  if (t.end > t.begin) std::memcpy(v.data(), bytes_.data() + data_start_ + t.begin, t.end - t.begin);
  return v;
}

}  // namespace dropnet
