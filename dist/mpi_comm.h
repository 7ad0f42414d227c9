// MpiComm: MPI collectives on host buffers (CUDA buffers are staged through a host mirror).
// One communication thread per communicator makes every MPI call after setup: it posts the
// nonblocking collective (MPI_Iallreduce / MPI_Ibcast / MPI_Ibarrier) and polls MPI_Test against
// a deadline, which both progresses the collective while the caller computes (gradient buckets
// overlap backward) and bounds every wait. On a timeout the thread asks every other rank, over a
// separate communicator, which collective it is in; ranks that do not answer are named as dead or
// stalled. After a failure the process does not call MPI_Finalize (it would wait for the missing
// rank); it exits non-zero and the launcher ends the job. No <mpi.h> here: this header is also
// read by the NCCL backend's .cu file (C++17).
#pragma once

#include <memory>
#include <string>

#include "dist/communicator.h"

namespace dropnet::dist {

#if DROPNET_HAVE_MPI

class MpiComm final : public Communicator {
 public:
  // Initializes MPI on first use in the process (MPI_Init_thread; MPI_Finalize runs at exit).
  MpiComm(Device dev, const CommOptions& opts);
  ~MpiComm() override;

  std::string kind() const override { return "mpi"; }
  int rank() const override;
  int world() const override;
  int local_rank() const override;
  int local_size() const override;
  void allreduce_sum(float* data, int64_t n, Device dev) override;
  void allreduce_sum_double(double* data, int64_t n) override;
  void broadcast(float* data, int64_t n, Device dev) override;
  void barrier() override;

  // Rank 0's `bytes` to every rank (NCCL's unique id).
  void broadcast_bytes(void* data, int64_t bytes, const std::string& what);
  // For another transport's collective that failed or timed out (NCCL): asks the other ranks
  // which collective they are in and returns the whole report. `seq` numbers that transport's
  // collectives (the same on every rank).
  std::string diagnose(const std::string& what, int64_t seq, const std::string& problem);
  // Whether any communicator of this process has failed (MPI_Finalize is then skipped).
  static bool process_failed();
  static void mark_process_failed();

 protected:
  void start_bucket(float* p, int64_t n, Device dev, const std::string& what) override;
  void wait_buckets(ReductionStats* stats) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

#endif  // DROPNET_HAVE_MPI

}  // namespace dropnet::dist
