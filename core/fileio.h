// Durable file output and checksums. write_file_atomic puts the bytes into a temporary file in
// the target's directory (named `.tmp-<pid>-<name>`, never mistaken for a real file), fsyncs it,
// renames it over the target and fsyncs the directory, so a crash leaves either the old file or
// the new one, never a torn one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dropnet {

// zlib's CRC-32 (the one of gzip/PNG); chain by passing the previous value as `crc`.
uint32_t crc32_bytes(const void* data, size_t n, uint32_t crc = 0);
inline uint32_t crc32_bytes(std::string_view s, uint32_t crc = 0) { return crc32_bytes(s.data(), s.size(), crc); }
// "0x1234abcd"-free form: 8 lower-case hex digits.
std::string crc32_hex(uint32_t crc);

// Every file the tools read goes through here: it must be a regular file ("not a regular file
// (a directory)" for a directory, a device, a FIFO or a socket; a FIFO is opened without blocking)
// of at most `max_bytes`, checked before a byte is read, and no more than its size at open is read
// (a file that grows meanwhile cannot make the read run away).
inline constexpr int64_t kMaxReadBytes = int64_t{64} << 30;  // 64 GiB: no weights file is larger
// Opens `path` read-only after those checks; returns the descriptor (the caller closes it) and
// sets *size. Errors are input errors naming `what` ("config", "weights file", ...) and the path.
int open_regular_file(const std::string& path, const std::string& what, int64_t max_bytes, int64_t* size);
// Reads a whole regular file of at most max_bytes.
std::string read_file(const std::string& path, const std::string& what = "file", int64_t max_bytes = kMaxReadBytes);

// Atomically replaces `path` with `bytes` (see above). Errors (directory missing, disk full,
// permissions) are input errors naming the path and the system's reason; the temporary file is
// removed on failure.
void write_file_atomic(const std::string& path, std::string_view bytes);
// fsync on a directory, making a rename or unlink inside it durable.
void sync_directory(const std::string& dir);

// An append-only file of records (metrics.jsonl, metrics.csv) whose every write is checked: a
// failed or short write (ENOSPC, EIO) throws an input error naming the file and the system's
// reason, after cutting the file back to its last whole record where it can. One record is one
// write(2), so a reader never sees half a record unless the disk fills inside it.
class AppendFile {
 public:
  AppendFile() = default;
  explicit AppendFile(const std::string& path);  // opens (creates) for appending
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  void append(std::string_view record);
  int64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
  int64_t size_ = 0;
};

// Writes a whole file (not atomically: for reports such as --json outputs), every write and the
// close checked; an input error names the path and the reason.
void write_file_checked(const std::string& path, std::string_view bytes);

// Temporary files written by write_file_atomic start with this prefix.
inline constexpr std::string_view kTempFilePrefix = ".tmp-";
bool is_temp_file_name(std::string_view file_name);
// 8 hex digits identifying this machine (FNV-1a of its host name) in temporary file names.
std::string host_tag();
// Removes temporary files in `dir` left behind by processes of this machine that no longer exist
// (killed in the middle of a write). Returns how many were removed. Never touches a live
// process's file, nor one written on another machine (a shared file system: the names carry a
// tag of the host name).
int remove_stale_temp_files(const std::string& dir);

}  // namespace dropnet
