#include "dist/communicator.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "dist/mpi_comm.h"
#include "dist/nccl_comm.h"

namespace dropnet::dist {

void Communicator::begin_backward(float* arena, int64_t n, Device dev, int64_t bucket_bytes) {
  GradientReducer::begin_backward(arena, n, dev, bucket_bytes);
  DN_CHECK(!active_, "begin_backward while a reduction is in progress (finish() was not called)");
  DN_CHECK(bucket_bytes > 0, "bucket size {} bytes", bucket_bytes);
  bucket_floats_ = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(sizeof(float)));
  unlaunched_hi_ = ready_lo_ = n;
  first_layer_ = last_layer_ = -1;
  stats_ = ReductionStats{};
  active_ = true;
}

void Communicator::launch(int64_t lo, int64_t hi) {
  if (hi <= lo) return;
  const double mb = static_cast<double>(hi - lo) * sizeof(float) / (1024.0 * 1024.0);
  std::string layers = first_layer_ < 0 ? std::string("the remaining parameters")
                                        : fmt::format("layers {}..{}", last_layer_, first_layer_);
  std::string what =
      describe(fmt::format("all-reduce of gradient bucket {} ({}, {:.3g} MB)", stats_.buckets, layers, mb));
  start_bucket(arena_ + lo, hi - lo, arena_device_, what);
  ++stats_.buckets;
  stats_.bytes += (hi - lo) * static_cast<int64_t>(sizeof(float));
  first_layer_ = last_layer_ = -1;
}

void Communicator::on_layer_grads_ready(int layer, float* begin, int64_t n) {
  DN_CHECK(active_, "on_layer_grads_ready outside begin_backward/finish");
  const int64_t off = begin - arena_;
  // Backward order over a layer-ordered arena: every ready range lies below the previous ones.
  DN_CHECK(off >= 0 && n >= 0 && off + n <= ready_lo_,
           "layer {}: gradient range [{}, {}) is not below the ranges already reduced (from {})", layer, off, off + n,
           ready_lo_);
  ready_lo_ = off;
  if (first_layer_ < 0) first_layer_ = layer;
  last_layer_ = layer;
  if (unlaunched_hi_ - ready_lo_ >= bucket_floats_) {
    launch(ready_lo_, unlaunched_hi_);
    unlaunched_hi_ = ready_lo_;
  }
}

void Communicator::finish() {
  DN_CHECK(active_, "finish() without begin_backward");
  active_ = false;
  // The rest, down to the start of the arena (layers below the last bucket, and any padding).
  launch(0, unlaunched_hi_);
  unlaunched_hi_ = 0;
  const auto t0 = std::chrono::steady_clock::now();
  wait_buckets(&stats_);
  const auto t1 = std::chrono::steady_clock::now();
  stats_.wait_seconds = std::chrono::duration<double>(t1 - t0).count();
  stats_.finish_begin = std::chrono::duration<double>(t0.time_since_epoch()).count();
  stats_.finish_end = std::chrono::duration<double>(t1.time_since_epoch()).count();
}

bool launched_under_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE"})
    if (std::getenv(v) != nullptr) return true;
  return false;
}

namespace {
std::atomic<const std::atomic<int>*> g_interrupt{nullptr};
}  // namespace

void set_interrupt_flag(const std::atomic<int>* flag) { g_interrupt = flag; }

int interrupt_signal() {
  const std::atomic<int>* f = g_interrupt.load();
  return f ? f->load() : 0;
}

int launcher_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK"})
    if (const char* s = std::getenv(v)) return std::atoi(s);
  return 0;
}

double parse_timeout_seconds(const std::string& what, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !(v > 0) || !std::isfinite(v))
    input_error("{} expects a number of seconds > 0, got '{}'", what, text);
  return v;
}

bool mpi_compiled() { return DROPNET_HAVE_MPI != 0; }
bool nccl_compiled() { return DROPNET_HAVE_NCCL != 0; }

std::unique_ptr<Communicator> make_mpi_communicator(Device dev, const CommOptions& opts) {
#if DROPNET_HAVE_MPI
  return std::make_unique<MpiComm>(dev, opts);
#else
  (void)dev;
  (void)opts;
  input_error("this dropnet was built without MPI (DROPNET_MPI=OFF or MPI not found): it cannot run under an MPI "
              "launcher; rebuild with MPI (Debian: libopenmpi-dev) or run a single process");
#endif
}

