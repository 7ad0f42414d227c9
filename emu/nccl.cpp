// The emulated NCCL over MPI (see emu/include/nccl.h for what is emulated and how).
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include "emu.h"

#ifndef DROPNET_HAVE_MPI
#define DROPNET_HAVE_MPI 0
#endif
#if DROPNET_HAVE_MPI
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1  // the C API only
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;

// The first bytes of every unique id: an id that lacks them was not made by ncclGetUniqueId (a
// rank that did not receive rank 0's id, say).
constexpr char kIdTag[16] = "dropnet-emu-ncc";

thread_local std::string t_last_error;
thread_local int t_group_depth = 0;

ncclResult_t fail(ncclResult_t r, const std::string& msg) {
  t_last_error = msg;
  return r;
}

struct State {
  State(int n, int r, int dev) : nranks(n), rank(r), device(dev) {}
  ~State();

  const int nranks, rank, device;
  std::atomic<int> async{ncclSuccess};  // ncclInProgress while the ranks meet
  std::atomic<bool> aborted{false}, finalized{false}, destroyed{false};
  std::mutex mu;  // the message, and the progress of the init
  std::string message;
#if DROPNET_HAVE_MPI
  int color = 0;
  MPI_Comm dup = MPI_COMM_NULL;  // MPI_COMM_WORLD's duplicate, split into `comm`
  MPI_Request dup_req = MPI_REQUEST_NULL;
  MPI_Comm comm = MPI_COMM_NULL;
#endif

  // Records the first error (later ones keep it) and makes it the thread's last error.
  void set_error(ncclResult_t r, const std::string& msg) {
    std::lock_guard<std::mutex> lk(mu);
    const int a = async.load();
    if (a == ncclSuccess || a == ncclInProgress) {
      message = msg;
      async = r;
    }
    t_last_error = msg;
  }
  std::string error_message() {
    std::lock_guard<std::mutex> lk(mu);
    return message;
  }
};

State::~State() {
#if DROPNET_HAVE_MPI
  // Only a destroyed communicator frees its MPI communicator (an aborted one may have peers that
  // are gone, and one never destroyed lives until exit).
  if (comm != MPI_COMM_NULL && destroyed.load() && !aborted.load()) {
    int finalized_mpi = 1;
    MPI_Finalized(&finalized_mpi);
    if (!finalized_mpi) MPI_Comm_free(&comm);
  }
#endif
}

}  // namespace

// The handle: a destroyed one is deleted, an aborted one stays (later calls say it was aborted).
struct ncclComm {
  std::shared_ptr<State> s;
};

namespace {

struct Registry {
  std::mutex mu;
  std::unordered_map<ncclComm*, std::unique_ptr<ncclComm>> comms;
};
// Never destroyed: no static-destruction-order questions at exit (and reachable for LSan).
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

std::shared_ptr<State> lookup(const ncclComm* c) {
  if (c == nullptr) return nullptr;
  Registry& r = registry();
  std::lock_guard<std::mutex> lk(r.mu);
  auto it = r.comms.find(const_cast<ncclComm*>(c));
  return it == r.comms.end() ? nullptr : it->second->s;
}

// The communicator of `c` if it may be used now; else the error (with its message) in *err.
std::shared_ptr<State> usable(const ncclComm* c, const char* fn, ncclResult_t* err) {
  std::shared_ptr<State> s = lookup(c);
  if (!s) {
    *err = fail(ncclInvalidArgument, std::string(fn) + ": " +
                                         (c == nullptr ? "the communicator is NULL"
                                                       : "not a communicator (destroyed, or never initialized)"));
    return nullptr;
  }
  if (s->aborted.load()) {
    *err = fail(ncclInvalidUsage, std::string(fn) + ": the communicator was aborted (ncclCommAbort)");
    return nullptr;
  }
  const int a = s->async.load();
  if (a == ncclInProgress) {
    *err = fail(ncclInvalidUsage, std::string(fn) +
                                      ": the communicator is still initializing (poll ncclCommGetAsyncError until it "
                                      "is no longer ncclInProgress)");
    return nullptr;
  }
  if (a != ncclSuccess) {
    *err = fail(static_cast<ncclResult_t>(a), std::string(fn) + ": the communicator failed earlier: " + s->error_message());
    return nullptr;
  }
  return s;
}

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: case ncclFloat8e4m3: case ncclFloat8e5m2: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
  }
}

