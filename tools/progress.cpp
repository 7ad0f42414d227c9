#include "tools/progress.h"

#include <fmt/format.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace dropnet {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<int64_t>(std::llround(s));
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, static_cast<int>((t % 3600) / 60));
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, static_cast<int>(t % 60));
  return fmt::format("{}s", t);
}

bool stderr_is_tty() { return isatty(STDERR_FILENO) != 0; }

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

int terminal_width(std::FILE* f) {
  winsize ws{};
  if (ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) return ws.ws_col;
  return 120;
}

// Forwards to the logger's original sinks; clears the progress line first and redraws it after.
class ProgressSink : public spdlog::sinks::sink {
 public:
  ProgressSink(Progress* p, std::vector<spdlog::sink_ptr> inner) : p_(p), inner_(std::move(inner)) {}
  void log(const spdlog::details::log_msg& msg) override {
    if (p_->filtered(std::string(msg.payload.data(), msg.payload.size()))) return;
    p_->suspend_line();
    for (auto& s : inner_)
      if (s->should_log(msg.level)) {
        s->log(msg);
        s->flush();
      }
    p_->resume_line();
  }
  void flush() override {
    for (auto& s : inner_) s->flush();
  }
  void set_pattern(const std::string& pattern) override {
    for (auto& s : inner_) s->set_pattern(pattern);
  }
  void set_formatter(std::unique_ptr<spdlog::formatter> f) override {
    for (auto& s : inner_) s->set_formatter(f->clone());
  }

 private:
  Progress* p_;
  std::vector<spdlog::sink_ptr> inner_;
};

}  // namespace

Progress::Progress(const ProgressOptions& opts) : opts_(opts) {
  if (opts_.width <= 0) opts_.width = opts_.tty ? terminal_width(opts_.out) : 120;
  iter_ = opts_.start_iter;
}

Progress::~Progress() { finish(); }

bool Progress::filtered(const std::string& m) const {
  return opts_.caffe_log && m.rfind("Iteration ", 0) == 0 && m.find(", Testing net: ") != std::string::npos;
}

void Progress::attach_to_spdlog() {
  std::lock_guard<std::mutex> lock(mu_);
  if (attached_ || finished_) return;
  auto logger = spdlog::default_logger();
  if (!logger) return;
  if (opts_.caffe_log) logger->set_pattern("%L%m%d %H:%M:%S.%f %P dropnet] %v");
  if (!opts_.tty && !opts_.caffe_log) return;  // nothing to protect, nothing to filter
  std::vector<spdlog::sink_ptr>& sinks = logger->sinks();
  for (auto& s : sinks) replaced_sinks_.push_back(s);
  auto sink = std::make_shared<ProgressSink>(this, sinks);
  sinks.clear();
  sinks.push_back(sink);
  attached_ = true;
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (drawn_) {
    std::fputc('\n', opts_.out);
    std::fflush(opts_.out);
    drawn_ = false;
  }
  if (attached_) {
    auto logger = spdlog::default_logger();
    std::vector<spdlog::sink_ptr>& sinks = logger->sinks();
    sinks.clear();
    for (auto& s : replaced_sinks_) sinks.push_back(std::static_pointer_cast<spdlog::sinks::sink>(s));
    replaced_sinks_.clear();
    attached_ = false;
  }
}

void Progress::suspend_line() {
  std::lock_guard<std::mutex> lock(mu_);
  if (drawn_) {
    std::fputs("\r\x1b[K", opts_.out);  // carriage return, erase to the end of the line
    std::fflush(opts_.out);
  }
}

void Progress::resume_line() {
  std::lock_guard<std::mutex> lock(mu_);
  if (drawn_ && !finished_) draw_locked();
}

std::string Progress::eta() const {
  if (!have_rate_ || opts_.max_iter <= 0) return "?";
  const double secs = std::chrono::duration<double>(clock::now() - t_first_).count();
  const double done = static_cast<double>(iter_ - iter_first_);
  if (done <= 0 || secs <= 0) return "?";
  return format_duration(static_cast<double>(std::max<int64_t>(opts_.max_iter - iter_, 0)) * secs / done);
}

std::string Progress::status_line() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_line_locked();
}

std::string Progress::status_line_locked() const {
  std::string s = opts_.max_iter > 0 ? fmt::format("iter {}/{} {:3.0f}%", iter_, opts_.max_iter,
                                                   100.0 * static_cast<double>(iter_) /
                                                       static_cast<double>(opts_.max_iter))
                                     : fmt::format("iter {}", iter_);
  if (loss_ >= 0) s += fmt::format(" | loss {:.4f}", loss_);
  if (lr_ >= 0) s += fmt::format(" | lr {:.3g}", lr_);
  if (ips_ >= 0) s += fmt::format(" | {:.0f} img/s", ips_);
  if (num_dropin_ > 0)
    s += p_min_ == p_max_ ? fmt::format(" | p {:.2f}", p_min_) : fmt::format(" | p {:.2f}..{:.2f}", p_min_, p_max_);
  if (test_acc_ >= 0) s += fmt::format(" | test acc {:.4f}", test_acc_);
  if (test_total_ > 0) s += fmt::format(" | testing {}/{}", test_done_, test_total_);
  s += " | ETA " + eta();
  if (static_cast<int>(s.size()) > opts_.width - 1) s.resize(static_cast<size_t>(std::max(opts_.width - 1, 0)));
  return s;
}

