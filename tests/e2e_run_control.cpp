// dropnet-train's run control (issue 16): SIGINT / SIGTERM stop the run with a snapshot and exit
// 128 + the signal; --resume with --weights is refused; a resume at or past max_iter says there is
// nothing to train.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/files.h"

namespace {

namespace fs = std::filesystem;

std::string tool(const char* name) {
  const char* dir = std::getenv("DROPNET_TOOLS_DIR");
  return dir ? std::string(dir) + "/" + name : "";
}

// A run long enough to be interrupted: 100,000 iterations of a tiny net, a record every iteration.
const char* kConfig = R"(name: ctl
seed: 1
data:
  train: {source: synthetic, shape: [1, 6, 6], num_classes: 3, num_samples: 24, batch_size: 4}
solver: {base_lr: 0.05, max_iter: 100000, display: 1, snapshot: 0}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: fc, type: fc, bottom: data, top: fc, num_output: 3}
  - {name: loss, type: softmax_loss, bottom: [fc, label], top: loss}
)";

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The last line of a metrics.jsonl.
std::string last_record(const fs::path& metrics) {
  std::ifstream in(metrics);
  std::string last;
  for (std::string l; std::getline(in, l);) last = l;
  return last;
}

class RunControl : public dropnet::testing::TempDirTest {
 protected:
  void SetUp() override {
    if (tool("dropnet-train").empty()) GTEST_SKIP() << "DROPNET_TOOLS_DIR not set (run through ctest)";
    std::ofstream(path("cfg.yaml")) << kConfig;
  }

