#include "dist/mpi_comm.h"

#if DROPNET_HAVE_MPI

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"

namespace dropnet::dist {

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_failed{false};
bool g_thread_multiple = false;
// With MPI_THREAD_SERIALIZED only (not MULTIPLE), communication threads of different
// communicators take turns through this lock.
std::mutex g_mpi_mutex;

struct MpiLock {
  std::unique_lock<std::mutex> lock;
  MpiLock() {
    if (!g_thread_multiple) lock = std::unique_lock<std::mutex>(g_mpi_mutex);
  }
};

std::string mpi_error_text(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) return fmt::format("MPI error {}", rc);
  return std::string(buf, static_cast<size_t>(len));
}

#define DN_MPI_CHECK(stmt)                                                                                   \
  do {                                                                                                       \
    int dn_rc_ = (stmt);                                                                                     \
    if (dn_rc_ != MPI_SUCCESS)                                                                               \
      ::dropnet::internal_error(__FILE__, __LINE__, std::string(#stmt " failed: ") + mpi_error_text(dn_rc_)); \
  } while (0)

// A process that saw a communication failure must not call MPI_Finalize: it waits for the
// missing rank. It exits with its error status instead, and the launcher ends the job.
void finalize_at_exit() {
  if (g_failed.load()) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void ensure_mpi_initialized() {
  static std::mutex mu;
  std::lock_guard<std::mutex> lk(mu);
  int initialized = 0, provided = 0;
  DN_MPI_CHECK(MPI_Initialized(&initialized));
  if (!initialized) {
    DN_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
    std::atexit(finalize_at_exit);
  } else {
    DN_MPI_CHECK(MPI_Query_thread(&provided));
  }
  if (provided < MPI_THREAD_SERIALIZED)
    input_error("the MPI library provides only thread level {} (MPI_THREAD_SERIALIZED = {} is needed: a "
                "communication thread makes the MPI calls)", provided, MPI_THREAD_SERIALIZED);
  g_thread_multiple = provided >= MPI_THREAD_MULTIPLE;
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}

constexpr int64_t kMaxChunk = int64_t{1} << 30;  // elements per MPI call (counts are int)
constexpr int kDiagTag = 0x0D1A;

struct Op {
  std::string what;
  int64_t seq = 0;
  std::function<int(MPI_Comm, MPI_Request*)> post;  // a nonblocking collective
  std::function<void()> task;                       // or any other work for the thread
  bool blocking = true;                             // the caller waits for it right away
  bool done = false, ok = false;
  std::string error;
  Clock::time_point t_start, t_end;
};
using OpPtr = std::shared_ptr<Op>;

}  // namespace

struct MpiComm::Impl {
  MPI_Comm comm = MPI_COMM_NULL, diag_comm = MPI_COMM_NULL;
  int rank = 0, world = 1, local_rank = 0, local_size = 1;
  double timeout_s = 120.0;
  int64_t next_seq = 0;

  std::thread worker;
  std::mutex mu;
  std::condition_variable work_cv, done_cv;
  std::deque<OpPtr> queue;
  bool stop = false;
  std::atomic<int> waiters{0};  // callers blocked in wait()
  std::string failure;  // the first failure; every later operation reports it

  // Buckets of the current reduction and, for CUDA gradients, their host mirror.
  std::vector<OpPtr> buckets;
  std::vector<float> mirror;
  struct Staged {
    float* dev;
    float* host;
    int64_t n;
  };
  std::vector<Staged> staged;
  Device staged_device;

  // Diagnosis messages: {rank, collective seq}; must outlive the nonblocking sends.
  int64_t diag_out[2] = {0, 0};
  std::vector<int64_t> diag_in;

  double diag_grace_s() const { return std::clamp(0.25 * timeout_s, 1.0, 10.0); }

  void loop();
  void run_collective(Op& op);
  std::string diagnosis(const std::string& what, int64_t seq, const std::string& problem);
  OpPtr submit(std::string what, std::function<int(MPI_Comm, MPI_Request*)> post, bool blocking = true);
  void wait(const OpPtr& op);
};

void MpiComm::Impl::loop() {
  for (;;) {
    OpPtr op;
    {
      std::unique_lock<std::mutex> lk(mu);
      work_cv.wait(lk, [&] { return stop || !queue.empty(); });
      if (queue.empty()) return;
      op = queue.front();
      queue.pop_front();
      if (!failure.empty()) {
        op->error = failure;
        op->done = true;
        done_cv.notify_all();
        continue;
      }
    }
    op->t_start = Clock::now();
    if (op->task) {
      op->task();
      op->ok = true;
    } else {
      run_collective(*op);
    }
    op->t_end = Clock::now();
    {
      std::lock_guard<std::mutex> lk(mu);
      op->done = true;
      if (!op->ok && failure.empty()) failure = op->error;
    }
    done_cv.notify_all();
  }
}

// Posts the collective and polls it against the deadline. For a blocking collective, or once the
// caller waits in wait(), the thread spins (yielding): nothing else needs the core and latency
// counts. While the caller computes (a gradient bucket overlapping backward) it sleeps between
// polls, 20 us growing to 200 us, so as to leave the cores to that computation.
void MpiComm::Impl::run_collective(Op& op) {
  MPI_Request req = MPI_REQUEST_NULL;
  int rc;
  {
    MpiLock l;
    rc = op.post(comm, &req);
  }
  if (rc != MPI_SUCCESS) {
    op.error = diagnosis(op.what, op.seq, "failed: " + mpi_error_text(rc));
    return;
  }
  auto deadline = op.t_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  bool interrupt_reported = false;
  uint64_t resumes = resume_count();
  Clock::time_point last_poll = Clock::now();
  for (int polls = 0;; ++polls) {
    if (polls == 1) stop_here_if_armed();  // tests only (DROPNET_TEST_FAULT=stop:...)
    int flag = 0;
    {
      MpiLock l;
      rc = MPI_Test(&req, &flag, MPI_STATUS_IGNORE);
    }
    const Clock::time_point now = Clock::now();
    if (resume_count() != resumes) {
      // Stopped (SIGSTOP/SIGTSTP/a debugger) since the last poll, a few microseconds before: the
      // time it spent stopped is not the other ranks' delay and does not count against the timeout.
      // (A launcher may forward a SIGCONT to ranks that were never stopped: only a real gap is news.)
      resumes = resume_count();
      const auto stopped = now - last_poll;
      deadline += stopped;
      if (stopped > std::chrono::milliseconds(100)) {
        std::fprintf(stderr,
                     "dropnet: rank %d: this process was stopped for about %.3g s and resumed (SIGCONT) while "
                     "waiting in %s (collective #%lld); that time does not count against its %g s timeout, but the "
                     "other ranks may have given up on it meanwhile\n",
                     rank, std::chrono::duration<double>(stopped).count(), op.what.c_str(),
                     static_cast<long long>(op.seq), timeout_s);
        std::fflush(stderr);
      }
    }
    last_poll = now;
    if (rc != MPI_SUCCESS) {
      op.error = diagnosis(op.what, op.seq, "failed: " + mpi_error_text(rc));
      return;
    }
    if (flag) {
      op.ok = true;
      return;
    }
    if (!interrupt_reported && interrupt_signal() != 0) {
      interrupt_reported = true;
      std::fprintf(stderr, "dropnet: rank %d: signal %d while waiting %.3g s in %s (collective #%lld)\n", rank,
                   interrupt_signal(), std::chrono::duration<double>(Clock::now() - op.t_start).count(),
                   op.what.c_str(), static_cast<long long>(op.seq));
      std::fflush(stderr);
    }
    if (now > deadline) {
      op.error = diagnosis(op.what, op.seq, fmt::format("did not complete within {:g} s", timeout_s));
      return;
    }
    if (op.blocking || waiters.load(std::memory_order_relaxed) > 0) {
      std::this_thread::yield();
      polls = 0;
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(std::min(200, 20 + 10 * polls)));
    }
  }
}

// Every rank that times out sends {rank, seq} to all others and listens for a grace period.
// Ranks stuck in the same collective answer with the same seq; a dead rank, or one stalled
// outside communication, does not answer at all.
std::string MpiComm::Impl::diagnosis(const std::string& what, int64_t seq, const std::string& problem) {
  g_failed = true;
  std::string head = fmt::format("rank {}: {} (collective #{}) {}", rank, what, seq, problem);
  std::fprintf(stderr, "dropnet: %s; asking the other ranks where they are\n", head.c_str());
  std::fflush(stderr);
  if (world == 1) return head;
  diag_out[0] = rank;
  diag_out[1] = seq;
  diag_in.assign(static_cast<size_t>(2 * (world - 1)), -1);
  std::vector<MPI_Request> recvs(static_cast<size_t>(world - 1), MPI_REQUEST_NULL);
  {
    MpiLock l;
    for (int r = 0; r < world; ++r) {
      if (r == rank) continue;
      MPI_Request s;
      if (MPI_Isend(diag_out, 2, MPI_INT64_T, r, kDiagTag, diag_comm, &s) == MPI_SUCCESS) MPI_Request_free(&s);
    }
    for (int i = 0; i < world - 1; ++i)
      MPI_Irecv(&diag_in[static_cast<size_t>(2 * i)], 2, MPI_INT64_T, MPI_ANY_SOURCE, kDiagTag, diag_comm,
                &recvs[static_cast<size_t>(i)]);
  }
  const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(diag_grace_s()));
  int received = 0;
  while (received < world - 1 && Clock::now() < until) {
    for (auto& r : recvs) {
      if (r == MPI_REQUEST_NULL) continue;
      int flag = 0;
      MpiLock l;
      if (MPI_Test(&r, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) r = MPI_REQUEST_NULL;
      if (flag) ++received;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::vector<int64_t> seen(static_cast<size_t>(world), -1);
  for (int i = 0; i < world - 1; ++i) {
    int64_t r = diag_in[static_cast<size_t>(2 * i)], s = diag_in[static_cast<size_t>(2 * i + 1)];
    if (r >= 0 && r < world) seen[static_cast<size_t>(r)] = s;
  }
  std::vector<int> silent, same;
  std::string other;
  for (int r = 0; r < world; ++r) {
    if (r == rank) continue;
    const int64_t s = seen[static_cast<size_t>(r)];
    if (s < 0)
      silent.push_back(r);
    else if (s == seq)
      same.push_back(r);
    else
      other += fmt::format("; rank {} waits in collective #{} instead ({}: the ranks issued different collectives, or "
                           "{} was stopped or stalled while the collectives completed unevenly)",
                           r, s, s < seq ? "behind this rank" : "ahead of this rank",
                           s < seq ? fmt::format("rank {}", r) : std::string("this rank"));
  }
  std::string msg = head;
  if (!silent.empty())
    msg += fmt::format("; no answer from rank{} {} within {:g} s (dead, or stalled outside communication)",
                       silent.size() > 1 ? "s" : "", rank_list(silent), diag_grace_s());
  if (!same.empty())
    msg += fmt::format("; rank{} {} wait{} in the same collective", same.size() > 1 ? "s" : "", rank_list(same),
                       same.size() > 1 ? "" : "s");
  msg += other;
  if (resume_count() > 0)
    msg += fmt::format("; this rank got a SIGCONT {:.3g} s ago (it was stopped by SIGSTOP, SIGTSTP or a debugger, or "
                       "the launcher passed the signal on): if it was stopped, the other ranks may have timed out "
                       "waiting for it",
                       seconds_since_resume());
  return msg;
}

OpPtr MpiComm::Impl::submit(std::string what, std::function<int(MPI_Comm, MPI_Request*)> post, bool blocking) {
  auto op = std::make_shared<Op>();
  op->blocking = blocking;
  op->what = std::move(what);
  op->post = std::move(post);
  {
    std::lock_guard<std::mutex> lk(mu);
    op->seq = next_seq++;
    queue.push_back(op);
  }
  work_cv.notify_one();
  return op;
}

void MpiComm::Impl::wait(const OpPtr& op) {
  // The thread enforces the deadline; this one only guards against the thread itself hanging.
  const auto limit = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(timeout_s + diag_grace_s() + 30.0));
  std::unique_lock<std::mutex> lk(mu);
  ++waiters;
  struct Leave {
    std::atomic<int>& w;
    ~Leave() { --w; }
  } leave{waiters};
  while (!op->done) {
    if (done_cv.wait_until(lk, limit) == std::cv_status::timeout && !op->done) {
      g_failed = true;
      internal_error(__FILE__, __LINE__,
                     fmt::format("rank {}: {} (collective #{}): the communication thread did not return within {:g} s",
                                 rank, op->what, op->seq, timeout_s + diag_grace_s() + 30.0));
    }
  }
  if (!op->ok) {
    g_failed = true;
    throw Error(ErrorKind::Internal, op->error);
  }
}

MpiComm::MpiComm(Device dev, const CommOptions& opts) : Communicator(dev, opts), impl_(std::make_unique<Impl>()) {
  if (!(opts.timeout_s > 0)) input_error("communication timeout must be > 0 s, got {}", opts.timeout_s);
  ensure_mpi_initialized();
  Impl& m = *impl_;
  m.timeout_s = opts.timeout_s;
  watch_for_resume();
  {
    MpiLock l;
    DN_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &m.comm));
    DN_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &m.diag_comm));
    DN_MPI_CHECK(MPI_Comm_set_errhandler(m.comm, MPI_ERRORS_RETURN));
    DN_MPI_CHECK(MPI_Comm_set_errhandler(m.diag_comm, MPI_ERRORS_RETURN));
    DN_MPI_CHECK(MPI_Comm_rank(m.comm, &m.rank));
    DN_MPI_CHECK(MPI_Comm_size(m.comm, &m.world));
    MPI_Comm node = MPI_COMM_NULL;
    DN_MPI_CHECK(MPI_Comm_split_type(m.comm, MPI_COMM_TYPE_SHARED, m.rank, MPI_INFO_NULL, &node));
    DN_MPI_CHECK(MPI_Comm_rank(node, &m.local_rank));
    DN_MPI_CHECK(MPI_Comm_size(node, &m.local_size));
    DN_MPI_CHECK(MPI_Comm_free(&node));
  }
  m.worker = std::thread([this] { impl_->loop(); });
}