bool reducible(ncclDataType_t t) {
  return t == ncclInt8 || t == ncclUint8 || t == ncclInt32 || t == ncclUint32 || t == ncclInt64 || t == ncclUint64 ||
         t == ncclFloat32 || t == ncclFloat64;
}

const char* type_name(ncclDataType_t t) {
  static const char* const names[] = {"int8",    "uint8",  "int32",  "uint32",   "int64",    "uint64",
                                      "float16", "float32", "float64", "bfloat16", "fp8e4m3", "fp8e5m2"};
  return static_cast<unsigned>(t) < ncclNumTypes ? names[t] : "?";
}

template <typename T>
void divide(void* p, size_t n, int by) {
  T* v = static_cast<T*>(p);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<T>(v[i] / static_cast<T>(by));
}

// ncclAvg: the sum divided by the number of ranks.
void average(void* p, size_t n, ncclDataType_t t, int nranks) {
  switch (t) {
    case ncclInt8: divide<int8_t>(p, n, nranks); break;
    case ncclUint8: divide<uint8_t>(p, n, nranks); break;
    case ncclInt32: divide<int32_t>(p, n, nranks); break;
    case ncclUint32: divide<uint32_t>(p, n, nranks); break;
    case ncclInt64: divide<int64_t>(p, n, nranks); break;
    case ncclUint64: divide<uint64_t>(p, n, nranks); break;
    case ncclFloat32: divide<float>(p, n, nranks); break;
    case ncclFloat64: divide<double>(p, n, nranks); break;
    default: break;
  }
}

enum class Kind { AllReduce, Broadcast, Reduce };

struct Args {
  Kind kind;
  const char* name;
  const void* send;
  void* recv;
  size_t count;
  int type_id, op_id;  // as passed (validated before they become `type` and `op`)
  int root;
  ncclDataType_t type = ncclFloat;
  ncclRedOp_t op = ncclSum;
};

#if DROPNET_HAVE_MPI

double op_timeout_s() {
  static const double t = [] {
    const char* v = std::getenv("DROPNET_EMU_NCCL_TIMEOUT_S");
    if (v == nullptr || *v == '\0') return 0.0;
    char* end = nullptr;
    const double d = std::strtod(v, &end);
    if (end == v || *end != '\0' || !(d > 0)) {
      std::fprintf(stderr, "emulated NCCL: ignoring DROPNET_EMU_NCCL_TIMEOUT_S=%s (seconds > 0 expected)\n", v);
      return 0.0;
    }
    return d;
  }();
  return t;
}

std::string mpi_error_text(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(buf, static_cast<size_t>(len));
}

// MPI's type for `t`; the types MPI lacks move as bytes (broadcasts only).
MPI_Datatype mpi_type(ncclDataType_t t, size_t* scale) {
  *scale = 1;
  switch (t) {
    case ncclInt8: return MPI_INT8_T;
    case ncclUint8: return MPI_UINT8_T;
    case ncclInt32: return MPI_INT32_T;
    case ncclUint32: return MPI_UINT32_T;
    case ncclInt64: return MPI_INT64_T;
    case ncclUint64: return MPI_UINT64_T;
    case ncclFloat32: return MPI_FLOAT;
    case ncclFloat64: return MPI_DOUBLE;
    default: *scale = type_size(t); return MPI_BYTE;
  }
}

MPI_Op mpi_op(ncclRedOp_t op) {
  switch (op) {
    case ncclProd: return MPI_PROD;
    case ncclMax: return MPI_MAX;
    case ncclMin: return MPI_MIN;
    default: return MPI_SUM;  // ncclSum, and ncclAvg before the division
  }
}

