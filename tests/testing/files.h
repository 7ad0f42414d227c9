// Files for tests: fresh temporary directories (one per test or per use) and writers / readers of raw bytes, for
// the tests that build data sets, snapshots and broken files by hand.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace dropnet::testing {

// A fresh, empty directory under the system temp dir, removed with everything in it on destruction. Named
// dropnet_<suite>.<test>_<pid>_<n> (n counts the directories of this process): distinct between the test processes
// ctest runs in parallel, and a leftover one says which test left it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A fixture whose every test gets its own TempDir.
class TempDirTest : public ::testing::Test {
 protected:
  const std::filesystem::path& dir() const { return dir_.path(); }
  std::string path(const std::string& name) const { return dir_.file(name); }

 private:
  TempDir dir_;
};

// Writers fail the calling test (a fatal failure in the helper: the caller goes on) when the file cannot be written.
void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes);
void write_text(const std::string& path, const std::string& text);
void write_gzip(const std::string& path, const std::vector<uint8_t>& bytes);
// The whole file; empty when it cannot be read.
std::vector<uint8_t> read_all(const std::string& path);

// Appends `v` big-endian (IDX and PNG headers).
void put_be32(std::vector<uint8_t>* bytes, uint32_t v);

}  // namespace dropnet::testing
