#include "data/file_io.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/fileio.h"

namespace dropnet::data {

int64_t file_size_or_neg(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_size);
}

bool is_gzip(const std::vector<uint8_t>& b) { return b.size() >= 2 && b[0] == 0x1f && b[1] == 0x8b; }

namespace {

std::vector<uint8_t> read_raw(const std::string& path, int64_t max_bytes) {
  int64_t size = 0;
  const int fd = open_regular_file(path, "data file", max_bytes, &size);
  std::vector<uint8_t> out(static_cast<size_t>(size));
  size_t got = 0;
  while (got < out.size()) {
    ssize_t r = ::read(fd, out.data() + got, std::min<size_t>(out.size() - got, size_t{1} << 30));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int err = r < 0 ? errno : 0;
      ::close(fd);
      input_error("cannot read '{}': read {} of {} bytes{}", path, got, out.size(),
                  err ? std::string(": ") + std::strerror(err) : std::string());
    }
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  return out;
}

std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& path, const ReadLimit& limit,
                            ReadInfo* info) {
  std::vector<uint8_t> out;
  // The trailer's ISIZE (size mod 2^32 of the last member) is a good first guess, if modest: it is
  // the file's word, not a fact.
  if (in.size() >= 18) {
    uint32_t isize = static_cast<uint32_t>(in[in.size() - 4]) | (static_cast<uint32_t>(in[in.size() - 3]) << 8) |
                     (static_cast<uint32_t>(in[in.size() - 2]) << 16) | (static_cast<uint32_t>(in[in.size() - 1]) << 24);
    if (isize <= (1u << 28) && isize <= limit.max_bytes) out.reserve(isize);
  }
  int64_t cap = limit.max_bytes;
  bool promised = false;  // cap is the header's promise
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) input_error("'{}': zlib initialisation failed", path);
  size_t pos = 0;
  uint8_t buf[1 << 16];
  int ret = Z_OK;
  while (true) {
    size_t chunk = std::min<size_t>(in.size() - pos, 1u << 30);
    zs.next_in = const_cast<Bytef*>(in.data() + pos);
    zs.avail_in = static_cast<uInt>(chunk);
    do {
      zs.next_out = buf;
      zs.avail_out = sizeof(buf);
      ret = inflate(&zs, Z_NO_FLUSH);
      if (ret == Z_DATA_ERROR || ret == Z_MEM_ERROR || ret == Z_NEED_DICT || ret == Z_STREAM_ERROR) {
        std::string msg = zs.msg ? zs.msg : "unknown error";
        inflateEnd(&zs);
        input_error("'{}': corrupt gzip data after {} compressed bytes (zlib: {})", path,
                    pos + (chunk - zs.avail_in), msg);
      }
      out.insert(out.end(), buf, buf + (sizeof(buf) - zs.avail_out));
      if (limit.promised && !promised && out.size() >= limit.header_bytes) {
        cap = std::min(cap, std::max<int64_t>(limit.promised(out.data()), static_cast<int64_t>(limit.header_bytes)));
        promised = true;
      }
      if (static_cast<int64_t>(out.size()) > cap) {
        inflateEnd(&zs);
        if (promised && info) {  // the caller names what the header promised
          info->stopped = true;
          info->limit = cap;
          return out;
        }
        input_error("'{}': gzip data inflates to more than {} bytes{}; stopped after {} bytes of output", path, cap,
                    promised ? " (what its header promises)" : " (the limit)", out.size());
      }
    } while (zs.avail_out == 0 && ret != Z_STREAM_END);
    pos += chunk - zs.avail_in;
    if (ret == Z_STREAM_END) {
      // Concatenated members (gzip allows them); trailing zero padding is tolerated.
      size_t rest = pos;
      while (rest < in.size() && in[rest] == 0) ++rest;
      if (rest == in.size()) break;
      if (in.size() - pos < 2 || in[pos] != 0x1f || in[pos + 1] != 0x8b) {
        inflateEnd(&zs);
        input_error("'{}': {} bytes of garbage after the gzip stream", path, in.size() - pos);
      }
      inflateReset(&zs);
      continue;
    }
    if (pos >= in.size()) {
      inflateEnd(&zs);
      input_error("'{}': truncated gzip data ({} compressed bytes, stream ends early after {} bytes "
                  "of output)", path, in.size(), out.size());
    }
  }
  inflateEnd(&zs);
  return out;
}

}  // namespace

std::vector<uint8_t> read_file_bytes(const std::string& path, const ReadLimit& limit, ReadInfo* info) {
  std::vector<uint8_t> raw = read_raw(path, limit.max_bytes);
  if (info) *info = ReadInfo{};
  if (!is_gzip(raw)) return raw;
  if (info) info->gzip = true;
  return gunzip(raw, path, limit, info);
}

uint64_t fnv1a64(const std::string& s, uint64_t h) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace dropnet::data
