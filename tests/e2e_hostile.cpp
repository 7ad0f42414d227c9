// Issue 17 end to end: the CLIs on hostile inputs and a full disk. Non-regular files are refused
// at once with "not a regular file" (a FIFO must not block, /dev/zero must not be read), names
// that would escape the run directory fail --dry-run, non-finite config numbers are errors, and a
// metrics write that fails (metrics.jsonl -> /dev/full: ENOSPC) stops the run with a message and a
// non-zero exit after a final snapshot.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/testing/files.h"

namespace {

namespace fs = std::filesystem;

std::string tool(const char* name) {
  const char* dir = std::getenv("DROPNET_TOOLS_DIR");
  return dir ? std::string(dir) + "/" + name : "";
}

struct Proc {
  int rc = -1;
  std::string out;
  double seconds = 0;
};

// Runs under `timeout 60` so a blocking read fails the test instead of hanging it.
Proc run(const std::string& cmd) {
  Proc p;
  const auto t0 = std::chrono::steady_clock::now();
  FILE* f = popen(("timeout 60 " + cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, f)) p.out.append(buf, n);
  const int rc = pclose(f);
  p.rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return p;
}

const char* kConfig = R"(name: hostile
seed: 1
data:
  train: {source: synthetic, shape: [1, 6, 6], num_classes: 3, num_samples: 24, batch_size: 4}
  test: {source: synthetic, shape: [1, 6, 6], num_classes: 3, num_samples: 24, batch_size: 4}
solver: {base_lr: 0.05, max_iter: 6, display: 1, test_interval: 3, test_iter: 1, snapshot: 3}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: fc, type: fc, bottom: data, top: fc, num_output: 3}
  - {name: acc, type: accuracy, bottom: [fc, label], top: acc, phase: test}
  - {name: loss, type: softmax_loss, bottom: [fc, label], top: loss}
)";

class Hostile : public dropnet::testing::TempDirTest {
 protected:
  void SetUp() override {
    if (tool("dropnet-train").empty()) GTEST_SKIP() << "DROPNET_TOOLS_DIR not set (run through ctest)";
    std::ofstream(path("cfg.yaml")) << kConfig;
  }
  std::string train(const std::string& args) {
    return tool("dropnet-train") + " " + path("cfg.yaml") + " --threads 1 --device cpu --quiet " + args;
  }
};

TEST_F(Hostile, NonRegularFilesAreRefusedAtOnce) {
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
  const std::string out = " --out " + path("run");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {tool("dropnet-train") + " /dev/zero", "config '/dev/zero' is not a regular file (it is a character device)"},
      {tool("dropnet-train") + " " + dir().string(), "is not a regular file (it is a directory)"},
      {tool("dropnet-train") + " " + path("fifo"), "is not a regular file (it is a FIFO)"},
      {train("--weights /dev/zero" + out), "'/dev/zero' is not a regular file"},
      {train("--weights " + path("fifo") + out), "is not a regular file (it is a FIFO)"},
      {train("--resume /dev/zero" + out), "'/dev/zero' is not a regular file"},
      {tool("dropnet-test") + " " + path("cfg.yaml") + " --weights /dev/zero --device cpu",
       "'/dev/zero' is not a regular file"},
  };
  for (const auto& [cmd, want] : cases) {
    Proc p = run(cmd);
    EXPECT_EQ(p.rc, 2) << cmd << "\n" << p.out;
    EXPECT_NE(p.out.find(want), std::string::npos) << cmd << "\n" << p.out;
    EXPECT_LT(p.seconds, 30.0) << cmd;
  }
}

TEST_F(Hostile, BadNamesAndNonFiniteNumbersFailTheDryRun) {
  Proc p = run(train("--dry-run name=../../x"));
  EXPECT_EQ(p.rc, 2) << p.out;
  EXPECT_NE(p.out.find("name: '../../x' must be a plain name"), std::string::npos) << p.out;
  p = run(train("--dry-run solver.base_lr=inf"));
  EXPECT_EQ(p.rc, 2) << p.out;
  EXPECT_NE(p.out.find("solver.base_lr: expected a finite number, got 'inf'"), std::string::npos) << p.out;
  p = run(train("--dry-run data.test.scale=nan"));
  EXPECT_EQ(p.rc, 2) << p.out;
  EXPECT_NE(p.out.find("scale: expected a finite number, got 'nan'"), std::string::npos) << p.out;
}

