// Data parallelism (DESIGN.md §7). A Communicator is the Solver's GradientReducer: every rank
// runs the configured batch on its own shard, gradients are summed over ranks in buckets that
// are all-reduced while backward is still running, and the solver averages them once.
//   LocalComm  one process; every collective is the identity.
//   MpiComm    MPI on host buffers (CUDA tensors are staged through host memory), driven by a
//              communication thread that owns every MPI call after MPI_Init (dist/mpi_comm.h).
//   NcclComm   ncclAllReduce on device buffers on its own stream, ordered after the compute
//              stream with events; bootstrapped over MPI (dist/nccl_comm.h).
// Every collective has a deadline (CommOptions::timeout_s): a rank that died or stalls makes the
// others fail with an Error naming the operation and the ranks that did not answer, instead of
// hanging. This header is C++17 (the NCCL backend is a .cu file).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "optim/solver.h"

namespace dropnet::dist {

struct CommOptions {
  double timeout_s = 120.0;  // a collective not complete after this long is a failure
};

// The bucketed reduction of the last update (benchmarks, logs).
struct ReductionStats {
  int buckets = 0;
  int64_t bytes = 0;
  double comm_seconds = 0.0;  // first bucket started -> last bucket completed
  double wait_seconds = 0.0;  // time finish() blocked its caller: communication not hidden under backward
  // finish()'s start and end on the steady clock (seconds since its epoch, shared by the processes
  // of a machine): the exposed communication is end - the last rank's start, free of rank skew.
  double finish_begin = 0.0, finish_end = 0.0;
};

class Communicator : public GradientReducer {
 public:
  explicit Communicator(Device dev, const CommOptions& opts) : device_(dev), opts_(opts) {}
  ~Communicator() override = default;

  virtual std::string kind() const = 0;  // "local", "mpi", "nccl"
  // Ranks on this node and this rank's index among them (one GPU per local rank).
  virtual int local_rank() const { return 0; }
  virtual int local_size() const { return 1; }
  virtual void barrier() = 0;
  // The device this rank computes on (NCCL: the GPU chosen by the local rank).
  Device device() const { return device_; }
  double timeout_s() const { return opts_.timeout_s; }
  // Named in every later error and diagnostic ("iteration 17"): where the caller is.
  void set_context(std::string context) { context_ = std::move(context); }

  // GradientReducer's overlap hooks, implemented once over start_bucket / wait_buckets: the
  // ready ranges arrive in descending arena order (the arena is in layer order, backward runs
  // backwards); a bucket - the contiguous range ready since the previous one - is started as soon
  // as it holds bucket_bytes, and finish() starts the rest and waits for all.
  void begin_backward(float* arena, int64_t n, Device dev, int64_t bucket_bytes) override;
  void on_layer_grads_ready(int layer, float* begin, int64_t n) override;
  void finish() override;
  const ReductionStats& last_reduction() const { return stats_; }

 protected:
  // Starts summing [p, p + n) over ranks, asynchronously; `what` names it in errors.
  virtual void start_bucket(float* p, int64_t n, Device dev, const std::string& what) = 0;
  // Waits for every started bucket; fills comm_seconds. Throws on failure or timeout.
  virtual void wait_buckets(ReductionStats* stats) = 0;

  // `what` plus the caller's context: "all-reduce of 4 floats during iteration 17".
  std::string describe(const std::string& what) const {
    return context_.empty() ? what : what + " during " + context_;
  }

  Device device_;
  CommOptions opts_;
  std::string context_;

 private:
  void launch(int64_t lo, int64_t hi);

  int64_t bucket_floats_ = 0;
  int64_t unlaunched_hi_ = 0;  // [ready_lo_, unlaunched_hi_) is ready but not yet started
  int64_t ready_lo_ = 0;
  int first_layer_ = -1, last_layer_ = -1;  // layers of the bucket being gathered
  bool active_ = false;
  ReductionStats stats_;
};

// One process: rank 0 of 1.
class LocalComm final : public Communicator {
 public:
  explicit LocalComm(Device dev = Device::cpu(), const CommOptions& opts = {}) : Communicator(dev, opts) {}
  std::string kind() const override { return "local"; }
  int rank() const override { return 0; }
  int world() const override { return 1; }
  void allreduce_sum(float*, int64_t, Device) override {}
  void allreduce_sum_double(double*, int64_t) override {}
  void broadcast(float*, int64_t, Device) override {}
  void barrier() override {}

 protected:
  void start_bucket(float*, int64_t, Device, const std::string&) override {}
  void wait_buckets(ReductionStats*) override {}
};

// True when this process was started by an MPI launcher (OMPI_COMM_WORLD_SIZE, PMI_SIZE,
// PMIX_RANK or MV2_COMM_WORLD_SIZE in the environment).
bool launched_under_mpi();
// This process's rank as the launcher's environment gives it (0 without a launcher): known
// before MPI is initialized, so other ranks can be quiet from the first log line.
int launcher_rank();
// "120", "2.5": seconds > 0; anything else is an Input error naming `what`.
double parse_timeout_seconds(const std::string& what, const std::string& text);
bool mpi_compiled();
bool nccl_compiled();

// LocalComm unless launched under an MPI launcher; then NcclComm for a CUDA device (one GPU per
// local rank; MpiComm with host staging when built without NCCL), MpiComm for the CPU. A single
// process never initializes MPI. Under a launcher in a build without MPI: an Input error.
std::unique_ptr<Communicator> make_communicator(Device dev, const CommOptions& opts = {});
// The MPI communicator regardless of the launcher (a lone process is rank 0 of 1).
std::unique_ptr<Communicator> make_mpi_communicator(Device dev, const CommOptions& opts = {});
// NCCL over the ranks of the launcher; without one, a single-rank NCCL communicator on `dev`
// (no MPI needed). Throws an Input error in builds without NCCL.
std::unique_ptr<Communicator> make_nccl_communicator(Device dev, const CommOptions& opts = {});

// A flag a signal handler sets (the signal number; 0 = none). A rank that receives a signal while
// it waits in a collective prints which one at once: when the launcher kills the job because a
// peer died (Open MPI: SIGTERM, then SIGKILL a second later), that line names the operation.
void set_interrupt_flag(const std::atomic<int>* flag);
int interrupt_signal();  // the flag's value (0 when unset)

// A rank that was stopped (SIGSTOP, SIGTSTP, a debugger) and resumed by SIGCONT. The time it spent
// stopped is not its peers' fault: a collective's deadline is extended by it, and the diagnosis
// says the rank was stopped instead of blaming the others. watch_for_resume() installs a SIGCONT
// handler once (the default action, continuing, is kept); resume_count() counts the resumptions
// since, seconds_since_resume() is the time since the last one (< 0 when none).
void watch_for_resume();
uint64_t resume_count();
double seconds_since_resume();

// Test-only fault injection, from DROPNET_TEST_FAULT="kill:RANK:ITER" (the rank SIGKILLs itself
// when reaching iteration ITER), "stall:RANK:ITER" (it stops forever, alive) or
// "stop:RANK:ITER:SECONDS" (its communication thread, in the next collective it posts, stops the
// process with SIGSTOP; a child process resumes it with SIGCONT SECONDS later). No-op when unset.
void inject_fault_if_requested(int rank, int64_t iter);
// Where the communication thread takes an armed "stop" fault (after posting a collective).
void stop_here_if_armed();

}  // namespace dropnet::dist