MpiComm::~MpiComm() {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lk(m.mu);
    m.stop = true;
  }
  m.work_cv.notify_all();
  if (m.worker.joinable()) m.worker.join();
  if (!g_failed.load()) {
    MpiLock l;
    MPI_Comm_free(&m.comm);
    MPI_Comm_free(&m.diag_comm);
  }
}

int MpiComm::rank() const { return impl_->rank; }
int MpiComm::world() const { return impl_->world; }
int MpiComm::local_rank() const { return impl_->local_rank; }
int MpiComm::local_size() const { return impl_->local_size; }
bool MpiComm::process_failed() { return g_failed.load(); }
void MpiComm::mark_process_failed() { g_failed = true; }

namespace {

// A float collective on `n` values of `data` (host or CUDA memory, staged through the host), in
// chunks of at most kMaxChunk (MPI counts are int); `post(ptr, count, comm, request)` posts one.
template <typename ImplT, typename Post>
void host_float_collective(ImplT& m, float* data, int64_t n, Device dev, const std::string& what, Post post) {
  if (n <= 0) return;
  std::vector<float> staging;
  float* host = data;
  if (dev.is_cuda()) {
    staging.resize(static_cast<size_t>(n));
    device_copy(staging.data(), Device::cpu(), data, dev, static_cast<size_t>(n) * sizeof(float));
    host = staging.data();
  }
  std::vector<OpPtr> ops;
  for (int64_t off = 0; off < n; off += kMaxChunk) {
    const int cnt = static_cast<int>(std::min(kMaxChunk, n - off));
    float* p = host + off;
    ops.push_back(m.submit(what, [p, cnt, post](MPI_Comm c, MPI_Request* r) { return post(p, cnt, c, r); }));
  }
  for (auto& op : ops) m.wait(op);
  if (dev.is_cuda()) device_copy(data, dev, staging.data(), Device::cpu(), static_cast<size_t>(n) * sizeof(float));
}

}  // namespace