std::unique_ptr<Communicator> make_nccl_communicator(Device dev, const CommOptions& opts) {
#if DROPNET_HAVE_NCCL
  if (!dev.is_cuda()) input_error("NCCL needs a CUDA device, got {}", dev.str());
  std::unique_ptr<MpiComm> boot;
  if (launched_under_mpi()) boot = std::make_unique<MpiComm>(Device::cpu(), opts);
  return make_nccl_comm(dev, opts, std::move(boot));
#else
  (void)dev;
  (void)opts;
  input_error("this dropnet was built without NCCL (DROPNET_NCCL=OFF, or CUDA/MPI/NCCL not found)");
#endif
}

std::unique_ptr<Communicator> make_communicator(Device dev, const CommOptions& opts) {
  if (!(opts.timeout_s > 0)) input_error("communication timeout must be > 0 s, got {}", opts.timeout_s);
  if (!launched_under_mpi()) return std::make_unique<LocalComm>(dev, opts);
  if (dev.is_cuda()) {
    if (nccl_compiled()) return make_nccl_communicator(dev, opts);
    spdlog::warn("built without NCCL: gradients of CUDA tensors are all-reduced with MPI through host memory");
  }
  return make_mpi_communicator(dev, opts);
}

namespace {
std::atomic<uint64_t> g_resumes{0};
std::atomic<int64_t> g_resume_ns{0};  // CLOCK_MONOTONIC (= steady_clock on Linux) of the last SIGCONT
std::atomic<double> g_armed_stop_s{0.0};

int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void on_sigcont(int) {
  g_resume_ns.store(monotonic_ns());
  g_resumes.fetch_add(1);
}
}  // namespace

void watch_for_resume() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction old_action {};
    if (sigaction(SIGCONT, nullptr, &old_action) != 0) return;
    // A handler someone else installed stays; only the default action is replaced.
    if (old_action.sa_handler != SIG_DFL || (old_action.sa_flags & SA_SIGINFO)) return;
    struct sigaction sa {};
    sa.sa_handler = on_sigcont;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGCONT, &sa, nullptr);
  });
}

uint64_t resume_count() { return g_resumes.load(); }

double seconds_since_resume() {
  if (g_resumes.load() == 0) return -1.0;
  return static_cast<double>(monotonic_ns() - g_resume_ns.load()) * 1e-9;
}

void inject_fault_if_requested(int rank, int64_t iter) {
  static const char* spec = std::getenv("DROPNET_TEST_FAULT");
  if (spec == nullptr || *spec == '\0') return;
  char what[16] = {0};
  int fault_rank = -1;
  long long fault_iter = -1;
  double seconds = 0.0;
  const int fields = std::sscanf(spec, "%15[a-z]:%d:%lld:%lf", what, &fault_rank, &fault_iter, &seconds);
  const std::string kind = what;
  if (!((fields == 3 && (kind == "kill" || kind == "stall")) || (fields == 4 && kind == "stop" && seconds > 0)))
    input_error("DROPNET_TEST_FAULT='{}': expected kill:RANK:ITER, stall:RANK:ITER or stop:RANK:ITER:SECONDS", spec);
  if (rank != fault_rank || iter != fault_iter) return;
  std::fprintf(stderr, "dropnet: rank %d: DROPNET_TEST_FAULT: %s at iteration %lld\n", rank, what, fault_iter);
  std::fflush(stderr);
  if (kind == "kill") std::raise(SIGKILL);
  if (kind == "stop") {
    g_armed_stop_s.store(seconds);
    return;
  }
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

void stop_here_if_armed() {
  const double seconds = g_armed_stop_s.exchange(0.0);
  if (!(seconds > 0)) return;
  const pid_t self = getpid();
  const pid_t child = fork();
  if (child == 0) {  // only async-signal-safe calls here
    const timespec t{static_cast<time_t>(seconds), static_cast<long>((seconds - static_cast<double>(static_cast<time_t>(seconds))) * 1e9)};
    nanosleep(&t, nullptr);
    kill(self, SIGCONT);
    _exit(0);
  }
  if (child < 0) internal_error(__FILE__, __LINE__, "DROPNET_TEST_FAULT stop: fork failed");
  std::fprintf(stderr, "dropnet: DROPNET_TEST_FAULT: stopping the process for %.3g s\n", seconds);
  std::fflush(stderr);
  kill(self, SIGSTOP);
  waitpid(child, nullptr, 0);
}

}  // namespace dropnet::dist
