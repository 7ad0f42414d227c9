// NcclComm: ncclAllReduce on device buffers, on a stream of its own. A bucket waits (event) for
// the compute stream's work up to the moment it is started; finish() polls the completion events
// against the deadline (with ncclCommGetAsyncError), aborts the NCCL communicator on a timeout and
// asks the other ranks over MPI where they are. The ncclUniqueId is broadcast over MPI; each rank
// drives the GPU of its local rank. Without an MPI launcher: a single-rank communicator (tests).
#pragma once

#include <memory>

#include "dist/communicator.h"
#include "dist/mpi_comm.h"

namespace dropnet::dist {

#if DROPNET_HAVE_NCCL
// `boot` is null for a single process (no MPI); else every rank's MPI communicator.
std::unique_ptr<Communicator> make_nccl_comm(Device dev, const CommOptions& opts, std::unique_ptr<MpiComm> boot);
#endif

}  // namespace dropnet::dist