// Thrown out of run_mpi when the communicator was aborted while the operation waited.
struct Abandoned {};

// Waits for `req`, polling (so that an abort from another thread or the emulation's timeout can
// end the wait). Returns the MPI error, or MPI_SUCCESS.
int wait_request(State& s, MPI_Request* req, Clock::time_point deadline, bool limited, std::string* problem) {
  for (int polls = 0;; ++polls) {
    int flag = 0;
    const int rc = MPI_Test(req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      *problem = mpi_error_text(rc);
      return rc;
    }
    if (flag) return MPI_SUCCESS;
    // The request stays posted (a nonblocking collective cannot be cancelled); the process is
    // failing anyway.
    if (s.aborted.load()) throw Abandoned{};
    if (limited && Clock::now() > deadline) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "did not complete within %g s (DROPNET_EMU_NCCL_TIMEOUT_S)", op_timeout_s());
      *problem = buf;
      return MPI_ERR_OTHER;
    }
    if (polls < 100)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

void run_mpi(State& s, const Args& a) {
  size_t scale = 1;
  const MPI_Datatype type = mpi_type(a.type, &scale);
  const size_t esize = type_size(a.type) / scale;  // bytes per MPI element
  const size_t total = a.count * scale;             // MPI elements
  constexpr size_t kChunk = size_t{1} << 30;         // MPI counts are int
  const double limit = op_timeout_s();
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(limit > 0 ? limit : 0));
  const bool in_place = a.send == a.recv;
  if (a.kind == Kind::Broadcast && s.rank == a.root && !in_place && a.count > 0)
    std::memmove(a.recv, a.send, a.count * type_size(a.type));
  for (size_t off = 0; off < total; off += kChunk) {
    const int cnt = static_cast<int>(std::min(kChunk, total - off));
    const char* send = a.send != nullptr ? static_cast<const char*>(a.send) + off * esize : nullptr;
    char* recv = a.recv != nullptr ? static_cast<char*>(a.recv) + off * esize : nullptr;
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_SUCCESS;
    switch (a.kind) {
      case Kind::AllReduce:
        rc = MPI_Iallreduce(in_place ? MPI_IN_PLACE : send, recv, cnt, type, mpi_op(a.op), s.comm, &req);
        break;
      case Kind::Broadcast:
        rc = MPI_Ibcast(recv, cnt, type, a.root, s.comm, &req);
        break;
      case Kind::Reduce:
        if (s.rank == a.root)
          rc = MPI_Ireduce(in_place ? MPI_IN_PLACE : send, recv, cnt, type, mpi_op(a.op), a.root, s.comm, &req);
        else
          rc = MPI_Ireduce(send, nullptr, cnt, type, mpi_op(a.op), a.root, s.comm, &req);
        break;
    }
    std::string problem = rc == MPI_SUCCESS ? std::string() : mpi_error_text(rc);
    if (rc == MPI_SUCCESS) rc = wait_request(s, &req, deadline, limit > 0, &problem);
    if (rc != MPI_SUCCESS) {
      const std::string msg = std::string("emulated ") + a.name + " of " + std::to_string(a.count) + " " +
                              type_name(a.type) + " on rank " + std::to_string(s.rank) + " of " +
                              std::to_string(s.nranks) + ": " + problem;
      s.set_error(ncclRemoteError, msg);
      throw dn_emu::Fault(cudaErrorLaunchFailure, msg);
    }
  }
}

