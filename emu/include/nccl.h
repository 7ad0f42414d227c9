// The emulated NCCL (DROPNET_CUDA=EMU): the part of the NCCL API that dropnet uses
// (dist/nccl_comm.cu), implemented over MPI by emu/nccl.cpp on the emulated CUDA device. Names,
// types and values are those of the real <nccl.h> (2.28), so the same sources build against both.
//
// What is emulated, and how:
//   - A communicator is nranks processes, each on the device current at init (cudaGetDevice). It
//     runs over an MPI communicator split off MPI_COMM_WORLD with a color derived from the unique
//     id (key = rank): every rank of MPI_COMM_WORLD must therefore initialize a communicator at
//     the same point (each with the id of its own group), and MPI must have been initialized with
//     MPI_THREAD_MULTIPLE (dropnet's MpiComm does both). A single-rank communicator touches no
//     MPI at all (no MPI_Init needed). In a build without MPI (DROPNET_HAVE_MPI=0), nranks > 1 is
//     ncclSystemError.
//   - ncclCommInitRankConfig with config->blocking = 0 returns ncclInProgress (ncclSuccess for one
//     rank) and the communicator's ncclCommGetAsyncError reports ncclInProgress until the ranks
//     have met; the meeting (MPI_Comm_idup of MPI_COMM_WORLD, then the split) progresses only
//     inside ncclCommGetAsyncError calls, so poll it until it is no longer ncclInProgress (as the
//     NCCL documentation requires anyway) before other calls on the communicator, which fail with
//     ncclInvalidUsage meanwhile. ncclCommAbort of a communicator still initializing returns at
//     once. blocking = 1 (or unset): ncclCommInitRankConfig returns when the ranks have met.
//   - Collectives (ncclAllReduce, ncclBroadcast, ncclBcast, ncclReduce) validate their arguments
//     at the call (an invalid one returns ncclInvalidArgument / ncclInvalidUsage, with the reason
//     in ncclGetLastError) and queue the operation on `stream` (dn_emu::enqueue), which must
//     belong to the communicator's device. The queued operation checks the buffers
//     (dn_emu::check_device_access: a bad pointer faults the stream's device with
//     cudaErrorIllegalAddress) and runs the MPI collective on them (device memory is host
//     memory) when the stream is drained: cudaStreamSynchronize, cudaEventSynchronize or
//     cudaEventQuery on a later event. A failed MPI call sets the communicator's async error
//     (ncclRemoteError) and faults the stream (cudaErrorLaunchFailure).
//   - Reductions: sum, prod, max, min, avg on int8/uint8/int32/uint32/int64/uint64/float/double
//     (half, bfloat16 and fp8 only in broadcasts). Counts may exceed INT_MAX (chunked).
//   - ncclGroupStart / ncclGroupEnd only count nesting: the operations inside a group are queued
//     at their calls, in order (on one rank's single communicator this is what the fused group
//     computes; groups that need operations on several communicators of one process to progress
//     together, e.g. one process driving several devices, are not emulated).
//   - ncclCommAbort marks the communicator aborted and returns at once: later calls on it fail
//     with ncclInvalidUsage (the handle stays valid in the emulation, to say so), and queued
//     operations that have not run yet are skipped (the buffers keep their contents, no fault).
//   - ncclCommFinalize marks the communicator finalized (queued operations still run); later
//     collectives fail. ncclCommDestroy frees it; the MPI communicator is freed once the last
//     queued operation has run.
//   - A queued collective waits for the other ranks inside the stream drain, on the host thread
//     that waits (the real one waits on the GPU while the host polls). The environment variable
//     DROPNET_EMU_NCCL_TIMEOUT_S (seconds, unset: no limit) bounds that wait: past it the
//     operation fails as above (ncclRemoteError, cudaErrorLaunchFailure), so that a stalled peer
//     shows as an error instead of a hang.
//   - ncclGetLastError returns the calling thread's last message (the comm argument is ignored,
//     as in NCCL), or the communicator's async error message when the comm has one.
// C++ linkage on purpose (like emu/include/cuda_runtime.h): never collides with libnccl.
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cstddef>