void MpiComm::allreduce_sum(float* data, int64_t n, Device dev) {
  host_float_collective(*impl_, data, n, dev, describe(fmt::format("all-reduce of {} floats", n)),
                        [](float* p, int cnt, MPI_Comm c, MPI_Request* r) {
                          return MPI_Iallreduce(MPI_IN_PLACE, p, cnt, MPI_FLOAT, MPI_SUM, c, r);
                        });
}

void MpiComm::allreduce_sum_double(double* data, int64_t n) {
  if (n <= 0) return;
  DN_CHECK(n <= kMaxChunk, "{} doubles in one all-reduce", n);
  const int cnt = static_cast<int>(n);
  impl_->wait(impl_->submit(describe(fmt::format("all-reduce of {} doubles", n)), [data, cnt](MPI_Comm c, MPI_Request* r) {
    return MPI_Iallreduce(MPI_IN_PLACE, data, cnt, MPI_DOUBLE, MPI_SUM, c, r);
  }));
}

void MpiComm::broadcast(float* data, int64_t n, Device dev) {
  host_float_collective(*impl_, data, n, dev, describe(fmt::format("broadcast of {} floats from rank 0", n)),
                        [](float* p, int cnt, MPI_Comm c, MPI_Request* r) {
                          return MPI_Ibcast(p, cnt, MPI_FLOAT, 0, c, r);
                        });
}