// One step of the init: the duplicate of MPI_COMM_WORLD, then the split. Called with s.mu held.
void progress_init(State& s) {
  auto failed = [&](ncclResult_t r, const std::string& msg) {
    s.message = msg;
    s.async = r;
  };
  if (s.dup_req != MPI_REQUEST_NULL) {
    int flag = 0;
    const int rc = MPI_Test(&s.dup_req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return failed(ncclSystemError, "emulated ncclCommInitRank: MPI_Comm_idup: " + mpi_error_text(rc));
    if (!flag) return;
  }
  MPI_Comm_set_errhandler(s.dup, MPI_ERRORS_RETURN);
  // Every rank of MPI_COMM_WORLD got here (the duplicate needs them all), so this meets at once.
  int rc = MPI_Comm_split(s.dup, s.color, s.rank, &s.comm);
  MPI_Comm_free(&s.dup);
  if (rc != MPI_SUCCESS) return failed(ncclSystemError, "emulated ncclCommInitRank: MPI_Comm_split: " + mpi_error_text(rc));
  int size = 0, rank = -1;
  MPI_Comm_size(s.comm, &size);
  MPI_Comm_rank(s.comm, &rank);
  if (size != s.nranks || rank != s.rank) {
    failed(ncclInvalidUsage, "emulated ncclCommInitRank: rank " + std::to_string(s.rank) + " of " +
                                 std::to_string(s.nranks) + " met " + std::to_string(size) +
                                 " rank(s) with the same unique id, and is rank " + std::to_string(rank) +
                                 " among them (every rank must call it with the same nranks and a distinct rank)");
    return;
  }
  s.async = ncclSuccess;
}

#endif  // DROPNET_HAVE_MPI

// The queued half of a collective: runs when the stream is drained.
void run(const std::shared_ptr<State>& sp, const Args& a) {
  State& s = *sp;
  if (s.aborted.load()) return;  // an aborted communicator's operations do nothing
  const size_t bytes = a.count * type_size(a.type);
  const bool root = s.rank == a.root;
  try {
    const std::string n = std::string(a.name) + " ";
    switch (a.kind) {
      case Kind::AllReduce:
        dn_emu::check_device_access(s.device, a.send, bytes, n + "sendbuff");
        dn_emu::check_device_access(s.device, a.recv, bytes, n + "recvbuff");
        break;
      case Kind::Broadcast:
        if (root) dn_emu::check_device_access(s.device, a.send, bytes, n + "sendbuff");
        dn_emu::check_device_access(s.device, a.recv, bytes, n + "recvbuff");
        break;
      case Kind::Reduce:
        dn_emu::check_device_access(s.device, a.send, bytes, n + "sendbuff");
        if (root) dn_emu::check_device_access(s.device, a.recv, bytes, n + "recvbuff");
        break;
    }
  } catch (const dn_emu::Fault& f) {
    s.set_error(ncclUnhandledCudaError, f.what());
    throw;
  }
  if (s.nranks == 1) {
    if (a.send != a.recv && (a.kind != Kind::Reduce || root)) std::memmove(a.recv, a.send, bytes);
  } else {
#if DROPNET_HAVE_MPI
    try {
      run_mpi(s, a);
    } catch (const Abandoned&) {
      return;
    }
#endif
  }
  if ((a.kind == Kind::AllReduce || (a.kind == Kind::Reduce && root)) && a.op == ncclAvg)
    average(a.recv, a.count, a.type, s.nranks);
}

ncclResult_t collective(Args a, ncclComm_t comm, cudaStream_t stream) {
  ncclResult_t err = ncclSuccess;
  std::shared_ptr<State> s = usable(comm, a.name, &err);
  if (!s) return err;
  const std::string fn = a.name;
  if (s->finalized.load()) return fail(ncclInvalidUsage, fn + ": the communicator was finalized (ncclCommFinalize)");
  if (a.type_id < 0 || a.type_id >= ncclNumTypes)
    return fail(ncclInvalidArgument, fn + ": invalid datatype " + std::to_string(a.type_id));
  a.type = static_cast<ncclDataType_t>(a.type_id);
  if (a.kind != Kind::Broadcast) {
    if (a.op_id < 0 || a.op_id >= ncclNumOps)
      return fail(ncclInvalidArgument, fn + ": invalid reduction operation " + std::to_string(a.op_id) +
                                           " (custom operations are not emulated)");
    a.op = static_cast<ncclRedOp_t>(a.op_id);
    if (!reducible(a.type))
      return fail(ncclInvalidArgument,
                  fn + ": reductions of " + type_name(a.type) + " are not emulated (integers, float32, float64 are)");
  }
  if (a.kind != Kind::AllReduce && (a.root < 0 || a.root >= s->nranks))
    return fail(ncclInvalidArgument,
                fn + ": root " + std::to_string(a.root) + " is not a rank of " + std::to_string(s->nranks));
  const bool root = s->rank == a.root;
  if (a.count > 0) {
    const bool needs_send = a.kind != Kind::Broadcast || root;
    const bool needs_recv = a.kind != Kind::Reduce || root;
    if (needs_send && a.send == nullptr) return fail(ncclInvalidArgument, fn + ": sendbuff is NULL");
    if (needs_recv && a.recv == nullptr) return fail(ncclInvalidArgument, fn + ": recvbuff is NULL");
  }
  int stream_dev = -1;
  try {
    stream_dev = dn_emu::stream_device(stream);
  } catch (const std::exception& e) {
    return fail(ncclInvalidArgument, fn + ": invalid stream: " + e.what());
  }
  if (stream_dev != s->device)
    return fail(ncclInvalidUsage, fn + ": the stream belongs to cuda:" + std::to_string(stream_dev) +
                                      " but the communicator to cuda:" + std::to_string(s->device) +
                                      " (the device current at ncclCommInitRank)");
  if (a.count == 0) return ncclSuccess;
  const cudaError_t ce = dn_emu::enqueue(stream, a.name, [s, a] { run(s, a); });
  if (ce != cudaSuccess)
    return fail(ncclUnhandledCudaError, fn + ": queueing on the stream failed: " + cudaGetErrorString(ce));
  return ncclSuccess;
}

ncclResult_t init(ncclComm_t* out, int nranks, const ncclUniqueId& id, int rank, bool blocking) {
  if (out == nullptr) return fail(ncclInvalidArgument, "ncclCommInitRank: comm is NULL");
  *out = nullptr;
  if (nranks < 1) return fail(ncclInvalidArgument, "ncclCommInitRank: nranks " + std::to_string(nranks) + " < 1");
  if (rank < 0 || rank >= nranks)
    return fail(ncclInvalidArgument,
                "ncclCommInitRank: rank " + std::to_string(rank) + " is not in [0, " + std::to_string(nranks) + ")");
  if (std::memcmp(id.internal, kIdTag, sizeof kIdTag) != 0)
    return fail(ncclInvalidArgument,
                "ncclCommInitRank: the unique id was not made by ncclGetUniqueId (not received from rank 0?)");
  int dev = -1;
  const cudaError_t ce = cudaGetDevice(&dev);
  if (ce != cudaSuccess)
    return fail(ncclUnhandledCudaError, std::string("ncclCommInitRank: cudaGetDevice: ") + cudaGetErrorString(ce));
  auto s = std::make_shared<State>(nranks, rank, dev);
  if (nranks > 1) {
#if DROPNET_HAVE_MPI
    int initialized = 0, finalized_mpi = 0, provided = 0, world = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized_mpi);
    if (!initialized || finalized_mpi)
      return fail(ncclSystemError, "ncclCommInitRank: the emulated NCCL runs over MPI, and MPI is " +
                                       std::string(finalized_mpi ? "finalized" : "not initialized"));
    MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_MULTIPLE)
      return fail(ncclSystemError,
                  "ncclCommInitRank: the emulated NCCL needs MPI initialized with MPI_THREAD_MULTIPLE (the "
                  "collectives run on the thread that waits on the stream)");
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (world < nranks)
      return fail(ncclInvalidArgument, "ncclCommInitRank: nranks " + std::to_string(nranks) + " but MPI_COMM_WORLD has " +
                                           std::to_string(world) + " rank(s)");
    uint32_t h = 2166136261u;  // FNV-1a of the id: ranks with the same id get the same color
    for (char c : id.internal) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
    s->color = static_cast<int>(h & 0x7fffffffu);
    const int rc = MPI_Comm_idup(MPI_COMM_WORLD, &s->dup, &s->dup_req);
    if (rc != MPI_SUCCESS)
      return fail(ncclSystemError, "ncclCommInitRank: MPI_Comm_idup: " + mpi_error_text(rc));
    s->async = ncclInProgress;
#else
    return fail(ncclSystemError, "ncclCommInitRank: " + std::to_string(nranks) +
                                     " ranks, but this emulated NCCL was built without MPI (one rank only)");
#endif
  }
  auto handle = std::make_unique<ncclComm>();
  handle->s = s;
  ncclComm* h = handle.get();
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lk(r.mu);
    r.comms.emplace(h, std::move(handle));
  }
  *out = h;
  if (!blocking) return static_cast<ncclResult_t>(s->async.load());
