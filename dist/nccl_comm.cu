#include "dist/nccl_comm.h"

#if DROPNET_HAVE_NCCL

#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "core/cuda_check.h"
#include "core/error.h"

// Non-blocking communicators (ncclCommInitRankConfig, blocking = 0) need NCCL 2.14; the last-error
// text, 2.13.
#if NCCL_VERSION_CODE < 21400
#error "dropnet needs NCCL 2.14 or newer (non-blocking communicator init)"
#endif

namespace dropnet::dist {

namespace {

using Clock = std::chrono::steady_clock;

// NCCL's text for `r`, with the detail of the calling thread's last NCCL error when it has one.
std::string nccl_error_text(ncclResult_t r) {
  std::string text = ncclGetErrorString(r);
  const char* last = ncclGetLastError(nullptr);
  if (last != nullptr && *last != '\0') text += std::string(": ") + last;
  return text;
}

class NcclComm final : public Communicator {
 public:
  NcclComm(Device dev, const CommOptions& opts, std::unique_ptr<MpiComm> boot)
      : Communicator(dev, opts), boot_(std::move(boot)) {
    if (boot_) {
      rank_ = boot_->rank();
      world_ = boot_->world();
      const int gpus = cuda_device_count();
      if (gpus == 0) input_error("rank {}: NCCL needs a GPU, but this node has none", rank_);
      if (boot_->local_size() > gpus)
        input_error("{} ranks run on this node but it has {} GPU{}: NCCL needs one GPU per rank", boot_->local_size(),
                    gpus, gpus > 1 ? "s" : "");
      device_ = Device::cuda(boot_->local_rank());
    }
    cuda_set_device(device_.index);
    ncclUniqueId id;
    if (rank_ == 0) DN_NCCL_CHECK(ncclGetUniqueId(&id));
    if (boot_) boot_->broadcast_bytes(&id, sizeof(id), "broadcast of the NCCL unique id");
    init_comm(id);
    DN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    DN_CUDA_CHECK(cudaEventCreate(&start_));
  }

  ~NcclComm() override {
    if (comm_ != nullptr) {
      // Non-blocking communicator: ncclCommFinalize may return ncclInProgress; it is destroyed
      // once quiescent, and aborted if that does not happen within the deadline.
      bool quiet = !MpiComm::process_failed();
      if (quiet) {
        ncclResult_t r = ncclCommFinalize(comm_);
        const auto deadline =
            Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opts_.timeout_s));
        while (r == ncclInProgress && Clock::now() < deadline) {
          std::this_thread::sleep_for(std::chrono::microseconds(100));
          if (ncclCommGetAsyncError(comm_, &r) != ncclSuccess) r = ncclInternalError;
        }
        quiet = r == ncclSuccess;
      }
      if (quiet)
        ncclCommDestroy(comm_);
      else
        ncclCommAbort(comm_);
    }
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    if (start_ != nullptr) cudaEventDestroy(start_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  std::string kind() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int world() const override { return world_; }
  int local_rank() const override { return boot_ ? boot_->local_rank() : 0; }
  int local_size() const override { return boot_ ? boot_->local_size() : 1; }

  void allreduce_sum(float* data, int64_t n, Device dev) override {
    if (n <= 0) return;
    if (!dev.is_cuda()) {
      if (boot_) boot_->allreduce_sum(data, n, dev);
      return;
    }
    const int64_t seq = seq_++;
    const std::string what = describe(fmt::format("all-reduce of {} floats", n));
    cudaEvent_t done = event(0);
    after_compute();
    issued(ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat, ncclSum, live(), stream_), what, seq);
    DN_CUDA_CHECK(cudaEventRecord(done, stream_));
    wait_event(done, what, seq);
  }

  void allreduce_sum_double(double* data, int64_t n) override {
    if (boot_) boot_->allreduce_sum_double(data, n);
  }

