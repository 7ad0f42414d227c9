// Kill test: a child process trains with a snapshot after every iteration (resuming from the
// directory's `latest` when there is one) and is SIGKILLed at random moments, many of them in the
// middle of a snapshot write. After every kill a fresh process must restore the newest snapshot
// (`latest` -> a complete, checksummed pair; never a temporary file), and the iteration it names
// never goes backwards. The parent never runs a solver itself, so each child starts clean
// (OpenMP and threads do not cross fork()). DROPNET_KILL_TRIALS overrides the trial count (30).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

#include "core/error.h"
#include "core/fileio.h"
#include "core/safetensors.h"
#include "optim/snapshot.h"
#include "optim/solver.h"
#include "tests/testing/solvers.h"

namespace dropnet {
namespace {

namespace fs = std::filesystem;

// Wide enough that a snapshot write (two files, fsyncs, renames) takes a noticeable time.
const char* kYaml = R"(name: killnet
data:
  train: {source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 64, batch_size: 4, shuffle: true,
          scale: 0.00390625}
solver: {base_lr: 0.01, momentum: 0.9, lr_policy: inv, gamma: 0.01, power: 0.75, max_iter: 1000000, display: 0,
         average_loss: 3, snapshot: 1}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 8, kernel: 3, weight_filler: {type: xavier}}
  - {name: relu1, type: relu, bottom: conv1, top: relu1}
  - {name: fc1, type: fc, bottom: relu1, top: fc1, num_output: 256, weight_filler: {type: xavier}}
  - {name: relu2, type: relu, bottom: fc1, top: fc1r}
  - {name: fc2, type: fc, bottom: fc1r, top: fc2, num_output: 4, weight_filler: {type: xavier}}
  - {name: loss, type: softmax_loss, bottom: [fc2, label], top: loss}
)";

std::unique_ptr<Solver> make_solver() { return testing::quiet_solver(kYaml, "killnet.yaml", 5); }

// Child bodies: never return; exit codes 0 ok, 3 input error, 4 other error.
[[noreturn]] void child_exit(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  ::_exit(code);
}

[[noreturn]] void train_child(const std::string& dir) {
  try {
    auto s = make_solver();
    if (fs::exists(fs::path(dir) / "latest")) restore_snapshot(*s, dir);
    s->on_snapshot = [&](int64_t) { save_snapshot(*s, dir, "kill", 3); };
    s->solve();
    child_exit(0);
  } catch (const Error& e) {
    std::fprintf(stderr, "train child: %s\n", e.what());
    child_exit(e.kind() == ErrorKind::Input ? 3 : 4);
  } catch (...) {
    child_exit(4);
  }
}

// Restores the newest snapshot; writes its iteration to `out`.
[[noreturn]] void verify_child(const std::string& dir, const std::string& out) {
  try {
    auto s = make_solver();
    restore_snapshot(*s, dir);
    write_file_atomic(out, std::to_string(s->iter()));
    child_exit(0);
  } catch (const Error& e) {
    std::fprintf(stderr, "verify child: %s\n", e.what());
    child_exit(e.kind() == ErrorKind::Input ? 3 : 4);
  } catch (...) {
    child_exit(4);
  }
}

int wait_exit_code(pid_t pid, bool* signaled = nullptr) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (signaled) *signaled = WIFSIGNALED(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

TEST(SnapshotKill, NewestSnapshotSurvivesSigkill) {
  const char* env = std::getenv("DROPNET_KILL_TRIALS");
  const int trials = env && *env ? std::max(1, std::atoi(env)) : 30;
  const fs::path dir = fs::temp_directory_path() / fmt::format("dropnet_fuzz_kill_{}", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string iter_file = (dir.parent_path() / fmt::format("dropnet_fuzz_kill_{}.iter", ::getpid())).string();
  std::mt19937 rng(4242);

  int killed = 0, loaded = 0, no_snapshot_yet = 0, mid_write = 0, failures = 0, crashes = 0;
  int64_t last_iter = -1;
  for (int t = 0; t < trials; ++t) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) train_child(dir.string());
    // Startup (building the solver) takes tens of ms; kill anywhere from before the first
    // snapshot to well into training.
    const int delay_us = std::uniform_int_distribution<int>(2000, 250000)(rng);
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    ::kill(pid, SIGKILL);
    bool signaled = false;
    const int code = wait_exit_code(pid, &signaled);
    if (signaled && code == -SIGKILL) {
      ++killed;
    } else {
      ADD_FAILURE() << "trial " << t << ": the training child exited with " << code << " before the kill";
      ++failures;
    }
    int temps = 0;
    for (const auto& e : fs::directory_iterator(dir)) temps += is_temp_file_name(e.path().filename().string());
    if (temps > 0) ++mid_write;
    if (!fs::exists(dir / "latest")) {
      EXPECT_EQ(last_iter, -1) << "trial " << t << ": `latest` disappeared";
      ++no_snapshot_yet;
      continue;
    }
    const std::string latest = read_file((dir / "latest").string());
    EXPECT_FALSE(is_temp_file_name(latest)) << latest;
    pid_t v = ::fork();
    ASSERT_GE(v, 0);
    if (v == 0) verify_child(dir.string(), iter_file);
    bool vsig = false;
    const int vcode = wait_exit_code(v, &vsig);
    if (vsig) ++crashes;
    if (vcode != 0) {
      ADD_FAILURE() << "trial " << t << ": the newest snapshot (" << latest << ") does not load, exit code " << vcode;
      ++failures;
      continue;
    }
    ++loaded;
    const int64_t it = std::stoll(read_file(iter_file));
    EXPECT_GE(it, last_iter) << "trial " << t << ": the newest snapshot went backwards";
    last_iter = it;
  }
  fmt::print("snapshot kill test: {} trials, {} SIGKILLed ({} left a temporary file, i.e. died mid-write), "
             "{} before any snapshot, newest snapshot restored after {} kills, failures {}, crashes {}, "
             "final iteration {}\n",
             trials, killed, mid_write, no_snapshot_yet, loaded, failures, crashes, last_iter);
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(crashes, 0);
  EXPECT_GT(loaded, trials / 2) << "too few kills landed after a snapshot; the test proves little";
  EXPECT_GT(mid_write, 0) << "no kill landed during a snapshot write";
  fs::remove_all(dir);
  fs::remove(iter_file);
}

}  // namespace
}  // namespace dropnet