TEST_F(Hostile, FullDiskForMetricsStopsTheRunAfterAFinalSnapshot) {
  for (const char* file : {"metrics.jsonl", "metrics.csv"}) {
    SCOPED_TRACE(file);
    const fs::path run_dir = dir() / (std::string("run_") + file);
    fs::create_directories(run_dir);
    fs::create_symlink("/dev/full", run_dir / file);  // every write: ENOSPC
    Proc p = run(train("--out " + run_dir.string()));
    EXPECT_EQ(p.rc, 2) << p.out;
    EXPECT_NE(p.out.find("cannot write '" + (run_dir / file).string() + "': No space left on device"),
              std::string::npos)
        << p.out;
    EXPECT_NE(p.out.find("(run stopped at iteration"), std::string::npos) << p.out;
    // The first records failed (the test before iteration 0, or the display record of iteration 0
    // where the write error shows at a flush): the run stopped at the next check of should_stop
    // (right after the test, or after iteration 0) and still wrote a snapshot there.
    const size_t at = p.out.find("(run stopped at iteration ");
    ASSERT_NE(at, std::string::npos) << p.out;
    const int stopped = std::atoi(p.out.c_str() + at + 26);
    EXPECT_LE(stopped, 1) << p.out;
    EXPECT_TRUE(fs::exists(run_dir / ("hostile_iter_" + std::to_string(stopped) + ".safetensors"))) << p.out;
    EXPECT_FALSE(fs::exists(run_dir / "hostile_iter_6.safetensors")) << "the run went on to the end\n" << p.out;
  }
}

// The log is a write like the metrics: stderr on a full disk stops the run after a final snapshot,
// with a non-zero exit (the message itself cannot be read: it went to the same full disk).
TEST_F(Hostile, FullDiskForTheLogStopsTheRunAfterAFinalSnapshot) {
  const fs::path run_dir = dir() / "run_log";
  const std::string cmd = "timeout 60 " + tool("dropnet-train") + " " + path("cfg.yaml") +
                          " --threads 1 --device cpu --out " + run_dir.string() + " 2>/dev/full";
  const int rc = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(rc)) << cmd;
  EXPECT_EQ(WEXITSTATUS(rc), 2) << cmd;
  EXPECT_TRUE(fs::exists(run_dir / "hostile_iter_1.safetensors") || fs::exists(run_dir / "hostile_iter_0.safetensors"))
      << "no final snapshot";
  EXPECT_FALSE(fs::exists(run_dir / "hostile_iter_6.safetensors")) << "the run went on to the end";
}

// Reports on stdout and --json files: a full disk is a non-zero exit naming what failed.
TEST_F(Hostile, FullDiskForReportsIsAnError) {
  const std::string time = tool("dropnet-time") + " " + path("cfg.yaml") + " --iterations 2 --device cpu --threads 1";
  Proc p = run(time + " --json /dev/full");
  EXPECT_EQ(p.rc, 2) << p.out;
  EXPECT_NE(p.out.find("cannot write '/dev/full': No space left on device"), std::string::npos) << p.out;
  p = run("sh -c '" + time + " >/dev/full'");
  EXPECT_EQ(p.rc, 1) << p.out;
  EXPECT_NE(p.out.find("dropnet-time: error: writing standard output failed"), std::string::npos) << p.out;
  p = run(time);
  EXPECT_EQ(p.rc, 0) << p.out;
}

TEST_F(Hostile, MetricsFilesHoldWholeRecords) {
  Proc p = run(train("--out " + path("ok")));
  ASSERT_EQ(p.rc, 0) << p.out;
  std::ifstream in(path("ok/metrics.jsonl"));
  int lines = 0;
  for (std::string l; std::getline(in, l); ++lines) {
    EXPECT_EQ(l.front(), '{') << l;
    EXPECT_EQ(l.back(), '}') << l;
  }
  EXPECT_GE(lines, 8);  // 6 train records + 3 tests
  std::ifstream csv(path("ok/metrics.csv"));
  std::string head;
  std::getline(csv, head);
  EXPECT_EQ(head, "kind,iter,name,value");
}

}  // namespace
