// Training progress for people and for log parsers (rank 0 only).
//
// On a terminal (stderr is a TTY) one line is redrawn in place with '\r': iteration / max,
// smoothed loss, lr, images/s, DropIn p, the last test accuracy and the ETA; it replaces the
// solver's per-display log lines. Log lines (test results, snapshots, warnings) are printed above
// it: attach_to_spdlog() routes the default logger through the progress line so that they never
// tear it. Without a TTY every display record becomes one plain log line (with the ETA).
// --caffe-log adds Caffe's own lines ("Iteration 100, loss = 0.3", "Test net output #0:
// accuracy = 0.98") with glog-style prefixes, so that Caffe's parse_log.py and similar scripts
// keep working on dropnet logs.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "optim/solver.h"

namespace dropnet {

struct ProgressOptions {
  int64_t max_iter = 0;
  int64_t start_iter = 0;     // resumed runs: where this process started
  bool tty = false;           // the updating line (otherwise plain log lines)
  bool caffe_log = false;     // Caffe-style lines for display and test records
  bool quiet = false;         // no per-display output (test results and milestones still appear)
  int width = 0;              // line width on the TTY (0: ask the terminal, else 120)
  std::FILE* out = stderr;    // where the progress line is drawn
  double min_redraw_s = 0.2;  // tick(): redraw at most this often
};

class Progress {
 public:
  explicit Progress(const ProgressOptions& opts);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // A record from Solver::on_record: "train" (display) or "test".
  void on_record(const TrainRecord& r);
  // Called every iteration (cheap): refreshes the iteration counter and ETA on the TTY line.
  void tick(int64_t iter);
  // Called after each TEST batch: the TTY line shows "testing done/total" until the test's record.
  void testing(int64_t done, int64_t total);
  // Milestones, always log lines: start (Caffe: "Solving <name>") and end ("Optimization Done.").
  void start(const std::string& net_name);
  void done(int64_t iter);
  // Ends the TTY line (newline) and detaches from spdlog; idempotent, called by the destructor.
  void finish();

  // Routes spdlog's default logger through this object: on the TTY the line is cleared before each
  // log message and redrawn after it. With caffe_log the logger gets glog-style prefixes
  // ("I1127 17:22:48.059123 4242 dropnet] ...") and the solver's own test-result lines are left
  // out (the Caffe lines replace them; two "Iteration" lines per test would misalign parse_log.sh).
  void attach_to_spdlog();
  // Whether a log message is dropped in caffe_log mode (the solver's "Iteration N, Testing net: ...").
  bool filtered(const std::string& message) const;

  // The current progress line (without '\r'), e.g. for tests.
  std::string status_line() const;
  // The Caffe-style lines of a record, without the glog prefix.
  static std::vector<std::string> caffe_lines(const TrainRecord& r);
  // Seconds remaining from the mean rate since the first record: "1h02m", "3m12s", "45s", "?".
  std::string eta() const;

  // Used by the spdlog sink.
  void suspend_line();
  void resume_line();

 private:
  using clock = std::chrono::steady_clock;
  std::string status_line_locked() const;
  std::string display_log_line(const TrainRecord& r) const;
  void draw_locked();
  void log(const std::string& line);

  ProgressOptions opts_;
  mutable std::mutex mu_;
  bool drawn_ = false, finished_ = false, attached_ = false;
  int64_t iter_ = 0;
  double loss_ = -1, lr_ = -1, ips_ = -1, test_acc_ = -1;
  double p_min_ = -1, p_max_ = -1;
  int num_dropin_ = 0;
  bool have_rate_ = false;
  clock::time_point t_first_, t_last_draw_;
  int64_t iter_first_ = 0;
  int64_t test_done_ = 0, test_total_ = 0;  // a test in progress (total 0: none)
  std::vector<std::shared_ptr<void>> replaced_sinks_;  // the logger's sinks before attach
};

// "1h02m", "3m12s", "45s".
std::string format_duration(double seconds);
// Whether stderr is a terminal.
bool stderr_is_tty();

}  // namespace dropnet