void Progress::draw_locked() {
  const std::string line = status_line_locked();
  std::fprintf(opts_.out, "\r%s\x1b[K", line.c_str());
  std::fflush(opts_.out);
  drawn_ = true;
  t_last_draw_ = clock::now();
}

void Progress::log(const std::string& line) { spdlog::info("{}", line); }

void Progress::tick(int64_t iter) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!have_rate_) {
    have_rate_ = true;
    t_first_ = clock::now();
    iter_first_ = iter;
  }
  iter_ = iter;
  if (!opts_.tty || opts_.quiet || finished_) return;
  if (drawn_ && std::chrono::duration<double>(clock::now() - t_last_draw_).count() < opts_.min_redraw_s) return;
  draw_locked();
}

void Progress::testing(int64_t done, int64_t total) {
  std::lock_guard<std::mutex> lock(mu_);
  test_done_ = done;
  test_total_ = total;
  if (!opts_.tty || opts_.quiet || finished_) return;
  if (drawn_ && done < total &&
      std::chrono::duration<double>(clock::now() - t_last_draw_).count() < opts_.min_redraw_s)
    return;
  draw_locked();
}

std::vector<std::string> Progress::caffe_lines(const TrainRecord& r) {
  std::vector<std::string> out;
  if (r.kind == "test") {
    out.push_back(fmt::format("Iteration {}, Testing net (#0)", r.iter));
    int k = 0;
    for (const auto& kv : r.values) out.push_back(fmt::format("    Test net output #{}: {} = {:.6g}", k++, kv.first, kv.second));
    return out;
  }
  double loss = 0, lr = 0;
  for (const auto& kv : r.values) {
    if (kv.first == "loss") loss = kv.second;
    if (kv.first == "lr") lr = kv.second;
  }
  out.push_back(fmt::format("Iteration {}, loss = {:.6g}", r.iter, loss));
  out.push_back(fmt::format("    Train net output #0: loss = {:.6g} (* 1 = {:.6g} loss)", loss, loss));
  out.push_back(fmt::format("Iteration {}, lr = {:.6g}", r.iter, lr));
  return out;
}

std::string Progress::display_log_line(const TrainRecord& r) const {
  double loss = 0, lr = 0, ips = 0;
  std::string extra;
  for (const auto& kv : r.values) {
    if (kv.first == "loss") loss = kv.second;
    else if (kv.first == "lr") lr = kv.second;
    else if (kv.first == "images_per_s") ips = kv.second;
  }
  std::string s = fmt::format("Iteration {}, loss = {:.5g}, lr = {:.6g}, {:.0f} img/s", r.iter, loss, lr, ips);
  if (num_dropin_ > 0)
    s += p_min_ == p_max_ ? fmt::format(", dropin p = {:.4g}", p_min_)
                          : fmt::format(", dropin p = {:.4g}..{:.4g}", p_min_, p_max_);
  if (opts_.max_iter > 0)
    s += fmt::format(" ({:.0f}% of {}, ETA {})", 100.0 * static_cast<double>(r.iter) / static_cast<double>(opts_.max_iter),
                     opts_.max_iter, eta());
  return s;
}

void Progress::on_record(const TrainRecord& r) {
  std::vector<std::string> lines;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (r.kind == "test") {
      test_total_ = 0;
      for (const auto& kv : r.values)
        if (kv.first == "accuracy" || (test_acc_ < 0 && kv.first.find("accuracy") != std::string::npos))
          test_acc_ = kv.second;
      // The solver logs the test results itself; Caffe's format comes in addition.
      if (opts_.caffe_log) lines = caffe_lines(r);
      if (opts_.tty && !opts_.quiet && drawn_ && !finished_) draw_locked();
    } else {
      if (!have_rate_) {
        have_rate_ = true;
        t_first_ = clock::now();
        iter_first_ = r.iter;
      }
      iter_ = std::max(iter_, r.iter);
      num_dropin_ = 0;
      for (const auto& kv : r.values) {
        if (kv.first == "loss") loss_ = kv.second;
        else if (kv.first == "lr") lr_ = kv.second;
        else if (kv.first == "images_per_s") ips_ = kv.second;
        else if (ends_with(kv.first, ".p")) {
          p_min_ = num_dropin_ == 0 ? kv.second : std::min(p_min_, kv.second);
          p_max_ = num_dropin_ == 0 ? kv.second : std::max(p_max_, kv.second);
          ++num_dropin_;
        }
      }
      if (!opts_.quiet) {
        if (opts_.caffe_log) lines = caffe_lines(r);
        else if (!opts_.tty) lines.push_back(display_log_line(r));
        if (opts_.tty && !finished_) draw_locked();
      }
    }
  }
  for (const auto& l : lines) log(l);
}

void Progress::start(const std::string& net_name) {
  if (opts_.caffe_log) log("Solving " + net_name);
}

void Progress::done(int64_t iter) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    iter_ = iter;
    if (opts_.tty && drawn_ && !finished_) draw_locked();
  }
  if (opts_.caffe_log) log("Optimization Done.");
}

}  // namespace dropnet
