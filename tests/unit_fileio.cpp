// Every file a tool reads is a regular file of bounded size, checked before reading: a device, a
// FIFO or a directory is "not a regular file" (a FIFO without a writer must not block), and
// /dev/zero cannot grow a read to gigabytes.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/error.h"
#include "core/fileio.h"
#include "core/config.h"
#include "tests/testing/files.h"

using namespace dropnet;
using dropnet::testing::TempDirTest;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Input) << e.what();
    return e.what();
  }
  return "";
}

class FileIo : public TempDirTest {};

TEST_F(FileIo, ReadsARegularFile) {
  std::ofstream(path("a.txt")) << "hello";
  EXPECT_EQ(read_file(path("a.txt"), "test file"), "hello");
}

TEST_F(FileIo, RefusesDirectoriesDevicesAndFifos) {
  std::string msg = error_of([&] { read_file(dir().string(), "weights file"); });
  EXPECT_NE(msg.find("is not a regular file (it is a directory)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("weights file"), std::string::npos) << msg;
  msg = error_of([&] { read_file("/dev/zero", "snapshot"); });
  EXPECT_NE(msg.find("'/dev/zero' is not a regular file (it is a character device)"), std::string::npos) << msg;
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
  const auto t0 = std::chrono::steady_clock::now();
  msg = error_of([&] { read_file(path("fifo"), "config"); });  // no writer: open must not block
  EXPECT_NE(msg.find("is not a regular file (it is a FIFO)"), std::string::npos) << msg;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.0);
  msg = error_of([&] { read_file(path("missing"), "config"); });
  EXPECT_NE(msg.find("cannot open config"), std::string::npos) << msg;
}

TEST_F(FileIo, SizeIsBoundedBeforeReading) {
  std::ofstream(path("big")) << std::string(1000, 'x');
  std::string msg = error_of([&] { read_file(path("big"), "config", 999); });
  EXPECT_NE(msg.find("is too large"), std::string::npos) << msg;
  EXPECT_EQ(read_file(path("big"), "config", 1000).size(), 1000u);
}

TEST_F(FileIo, ConfigFilesAndTheirBasesAreRegularFiles) {
  // `dropnet-train /tmp` said "the config is empty".
  std::string msg = error_of([&] { load_config_file(dir().string()); });
  EXPECT_NE(msg.find("is not a regular file (it is a directory)"), std::string::npos) << msg;
  // base: /dev/zero grew to 6.5 GB; base: <a FIFO> blocked forever.
  std::ofstream(path("z.yaml")) << "base: /dev/zero\nname: z\n";
  msg = error_of([&] { load_config_file(path("z.yaml")); });
  EXPECT_NE(msg.find("'/dev/zero' is not a regular file (it is a character device)"), std::string::npos) << msg;
  ASSERT_EQ(::mkfifo(path("fifo.yaml").c_str(), 0600), 0);
  std::ofstream(path("f.yaml")) << "base: fifo.yaml\nname: f\n";
  msg = error_of([&] { load_config_file(path("f.yaml")); });
  EXPECT_NE(msg.find("is not a regular file (it is a FIFO)"), std::string::npos) << msg;
  // A config larger than the limit is refused before reading it.
  {
    std::ofstream big(path("big.yaml"));
    big << "name: big\n#" << std::string(static_cast<size_t>(kMaxConfigBytes), 'x') << "\n";
  }
  msg = error_of([&] { load_config_file(path("big.yaml")); });
  EXPECT_NE(msg.find("is too large"), std::string::npos) << msg;
}

TEST_F(FileIo, CheckedWritesReportAFullDisk) {
  std::filesystem::create_symlink("/dev/full", path("full"));
  std::string msg = error_of([&] { write_file_checked(path("full"), "x"); });
  EXPECT_NE(msg.find("No space left on device"), std::string::npos) << msg;
  AppendFile f(path("full"));
  msg = error_of([&] { f.append("{\"a\": 1}\n"); });
  EXPECT_NE(msg.find("cannot write '" + path("full") + "': No space left on device"), std::string::npos) << msg;
  AppendFile g(path("ok.jsonl"));
  g.append("a\n");
  g.append("b\n");
  EXPECT_EQ(g.size(), 4);
  EXPECT_EQ(read_file(path("ok.jsonl")), "a\nb\n");
}

TEST(ClipText, CutsLongTextAndControlCharacters) {
  EXPECT_EQ(clip_text("short"), "short");
  EXPECT_EQ(clip_text(std::string(10 << 20, 'a'), 4), "aaaa... (10485760 bytes)");
  EXPECT_EQ(clip_text("a\nb\x1b"), "a?b?");
}

}  // namespace