  // Starts dropnet-train with stderr to `log`; returns its pid.
  pid_t start(const std::vector<std::string>& extra, const fs::path& log) {
    std::vector<std::string> argv = {tool("dropnet-train"), path("cfg.yaml"), "--threads", "1", "--device", "cpu",
                                     "--progress", "log"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const std::string cwd = dir().string();
    const pid_t pid = ::fork();
    if (pid == 0) {
      if (::chdir(cwd.c_str()) != 0) ::_exit(126);  // a default runs/<name> would land in the temp dir
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 2);
      ::dup2(fd, 1);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    return pid;
  }

  // Waits (at most 60 s) for the run to have written `records` metrics lines.
  static bool wait_for_records(const fs::path& metrics, int records) {
    for (int i = 0; i < 600; ++i) {
      std::ifstream in(metrics);
      int n = 0;
      for (std::string l; std::getline(in, l);) ++n;
      if (n >= records) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // Waits (at most 60 s) for the process; its exit code, or -1 (killed on timeout, or by a signal).
  static int wait_exit(pid_t pid) {
    int status = 0;
    for (int i = 0; i < 600; ++i) {
      if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return -1;
  }
};

TEST_F(RunControl, SignalStopsWithASnapshotAndExits128PlusTheSignal) {
  for (const auto& [sig, code] : {std::pair{SIGINT, 130}, std::pair{SIGTERM, 143}}) {
    SCOPED_TRACE(sig);
    const fs::path out = dir() / ("run_" + std::to_string(sig));
    const fs::path log = dir() / ("log_" + std::to_string(sig));
    const pid_t pid = start({"--out", out.string()}, log);
    ASSERT_TRUE(wait_for_records(out / "metrics.jsonl", 3)) << slurp(log);
    ::kill(pid, sig);
    EXPECT_EQ(wait_exit(pid), code) << slurp(log);
    const std::string text = slurp(log);
    EXPECT_NE(text.find("writing a snapshot and stopping"), std::string::npos) << text;
    bool snapshot = false;
    for (const auto& e : fs::directory_iterator(out))
      snapshot = snapshot || e.path().extension() == ".safetensors";
    EXPECT_TRUE(snapshot) << text;
    const std::string last = last_record(out / "metrics.jsonl");
    EXPECT_NE(last.find("\"status\": \"stopped\", \"message\": \"signal " + std::to_string(sig) + "\""),
              std::string::npos)
        << last;
  }
}

TEST_F(RunControl, SecondSignalExitsAtOnce) {
  // DROPNET_TEST_FAULT=stall:0:3 holds the run at iteration 3 (as a long test pass or a slow data
  // read would), so the first signal's graceful stop cannot happen.
  const fs::path out = dir() / "run2";
  const fs::path log = dir() / "log2";
  ::setenv("DROPNET_TEST_FAULT", "stall:0:3", 1);
  const pid_t pid = start({"--out", out.string()}, log);
  ::unsetenv("DROPNET_TEST_FAULT");
  for (int i = 0; i < 600 && slurp(log).find("DROPNET_TEST_FAULT: stall") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_NE(slurp(log).find("DROPNET_TEST_FAULT: stall"), std::string::npos) << slurp(log);
  // One interrupt delivered twice within a second (`timeout` signals the process and its group):
  // the run still waits for its graceful stop.
  ::kill(pid, SIGINT);
  ::kill(pid, SIGINT);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, WNOHANG), 0) << "exited on a doubled signal\n" << slurp(log);
  // A second one a second later: exit at once.
  ::kill(pid, SIGTERM);
  EXPECT_EQ(wait_exit(pid), 143) << slurp(log);
  EXPECT_NE(slurp(log).find("second signal: exiting at once (no final snapshot)"), std::string::npos) << slurp(log);
}

TEST_F(RunControl, ResumeAndWeightsContradictAndAFinishedRunSaysSo) {
  // A short run with a snapshot at its end.
  const fs::path out = dir() / "short";
  const fs::path log = dir() / "log_short";
  pid_t pid = start({"--out", out.string(), "solver.max_iter=4", "solver.snapshot=4"}, log);
  ASSERT_EQ(wait_exit(pid), 0) << slurp(log);
  const std::string snap = (out / "ctl_iter_4.safetensors").string();
  ASSERT_TRUE(fs::exists(snap)) << slurp(log);

  pid = start({"--out", (dir() / "both").string(), "--resume", out.string(), "--weights", snap}, log);
  EXPECT_EQ(wait_exit(pid), 2) << slurp(log);
  EXPECT_NE(slurp(log).find("--resume and --weights contradict each other"), std::string::npos) << slurp(log);

  pid = start({"--out", out.string(), "--resume", out.string(), "solver.max_iter=4", "solver.snapshot=4"}, log);
  EXPECT_EQ(wait_exit(pid), 0) << slurp(log);
  EXPECT_NE(slurp(log).find("nothing to train: the snapshot is at iteration 4 and solver.max_iter is 4"),
            std::string::npos)
      << slurp(log);
}

// The start-up line counts the parameters as the summary does (not the arena's alignment padding):
// fc 36 -> 3 has 108 weights + 3 biases.
TEST_F(RunControl, StartUpLogAndSummaryCountTheSameParameters) {
  const fs::path log = dir() / "log";
  ASSERT_EQ(wait_exit(start({"--out", (dir() / "run").string(), "solver.max_iter=1"}, log)), 0) << slurp(log);
  EXPECT_NE(slurp(log).find("dropnet-train: ctl on cpu, 111 parameters"), std::string::npos) << slurp(log);
  ASSERT_EQ(wait_exit(start({"--dry-run"}, log)), 0) << slurp(log);
  EXPECT_NE(slurp(log).find("111 parameters"), std::string::npos) << slurp(log);
}

// A run ends with a status record; a divergence has its own exit code (3), apart from bad input (2).
TEST_F(RunControl, EveryRunEndsWithAStatusRecordAndDivergenceExits3) {
  const fs::path log = dir() / "log";
  const fs::path done = dir() / "done";
  ASSERT_EQ(wait_exit(start({"--out", done.string(), "solver.max_iter=3"}, log)), 0) << slurp(log);
  EXPECT_EQ(last_record(done / "metrics.jsonl"), R"({"kind": "status", "iter": 3, "status": "finished", "message": ""})");
  const fs::path nan = dir() / "nan";
  EXPECT_EQ(wait_exit(start({"--out", nan.string(), "solver.base_lr=1e38", "solver.max_iter=50"}, log)), 3)
      << slurp(log);
  EXPECT_NE(slurp(log).find("error: divergence: "), std::string::npos) << slurp(log);
  const std::string last = last_record(nan / "metrics.jsonl");
  EXPECT_EQ(last.rfind(R"({"kind": "status", "iter": )", 0), 0u) << last;
  EXPECT_NE(last.find(R"("status": "diverged", "message": "divergence: )"), std::string::npos) << last;
}

// dropnet-test evaluates exactly one pass over the TEST set by default: 24 samples in batches of 5
// are 5 batches, the last one counting 4 (its fifth sample wraps around to the first), and the
// confusion matrix holds each sample once.
TEST_F(RunControl, TestEvaluatesOnePassWithAConfusionMatrix) {
  const fs::path out = dir() / "run";
  const fs::path log = dir() / "log";
  const std::string test_set =
      "data.test={source: synthetic, shape: [1, 6, 6], num_classes: 3, num_samples: 24, batch_size: 5}";
  ASSERT_EQ(wait_exit(start({"--out", out.string(), "solver.max_iter=20", "solver.snapshot=20"}, log)), 0)
      << slurp(log);
  const std::string json = (dir() / "t.json").string();
  const std::string cmd = tool("dropnet-test") + " " + path("cfg.yaml") + " --weights " +
                          (out / "ctl_iter_20.safetensors").string() + " --threads 1 --device cpu --json " + json +
                          " '" + test_set + "' 2>&1";
  std::string text;
  {
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, p)) text.append(buf, n);
    ASSERT_EQ(pclose(p), 0) << text;
  }
  EXPECT_NE(text.find("ctl: one pass over the 24 TEST samples (5 batches of 5, the last one 4 samples)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("(from 'fc', 3 classes, 24 samples)"), std::string::npos) << text;
  EXPECT_NE(text.find("per-class accuracy: 0:"), std::string::npos) << text;
  EXPECT_NE(text.find("confusion matrix (rows: true class, columns: predicted):"), std::string::npos) << text;
  // The matrix's entries sum to the set's size.
  const std::string j = slurp(json);
  const size_t at = j.find("\"confusion\": [");
  ASSERT_NE(at, std::string::npos) << j;
  int64_t total = 0;
  for (size_t i = at + 14; i < j.size(); ++i) {
    if (std::isdigit(static_cast<unsigned char>(j[i]))) {
      size_t used = 0;
      total += std::stoll(j.substr(i), &used);
      i += used - 1;
    }
  }
  EXPECT_EQ(total, 24) << j;
  EXPECT_NE(j.find("\"counted\": 24"), std::string::npos) << j;
  EXPECT_NE(j.find("\"samples\": 25"), std::string::npos) << j;
}

// The run directory records each invocation (run.jsonl) and keeps its own log (train.log), whose
// writes are checked like the metrics'.
TEST_F(RunControl, RunRecordAndTrainLog) {
  const fs::path out = dir() / "run";
  const fs::path log = dir() / "log";
  ASSERT_EQ(wait_exit(start({"--out", out.string(), "solver.max_iter=4", "solver.snapshot=2"}, log)), 0) << slurp(log);
  ASSERT_EQ(wait_exit(start({"--resume", out.string(), "solver.max_iter=6", "solver.snapshot=2"}, log)), 0)
      << slurp(log);
  std::ifstream in(out / "run.jsonl");
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 2u) << slurp(out / "run.jsonl");
  for (const std::string& l : lines) {
    EXPECT_NE(l.find("\"command\": [\"" + tool("dropnet-train") + "\", \"" + path("cfg.yaml") + "\""), std::string::npos)
        << l;
    EXPECT_NE(l.find("\"threads\": 1, \"version\": \""), std::string::npos) << l;
    EXPECT_NE(l.find("\"commit\": \""), std::string::npos) << l;
    EXPECT_NE(l.find("\"host\": \""), std::string::npos) << l;
    EXPECT_NE(l.find("\"device\": \"cpu\", \"ranks\": 1"), std::string::npos) << l;
  }
  EXPECT_NE(lines[0].find("\"start_iter\": 0}"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("\"start_iter\": 4}"), std::string::npos) << lines[1];
  const std::string tlog = slurp(out / "train.log");
  EXPECT_NE(tlog.find("done: 4 iterations"), std::string::npos) << tlog;
  EXPECT_NE(tlog.find("done: 6 iterations"), std::string::npos) << tlog;
  // train.log on a full disk: the run stops after a final snapshot, exit 2 naming the file.
  const fs::path full = dir() / "full";
  fs::create_directories(full);
  fs::create_symlink("/dev/full", full / "train.log");
  EXPECT_EQ(wait_exit(start({"--out", full.string(), "solver.max_iter=6", "solver.snapshot=0"}, log)), 2)
      << slurp(log);
  EXPECT_NE(slurp(log).find("cannot write '" + (full / "train.log").string() + "': No space left on device"),
            std::string::npos)
      << slurp(log);
  EXPECT_NE(slurp(log).find("(run stopped at iteration "), std::string::npos) << slurp(log);
  bool snapshot = false;
  for (const auto& e : fs::directory_iterator(full)) snapshot = snapshot || e.path().extension() == ".safetensors";
  EXPECT_TRUE(snapshot) << slurp(log);
}

// Runs `tool arg` with stdout and stderr to `log`; its exit code.
static int run_tool(const std::string& t, const char* arg, const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(t.c_str(), t.c_str(), arg, static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Every tool: --version names dropnet's version and commit; --help gives the synopsis, what the
// tool does and every option with its meaning (CLI11); a mistyped option gets a suggestion.
TEST_F(RunControl, VersionHelpAndDidYouMean) {
  const std::vector<std::pair<const char*, std::vector<const char*>>> tools = {
      {"dropnet-train", {"--threads N", "--resume DIR|FILE", "--weights-map A=B,...", "(default: 120)"}},
      {"dropnet-test", {"--threads N", "--predict INPUT", "--csv FILE", "--json FILE"}},
      {"dropnet-summary", {"--iter N", "--synthetic-shape C,H,W"}},
      {"dropnet-time", {"--threads N", "--iterations N", "(default: 50)"}},
      {"dropnet-datacheck", {"--threads N", "--batches N"}},
      {"dropnet-dump", {"--threads N", "--weights FILE", "--phase train|test"}},
      {"dropnet-probe", {"--threads N", "--seeds K", "(default: 3)"}},
      {"dropnet-scale", {"--bucket-mb MB", "(default: 25)"}},
      {"dropnet-pack", {"--list LIST", "--skip-bad"}}};
  const fs::path log = dir() / "log";
  for (const auto& [name, options] : tools) {
    SCOPED_TRACE(name);
    EXPECT_EQ(run_tool(tool(name), "--version", log), 0);
    EXPECT_EQ(slurp(log).rfind(std::string(name) + " (dropnet ", 0), 0u) << slurp(log);
    EXPECT_NE(slurp(log).find(", commit "), std::string::npos) << slurp(log);
    EXPECT_EQ(run_tool(tool(name), "--help", log), 0);
    const std::string help = slurp(log);
    EXPECT_EQ(help.rfind(std::string("usage: ") + name, 0), 0u) << help;
    EXPECT_NE(help.find("\nOptions:\n"), std::string::npos) << help;
    EXPECT_NE(help.find("  --version "), std::string::npos) << help;
    for (const char* o : options) EXPECT_NE(help.find(o), std::string::npos) << o << "\n" << help;
    // Every option line has its meaning beside it or on the next line.
    std::istringstream in(help.substr(help.find("\nOptions:\n") + 10));
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    for (size_t i = 0; i < lines.size(); ++i)
      if (lines[i].rfind("  -", 0) == 0 && lines[i].size() <= 30)  // a long name: the meaning below it
        EXPECT_TRUE(i + 1 < lines.size() && lines[i + 1].find_first_not_of(' ') >= 20 &&
                    lines[i + 1].find_first_not_of(' ') != std::string::npos)
            << lines[i];
    EXPECT_EQ(run_tool(tool(name), "--threds", log), 2);
    EXPECT_NE(slurp(log).find("unknown option '--threds'"), std::string::npos) << slurp(log);
  }
  EXPECT_EQ(wait_exit(start({"--threds", "2"}, log)), 2);
  EXPECT_NE(slurp(log).find("unknown option '--threds' (did you mean '--threads'?)"), std::string::npos)
      << slurp(log);
  EXPECT_EQ(wait_exit(start({"--no-such-option"}, log)), 2);
  EXPECT_NE(slurp(log).find("unknown option '--no-such-option'\n"), std::string::npos) << slurp(log);
}

// The train records of a metrics.jsonl, by iteration (a repeated iteration shows up twice).
std::vector<int> train_iters(const fs::path& metrics) {
  std::vector<int> iters;
  std::ifstream in(metrics);
  for (std::string l; std::getline(in, l);)
    if (l.find("\"kind\": \"train\"") != std::string::npos) iters.push_back(std::stoi(l.substr(l.find("\"iter\": ") + 8)));
  return iters;
}

TEST_F(RunControl, ANewRunIntoAnEarlierRunIsRefusedUnlessForced) {
  const fs::path out = dir() / "run";
  const fs::path log = dir() / "log";
  ASSERT_EQ(wait_exit(start({"--out", out.string(), "solver.max_iter=4", "solver.snapshot=2"}, log)), 0) << slurp(log);
  ASSERT_TRUE(fs::exists(out / "ctl_iter_4.safetensors"));
  EXPECT_EQ(wait_exit(start({"--out", out.string(), "solver.max_iter=2", "solver.snapshot=2"}, log)), 2) << slurp(log);
  EXPECT_NE(slurp(log).find("run directory '" + out.string() + "' already holds a run"), std::string::npos)
      << slurp(log);
  EXPECT_NE(slurp(log).find("pass --force to start over"), std::string::npos) << slurp(log);
  EXPECT_EQ(train_iters(out / "metrics.jsonl"), (std::vector<int>{0, 1, 2, 3})) << "the refused run wrote";
  // --force with weights that do not load: nothing is deleted.
  EXPECT_EQ(wait_exit(start({"--out", out.string(), "--force", "--weights", (dir() / "missing.safetensors").string()},
                            log)),
            2)
      << slurp(log);
  EXPECT_TRUE(fs::exists(out / "ctl_iter_4.safetensors")) << slurp(log);
  EXPECT_EQ(train_iters(out / "metrics.jsonl"), (std::vector<int>{0, 1, 2, 3}));
  // --force: the earlier run's metrics and snapshots are gone, the new run's alone are there.
  EXPECT_EQ(wait_exit(start({"--out", out.string(), "--force", "solver.max_iter=2", "solver.snapshot=2"}, log)), 0)
      << slurp(log);
  EXPECT_EQ(train_iters(out / "metrics.jsonl"), (std::vector<int>{0, 1}));
  EXPECT_TRUE(fs::exists(out / "ctl_iter_2.safetensors"));
  EXPECT_FALSE(fs::exists(out / "ctl_iter_4.safetensors"));
}

TEST_F(RunControl, AResumeWritesIntoItsRunAndCutsTheMetricsBack) {
  const fs::path out = dir() / "run";
  const fs::path log = dir() / "log";
  ASSERT_EQ(wait_exit(start({"--out", out.string(), "solver.max_iter=6", "solver.snapshot=3"}, log)), 0) << slurp(log);
  // As after a crash between iterations 3 and 6: resume from the iteration-3 snapshot, no --out.
  ASSERT_EQ(wait_exit(start({"--resume", (out / "ctl_iter_3.solverstate").string(), "solver.max_iter=6",
                             "solver.snapshot=3"},
                            log)),
            0)
      << slurp(log);
  EXPECT_NE(slurp(log).find("run directory " + out.string()), std::string::npos) << slurp(log);
  EXPECT_FALSE(fs::exists(dir() / "runs")) << "wrote to runs/<name>";
  // Iterations 3..5 were cut and written again: each iteration once.
  EXPECT_EQ(train_iters(out / "metrics.jsonl"), (std::vector<int>{0, 1, 2, 3, 4, 5}));
  std::ifstream csv(out / "metrics.csv");
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header, "kind,iter,name,value");
  int loss_rows = 0;
  for (std::string l; std::getline(csv, l);) loss_rows += l.rfind("train,", 0) == 0 && l.find(",loss,") != std::string::npos;
  EXPECT_EQ(loss_rows, 6);
}

}  // namespace