#define DROPNET_NCCL_EMU 1
#define NCCL_MAJOR 2
#define NCCL_MINOR 28
#define NCCL_PATCH 0
#define NCCL_SUFFIX "-dropnet-emu"
#define NCCL_VERSION_CODE 22800
#define NCCL_VERSION(X, Y, Z) (((X) <= 2 && (Y) <= 8) ? (X) * 1000 + (Y) * 100 + (Z) : (X) * 10000 + (Y) * 100 + (Z))

typedef struct ncclComm* ncclComm_t;
#define NCCL_COMM_NULL nullptr

#define NCCL_UNIQUE_ID_BYTES 128
typedef struct {
  char internal[NCCL_UNIQUE_ID_BYTES];
} ncclUniqueId;

typedef enum {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7,
  ncclNumResults = 8
} ncclResult_t;

#define NCCL_CONFIG_UNDEF_INT INT_MIN
#define NCCL_CONFIG_UNDEF_PTR nullptr
#define NCCL_SPLIT_NOCOLOR -1

// The fields of the real ncclConfig_t (2.28); the emulation reads `blocking` only.
typedef struct ncclConfig_v22800 {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking;
  int cgaClusterSize;
  int minCTAs;
  int maxCTAs;
  const char* netName;
  int splitShare;
  int trafficClass;
  const char* commName;
  int collnetEnable;
  int CTAPolicy;
  int shrinkShare;
  int nvlsCTAs;
  int nChannelsPerNetPeer;
  int nvlinkCentricSched;
} ncclConfig_t;

#define NCCL_CONFIG_INITIALIZER                                                                              \
  {                                                                                                          \
    sizeof(ncclConfig_t), 0xcafebeef, NCCL_VERSION(NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH), NCCL_CONFIG_UNDEF_INT, \
        NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_PTR,          \
        NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_PTR, NCCL_CONFIG_UNDEF_INT,          \
        NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_INT,          \
        NCCL_CONFIG_UNDEF_INT                                                                                \
  }

typedef enum {
  ncclSum = 0,
  ncclProd = 1,
  ncclMax = 2,
  ncclMin = 3,
  ncclAvg = 4,
  ncclNumOps = 5,
  ncclMaxRedOp = 0x7fffffff
} ncclRedOp_t;

typedef enum {
  ncclInt8 = 0,
  ncclChar = 0,
  ncclUint8 = 1,
  ncclInt32 = 2,
  ncclInt = 2,
  ncclUint32 = 3,
  ncclInt64 = 4,
  ncclUint64 = 5,
  ncclFloat16 = 6,
  ncclHalf = 6,
  ncclFloat32 = 7,
  ncclFloat = 7,
  ncclFloat64 = 8,
  ncclDouble = 8,
  ncclBfloat16 = 9,
  ncclFloat8e4m3 = 10,
  ncclFloat8e5m2 = 11,
  ncclNumTypes = 12
} ncclDataType_t;

ncclResult_t ncclGetVersion(int* version);
ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId);
ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank);
ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank, ncclConfig_t* config);
ncclResult_t ncclCommFinalize(ncclComm_t comm);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclCommAbort(ncclComm_t comm);
const char* ncclGetErrorString(ncclResult_t result);
const char* ncclGetLastError(ncclComm_t comm);
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError);
ncclResult_t ncclCommCount(const ncclComm_t comm, int* count);
ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int* device);
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank);

ncclResult_t ncclReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                        int root, ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclBcast(void* buff, size_t count, ncclDataType_t datatype, int root, ncclComm_t comm,
                       cudaStream_t stream);
ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);

ncclResult_t ncclGroupStart();
ncclResult_t ncclGroupEnd();