void MpiComm::broadcast_bytes(void* data, int64_t bytes, const std::string& what) {
  DN_CHECK(bytes >= 0 && bytes <= kMaxChunk, "{} bytes", bytes);
  const int cnt = static_cast<int>(bytes);
  impl_->wait(impl_->submit(what, [data, cnt](MPI_Comm c, MPI_Request* r) {
    return MPI_Ibcast(data, cnt, MPI_BYTE, 0, c, r);
  }));
}

void MpiComm::barrier() {
  impl_->wait(impl_->submit(describe("barrier"), [](MPI_Comm c, MPI_Request* r) { return MPI_Ibarrier(c, r); }));
}

std::string MpiComm::diagnose(const std::string& what, int64_t seq, const std::string& problem) {
  g_failed = true;
  Impl& m = *impl_;
  auto op = std::make_shared<Op>();
  op->what = "diagnosis of " + what;
  std::string report;
  op->task = [&m, &report, what, seq, problem] { report = m.diagnosis(what, seq, problem); };
  {
    std::lock_guard<std::mutex> lk(m.mu);
    if (!m.failure.empty()) return fmt::format("rank {}: {} (collective #{}) {}", m.rank, what, seq, problem);
    m.queue.push_back(op);
  }
  m.work_cv.notify_one();
  std::unique_lock<std::mutex> lk(m.mu);
  const auto limit = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(m.diag_grace_s() + 30.0));
  m.done_cv.wait_until(lk, limit, [&] { return op->done; });
  if (!op->done || report.empty()) return fmt::format("rank {}: {} (collective #{}) {}", m.rank, what, seq, problem);
  return report;
}