  void broadcast(float* data, int64_t n, Device dev) override {
    if (n <= 0) return;
    if (!dev.is_cuda()) {
      if (boot_) boot_->broadcast(data, n, dev);
      return;
    }
    const int64_t seq = seq_++;
    const std::string what = describe(fmt::format("broadcast of {} floats from rank 0", n));
    cudaEvent_t done = event(0);
    after_compute();
    issued(ncclBroadcast(data, data, static_cast<size_t>(n), ncclFloat, 0, live(), stream_), what, seq);
    DN_CUDA_CHECK(cudaEventRecord(done, stream_));
    wait_event(done, what, seq);
  }

  void barrier() override {
    if (boot_) boot_->barrier();
  }

 protected:
  void start_bucket(float* p, int64_t n, Device dev, const std::string& what) override {
    DN_CHECK(dev.is_cuda(), "NCCL gradient bucket on {}", dev.str());
    Pending b{what, seq_++, event(pending_.size())};
    after_compute();
    if (pending_.empty()) DN_CUDA_CHECK(cudaEventRecord(start_, stream_));
    issued(ncclAllReduce(p, p, static_cast<size_t>(n), ncclFloat, ncclSum, live(), stream_), b.what, b.seq);
    DN_CUDA_CHECK(cudaEventRecord(b.done, stream_));
    pending_.push_back(b);
  }

