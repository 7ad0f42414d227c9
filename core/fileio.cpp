#include "core/fileio.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/error.h"

namespace dropnet {

namespace fs = std::filesystem;

uint32_t crc32_bytes(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const Bytef*>(data);
  uLong c = crc;
  while (n > 0) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n, std::numeric_limits<uInt>::max() / 2));
    c = ::crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(c);
}

std::string crc32_hex(uint32_t crc) { return fmt::format("{:08x}", crc); }

namespace {

const char* file_type_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

std::string human_bytes(int64_t n) {
  if (n >= (int64_t{1} << 30)) return fmt::format("{:.1f} GiB", static_cast<double>(n) / (1 << 30));
  if (n >= (int64_t{1} << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(n) / (1 << 20));
  return fmt::format("{} bytes", n);
}

}  // namespace

int open_regular_file(const std::string& path, const std::string& what, int64_t max_bytes, int64_t* size) {
  // O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    input_error("cannot open {} '{}': {}", what, path, std::strerror(err));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    input_error("cannot stat {} '{}': {}", what, path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    input_error("{} '{}' is not a regular file (it is {})", what, path, file_type_name(st.st_mode));
  }
  if (st.st_size > max_bytes) {
    ::close(fd);
    input_error("{} '{}' is too large: {} ({} bytes), the limit is {}", what, path, human_bytes(st.st_size),
                st.st_size, human_bytes(max_bytes));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  *size = static_cast<int64_t>(st.st_size);
  return fd;
}

std::string read_file(const std::string& path, const std::string& what, int64_t max_bytes) {
  int64_t size = 0;
  const int fd = open_regular_file(path, what, max_bytes, &size);
  std::string bytes(static_cast<size_t>(size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t r = ::read(fd, bytes.data() + got, std::min<size_t>(bytes.size() - got, size_t{1} << 30));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const int err = errno;
      ::close(fd);
      input_error("error reading {} '{}': {}", what, path, std::strerror(err));
    }
    if (r == 0) break;  // shrank since fstat
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  bytes.resize(got);
  return bytes;
}

namespace {

std::string parent_dir(const std::string& path) {
  fs::path p = fs::path(path).parent_path();
  return p.empty() ? std::string(".") : p.string();
}

[[noreturn]] void io_fail(const std::string& action, const std::string& path, int err) {
  input_error("cannot {} '{}': {}", action, path, std::strerror(err));
}

}  // namespace

void sync_directory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) io_fail("open directory", dir, errno);
  if (::fsync(fd) != 0 && errno != EINVAL) {
    int err = errno;
    ::close(fd);
    io_fail("fsync directory", dir, err);
  }
  ::close(fd);
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  static std::atomic<uint64_t> counter{0};
  const std::string dir = parent_dir(path);
  const std::string name = fs::path(path).filename().string();
  if (name.empty()) input_error("cannot write '{}': not a file name", path);
  // pid and host first so remove_stale_temp_files can tell whose file it is.
  const std::string tmp = (fs::path(dir) / fmt::format("{}{}-h{}-{}-{}", kTempFilePrefix, ::getpid(), host_tag(),
                                                       counter.fetch_add(1), name)).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) io_fail("create", tmp, errno);
  auto fail = [&](const std::string& action, int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    io_fail(action, tmp, err);
  };
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t w = ::write(fd, p, std::min<size_t>(left, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write", errno);
    }
    p += w;
    left -= static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0) fail("fsync", errno);
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    io_fail("close", tmp, err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    input_error("cannot rename '{}' to '{}': {}", tmp, path, std::strerror(err));
  }
  sync_directory(dir);
}

namespace {

// write(2) until done; returns 0 or the errno of the failure (a write of 0 bytes counts as ENOSPC).
int write_all(int fd, std::string_view bytes) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t w = ::write(fd, p, std::min<size_t>(left, size_t{1} << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno;
    if (w == 0) return ENOSPC;
    p += w;
    left -= static_cast<size_t>(w);
  }
  return 0;
}

}  // namespace

AppendFile::AppendFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) io_fail("open for appending", path, errno);
  struct stat st;
  size_ = ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) ? static_cast<int64_t>(st.st_size) : 0;
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendFile::append(std::string_view record) {
  if (fd_ < 0) input_error("cannot write '{}': the file is not open", path_);
  const int err = write_all(fd_, record);
  if (err != 0) {
    // Drop the torn tail so the file still ends with a whole record (fails harmlessly on a device).
    if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
    }
    io_fail("write", path_, err);
  }
  size_ += static_cast<int64_t>(record.size());
}

void write_file_checked(const std::string& path, std::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) io_fail("create", path, errno);
  const int err = write_all(fd, bytes);
  if (err != 0) {
    ::close(fd);
    io_fail("write", path, err);
  }
  if (::close(fd) != 0) io_fail("close", path, errno);
}

std::string host_tag() {
  static const std::string tag = [] {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    uint32_t h = 2166136261u;  // FNV-1a: host names may hold '-' and '.', the tag holds neither
    for (const char* c = host; *c != '\0'; ++c) h = (h ^ static_cast<uint8_t>(*c)) * 16777619u;
    return fmt::format("{:08x}", h);
  }();
  return tag;
}

bool is_temp_file_name(std::string_view file_name) {
  return file_name.substr(0, kTempFilePrefix.size()) == kTempFilePrefix;
}

int remove_stale_temp_files(const std::string& dir) {
  int removed = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!is_temp_file_name(name)) continue;
    // .tmp-<pid>-h<host tag>-<counter>-<name> (before the host tag: .tmp-<pid>-<counter>-<name>)
    const std::string rest = name.substr(kTempFilePrefix.size());
    const size_t dash = rest.find('-');
    if (dash == 0 || dash == std::string::npos) continue;
    // Another machine's process (a shared file system): its pid means nothing here.
    if (rest.compare(dash + 1, 1, "h") == 0 && rest.compare(dash + 2, 8, host_tag()) != 0) continue;
    long pid = 0;
    bool digits = true;
    for (size_t i = 0; i < dash; ++i) {
      if (rest[i] < '0' || rest[i] > '9' || pid > (1L << 40)) {
        digits = false;
        break;
      }
      pid = pid * 10 + (rest[i] - '0');
    }
    if (!digits || pid <= 0) continue;
    if (pid == static_cast<long>(::getpid())) continue;  // a write of ours (another thread)
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    if (::unlink(e.path().c_str()) == 0) ++removed;
  }
  return removed;
}

}  // namespace dropnet