void MpiComm::start_bucket(float* p, int64_t n, Device dev, const std::string& what) {
  Impl& m = *impl_;
  float* host = p;
  if (dev.is_cuda()) {
    if (static_cast<int64_t>(m.mirror.size()) < arena_count_) m.mirror.resize(static_cast<size_t>(arena_count_));
    host = m.mirror.data() + (p - arena_);
    // Synchronous on the compute stream: the layer's gradient kernels have finished.
    device_copy(host, Device::cpu(), p, dev, static_cast<size_t>(n) * sizeof(float));
    m.staged.push_back({p, host, n});
    m.staged_device = dev;
  }
  for (int64_t off = 0; off < n; off += kMaxChunk) {
    const int cnt = static_cast<int>(std::min(kMaxChunk, n - off));
    float* q = host + off;
    m.buckets.push_back(m.submit(
        what,
        [q, cnt](MPI_Comm c, MPI_Request* r) { return MPI_Iallreduce(MPI_IN_PLACE, q, cnt, MPI_FLOAT, MPI_SUM, c, r); },
        /*blocking=*/false));
  }
}

void MpiComm::wait_buckets(ReductionStats* stats) {
  Impl& m = *impl_;
  std::vector<OpPtr> ops;
  ops.swap(m.buckets);
  std::vector<Impl::Staged> staged;
  staged.swap(m.staged);
  for (auto& op : ops) m.wait(op);
  if (!ops.empty()) stats->comm_seconds = std::chrono::duration<double>(ops.back()->t_end - ops.front()->t_start).count();
  for (const auto& s : staged)
    device_copy(s.dev, m.staged_device, s.host, Device::cpu(), static_cast<size_t>(s.n) * sizeof(float));
}

}  // namespace dropnet::dist

#endif  // DROPNET_HAVE_MPI