  void wait_buckets(ReductionStats* stats) override {
    std::vector<Pending> pending;
    pending.swap(pending_);
    for (const Pending& b : pending) wait_event(b.done, b.what, b.seq);
    if (pending.empty()) return;
    float ms = 0.f;
    DN_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, pending.back().done));
    stats->comm_seconds = ms / 1000.0;
    // The update kernels that follow on the compute stream read the reduced gradients.
    DN_CUDA_CHECK(cudaStreamWaitEvent(cuda_stream(), pending.back().done, 0));
  }

 private:
  // Non-blocking init (blocking = 0), polled against the communication deadline: a rank that dies
  // after the unique-id broadcast, or never gets here, makes the others fail (fail(): abort, and
  // ask the other ranks over MPI where they are) instead of hanging in ncclCommInitRank.
  void init_comm(const ncclUniqueId& id) {
    const std::string what =
        fmt::format("communicator initialization (ncclCommInitRankConfig, {} rank{})", world_, world_ > 1 ? "s" : "");
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    comm_ = nullptr;
    const ncclResult_t r = ncclCommInitRankConfig(&comm_, world_, id, rank_, &config);
    if (r != ncclSuccess && r != ncclInProgress) fail(what, seq_, std::string("failed: ") + nccl_error_text(r));
    if (comm_ == nullptr) fail(what, seq_, "failed: NCCL returned no communicator");
    wait_ready(what, seq_);
  }

  // The result of a call on the (non-blocking) communicator: ncclInProgress means the call is
  // still being carried out, and the communicator must be polled until it is ready again.
  void issued(ncclResult_t r, const std::string& what, int64_t seq) {
    if (r == ncclSuccess) return;
    if (r != ncclInProgress) fail(what, seq, std::string("could not be started: ") + nccl_error_text(r));
    wait_ready(what, seq);
  }

  // Polls ncclCommGetAsyncError until the communicator is no longer ncclInProgress, under the
  // deadline.
  void wait_ready(const std::string& what, int64_t seq) {
    const auto t0 = Clock::now();
    const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opts_.timeout_s));
    bool interrupt_reported = false;
    for (int polls = 0;; ++polls) {
      ncclResult_t state = ncclInProgress;
      const ncclResult_t q = ncclCommGetAsyncError(comm_, &state);
      if (q != ncclSuccess) fail(what, seq, std::string("failed: ncclCommGetAsyncError: ") + nccl_error_text(q));
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) fail(what, seq, std::string("failed: ") + nccl_error_text(state));
      if (!interrupt_reported && interrupt_signal() != 0) {
        interrupt_reported = true;
        std::fprintf(stderr, "dropnet: rank %d: signal %d while waiting %.3g s in NCCL %s\n", rank_, interrupt_signal(),
                     std::chrono::duration<double>(Clock::now() - t0).count(), what.c_str());
        std::fflush(stderr);
      }
      if (Clock::now() > deadline) fail(what, seq, fmt::format("did not complete within {:g} s", opts_.timeout_s));
      if (polls < 200)
        std::this_thread::yield();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  struct Pending {
    std::string what;
    int64_t seq;
    cudaEvent_t done;
  };

  ncclComm_t live() {
    if (comm_ == nullptr)
      input_error("rank {}: the NCCL communicator was aborted after an earlier failure", rank_);
    return comm_;
  }

  // The i-th event of the pool (events are reused across reductions).
  cudaEvent_t event(size_t i) {
    while (events_.size() <= i) {
      cudaEvent_t e;
      DN_CUDA_CHECK(cudaEventCreate(&e));
      events_.push_back(e);
    }
    return events_[i];
  }

  // The collective starts after the work queued so far on the compute stream (the gradients).
  void after_compute() {
    if (ready_ == nullptr) DN_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    DN_CUDA_CHECK(cudaEventRecord(ready_, cuda_stream()));
    DN_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
  }

  void wait_event(cudaEvent_t ev, const std::string& what, int64_t seq) {
    const auto deadline =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opts_.timeout_s));
    bool interrupt_reported = false;
    const auto t0 = Clock::now();
    for (int polls = 0;; ++polls) {
      cudaError_t q = cudaEventQuery(ev);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) {
        // A device fault while the collective ran (or before, on the compute stream it waits
        // for): the communicator cannot be trusted any more, and the other ranks wait in it.
        (void)cudaGetLastError();  // clears a non-sticky error; a sticky one stays with the device
        fail(what, seq, std::string("failed with a CUDA error: ") + cudaGetErrorName(q) + ": " + cudaGetErrorString(q));
      }
      ncclResult_t async = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(live(), &async);
      if (r != ncclSuccess) fail(what, seq, std::string("failed: ncclCommGetAsyncError: ") + nccl_error_text(r));
      if (async != ncclSuccess && async != ncclInProgress)
        fail(what, seq, std::string("failed: ") + nccl_error_text(async));
      if (!interrupt_reported && interrupt_signal() != 0) {
        interrupt_reported = true;
        std::fprintf(stderr, "dropnet: rank %d: signal %d while waiting %.3g s in NCCL %s (collective #%lld)\n", rank_,
                     interrupt_signal(), std::chrono::duration<double>(Clock::now() - t0).count(), what.c_str(),
                     static_cast<long long>(seq));
        std::fflush(stderr);
      }
      if (Clock::now() > deadline) fail(what, seq, fmt::format("did not complete within {:g} s", opts_.timeout_s));
      if (polls < 200)
        std::this_thread::yield();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  [[noreturn]] void fail(const std::string& what, int64_t seq, const std::string& problem) {
    MpiComm::mark_process_failed();
    if (comm_ != nullptr) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    pending_.clear();
    std::string msg = boot_ ? boot_->diagnose("NCCL " + what, seq, problem)
                            : fmt::format("rank {}: NCCL {} (collective #{}) {}", rank_, what, seq, problem);
    throw Error(ErrorKind::Internal, msg);
  }

  std::unique_ptr<MpiComm> boot_;
  int rank_ = 0, world_ = 1;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr, ready_ = nullptr;
  std::vector<cudaEvent_t> events_;
  std::vector<Pending> pending_;
  int64_t seq_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_comm(Device dev, const CommOptions& opts, std::unique_ptr<MpiComm> boot) {
  return std::make_unique<NcclComm>(dev, opts, std::move(boot));
}

}  // namespace dropnet::dist

#endif  // DROPNET_HAVE_NCCL