#if DROPNET_HAVE_MPI
  while (s->async.load() == ncclInProgress) {
    {
      std::lock_guard<std::mutex> lk(s->mu);
      progress_init(*s);
    }
    if (s->async.load() == ncclInProgress) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
#endif
  const int a = s->async.load();
  if (a != ncclSuccess) {  // a failed blocking init returns no communicator
    const std::string msg = s->error_message();
    Registry& r = registry();
    std::lock_guard<std::mutex> lk(r.mu);
    r.comms.erase(h);
    *out = nullptr;
    return fail(static_cast<ncclResult_t>(a), msg);
  }
  return ncclSuccess;
}

}  // namespace

ncclResult_t ncclGetVersion(int* version) {
  if (version == nullptr) return fail(ncclInvalidArgument, "ncclGetVersion: version is NULL");
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (id == nullptr) return fail(ncclInvalidArgument, "ncclGetUniqueId: uniqueId is NULL");
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  std::seed_seq seq{rd(), rd(), rd(), rd(), static_cast<unsigned>(Clock::now().time_since_epoch().count()),
                    static_cast<unsigned>(counter.fetch_add(1))};
  std::mt19937 gen(seq);
  std::memcpy(id->internal, kIdTag, sizeof kIdTag);
  for (size_t i = sizeof kIdTag; i < NCCL_UNIQUE_ID_BYTES; ++i) id->internal[i] = static_cast<char>(gen() & 0xff);
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
  return init(comm, nranks, commId, rank, true);
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank,
                                    ncclConfig_t* config) {
  bool blocking = true;
  if (config != nullptr) {
    if (config->magic != 0xcafebeef || config->size < offsetof(ncclConfig_t, cgaClusterSize))
      return fail(ncclInvalidArgument,
                  "ncclCommInitRankConfig: the config was not initialized with NCCL_CONFIG_INITIALIZER");
    if (config->blocking != NCCL_CONFIG_UNDEF_INT && config->blocking != 0 && config->blocking != 1)
      return fail(ncclInvalidArgument,
                  "ncclCommInitRankConfig: config.blocking is " + std::to_string(config->blocking) + " (0 or 1)");
    blocking = config->blocking != 0;
  }
  return init(comm, nranks, commId, rank, blocking);
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError) {
  std::shared_ptr<State> s = lookup(comm);
  if (!s) return fail(ncclInvalidArgument, "ncclCommGetAsyncError: not a communicator");
  if (asyncError == nullptr) return fail(ncclInvalidArgument, "ncclCommGetAsyncError: asyncError is NULL");
  if (s->aborted.load()) return fail(ncclInvalidUsage, "ncclCommGetAsyncError: the communicator was aborted");
#if DROPNET_HAVE_MPI
  if (s->async.load() == ncclInProgress) {
    std::lock_guard<std::mutex> lk(s->mu);
    progress_init(*s);
  }
#endif
  const int a = s->async.load();
  if (a != ncclSuccess && a != ncclInProgress) t_last_error = s->error_message();
  *asyncError = static_cast<ncclResult_t>(a);
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (comm == nullptr) return ncclSuccess;
  std::shared_ptr<State> s = lookup(comm);
  if (!s) return fail(ncclInvalidArgument, "ncclCommAbort: not a communicator (destroyed?)");
  if (s->aborted.exchange(true)) return fail(ncclInvalidUsage, "ncclCommAbort: the communicator was already aborted");
  return ncclSuccess;
}

ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  ncclResult_t err = ncclSuccess;
  std::shared_ptr<State> s = usable(comm, "ncclCommFinalize", &err);
  if (!s) return err;
  if (s->finalized.exchange(true))
    return fail(ncclInvalidUsage, "ncclCommFinalize: the communicator was already finalized");
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm == nullptr) return ncclSuccess;
  std::shared_ptr<State> s = lookup(comm);
  if (!s) return fail(ncclInvalidArgument, "ncclCommDestroy: not a communicator (destroyed already?)");
  if (s->aborted.load()) return fail(ncclInvalidUsage, "ncclCommDestroy: the communicator was aborted (ncclCommAbort frees it)");
  if (s->async.load() == ncclInProgress)
    return fail(ncclInvalidUsage,
                "ncclCommDestroy: the communicator is still initializing (poll ncclCommGetAsyncError, or abort it)");
  s->destroyed = true;
  Registry& r = registry();
  std::lock_guard<std::mutex> lk(r.mu);
  r.comms.erase(comm);  // the MPI communicator goes with the last queued operation
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (see ncclGetLastError)";
    case ncclSystemError: return "unhandled system error (see ncclGetLastError)";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument (see ncclGetLastError)";
    case ncclInvalidUsage: return "invalid usage (see ncclGetLastError)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
  }
}

const char* ncclGetLastError(ncclComm_t) { return t_last_error.c_str(); }

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  ncclResult_t err = ncclSuccess;
  std::shared_ptr<State> s = usable(comm, "ncclCommCount", &err);
  if (!s) return err;
  if (count == nullptr) return fail(ncclInvalidArgument, "ncclCommCount: count is NULL");
  *count = s->nranks;
  return ncclSuccess;
}

ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int* device) {
  ncclResult_t err = ncclSuccess;
  std::shared_ptr<State> s = usable(comm, "ncclCommCuDevice", &err);
  if (!s) return err;
  if (device == nullptr) return fail(ncclInvalidArgument, "ncclCommCuDevice: device is NULL");
  *device = s->device;
  return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  ncclResult_t err = ncclSuccess;
  std::shared_ptr<State> s = usable(comm, "ncclCommUserRank", &err);
  if (!s) return err;
  if (rank == nullptr) return fail(ncclInvalidArgument, "ncclCommUserRank: rank is NULL");
  *rank = s->rank;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  return collective({Kind::AllReduce, "ncclAllReduce", sendbuff, recvbuff, count, static_cast<int>(datatype), static_cast<int>(op), 0}, comm, stream);
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream) {
  return collective({Kind::Broadcast, "ncclBroadcast", sendbuff, recvbuff, count, static_cast<int>(datatype), ncclSum, root}, comm,
                    stream);
}

ncclResult_t ncclBcast(void* buff, size_t count, ncclDataType_t datatype, int root, ncclComm_t comm,
                       cudaStream_t stream) {
  return collective({Kind::Broadcast, "ncclBcast", buff, buff, count, static_cast<int>(datatype), ncclSum, root}, comm, stream);
}

ncclResult_t ncclReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                        int root, ncclComm_t comm, cudaStream_t stream) {
  return collective({Kind::Reduce, "ncclReduce", sendbuff, recvbuff, count, static_cast<int>(datatype), static_cast<int>(op), root}, comm, stream);
}

ncclResult_t ncclGroupStart() {
  ++t_group_depth;
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  if (t_group_depth == 0) return fail(ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
  --t_group_depth;
  return ncclSuccess;
}
