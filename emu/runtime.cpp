// The emulated CUDA runtime (emu/include/cuda_runtime.h): devices, memory, streams, events,
// errors and kernel execution. See emu/README.md.
//
// Execution model. Every stream is an in-order queue of ops (kernels, copies, memsets, library
// calls, event records). Nothing runs when it is queued: a queue runs when the host waits on it
// (cudaStreamSynchronize, cudaEventSynchronize / Query, a synchronous cudaMemcpy, cudaFree, ...),
// on the host thread that waits, under one process-wide lock. So work the host forgot to wait
// for has simply not happened yet, and a read of its result sees the old contents. An op that
// waits on an event (cudaStreamWaitEvent) first runs the other stream up to that event.
//
// A fault inside an op (an out-of-bounds library access, a divergent barrier, a pointer of another
// device) becomes the device's sticky error, as on a GPU: later ops of that device are dropped
// and every call that waits on the device returns it until cudaDeviceReset.
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <array>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "emu/emu.h"
#include "emu/fiber.h"

struct CUstream_st {
  int device = 0;
  unsigned flags = 0;
  bool legacy = false;     // the device's default stream (nullptr)
  bool destroyed = false;
  struct Op {
    std::string what;
    std::function<void()> fn;
    std::vector<std::pair<CUstream_st*, uint64_t>> deps;  // run these streams up to these ops first
  };
  std::deque<Op> queue;
  uint64_t queued = 0, done = 0;  // ops ever queued / run
};

struct CUevent_st {
  unsigned flags = 0;
  CUstream_st* stream = nullptr;  // of the last record (nullptr: never recorded)
  uint64_t seq = 0;               // the record is op number seq of that stream (1-based)
  uint64_t generation = 0;
  double time_ms = 0;             // when the last record ran
  bool destroyed = false;
};

struct CUmemPoolHandle_st {
  int device = 0;
  uint64_t release_threshold = 0;
};

namespace dn_emu {

namespace {

using Clock = std::chrono::steady_clock;

long env_long(const char* name, long fallback, long lo, long hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || x < lo || x > hi) {
    std::fprintf(stderr, "dropnet emulated CUDA: %s=%s is not an integer in [%ld, %ld]; using %ld\n", name, v, lo, hi,
                 fallback);
    return fallback;
  }
  return x;
}

struct Alloc {
  size_t size = 0;
  int device = -1;  // -1: pinned host memory
  bool pinned = false;
  bool pooled = false;  // cudaMallocAsync
};

struct DeviceState {
  size_t capacity = 0, used = 0;
  cudaError_t sticky = cudaSuccess;
  std::string sticky_text;
  CUstream_st* legacy = nullptr;
  std::vector<CUstream_st*> streams;  // every stream of the device, the legacy one first
  CUmemPoolHandle_st pool;
};

void write_launch_log_at_exit();

struct State {
  std::recursive_mutex mu;
  std::vector<DeviceState> devices;
  std::map<uintptr_t, Alloc> allocs;  // base -> allocation
  int sms = 132;
  bool fibers_everywhere = DN_EMU_TSAN != 0;
  std::map<std::string, long> launches;
  // Events and destroyed streams are kept (a queued record may still write an event after
  // cudaEventDestroy; an event may name a destroyed stream): held here, they are not leaks.
  std::vector<std::unique_ptr<CUevent_st>> events;
  std::vector<std::unique_ptr<CUstream_st>> dead_streams;
  Clock::time_point epoch = Clock::now();

  State() {
    const int n = static_cast<int>(env_long("DROPNET_EMU_DEVICES", 2, 1, 64));
    const size_t capacity = static_cast<size_t>(env_long("DROPNET_EMU_MEMORY_MB", 8192, 1, 1 << 20)) << 20;
    sms = static_cast<int>(env_long("DROPNET_EMU_SMS", 132, 1, 1024));
    if (const char* f = std::getenv("DROPNET_EMU_FIBERS")) fibers_everywhere = fibers_everywhere || std::strcmp(f, "all") == 0;
    if (std::getenv("DROPNET_EMU_LAUNCH_LOG") != nullptr) std::atexit(&write_launch_log_at_exit);
    devices.resize(static_cast<size_t>(n));
    for (int d = 0; d < n; ++d) {
      DeviceState& ds = devices[static_cast<size_t>(d)];
      ds.capacity = capacity;
      ds.legacy = new CUstream_st();
      ds.legacy->device = d;
      ds.legacy->legacy = true;
      ds.streams.push_back(ds.legacy);
      ds.pool.device = d;
    }
  }
};

State& st() {
  static State* s = new State();  // never destroyed: outlives static tensors freed at exit
  return *s;
}

thread_local int t_device = 0;
thread_local cudaError_t t_last = cudaSuccess;
thread_local cudaError_t t_detail_code = cudaSuccess;  // the error that t_last_detail explains
thread_local std::string t_last_detail;
thread_local std::string t_error_text;

using Lock = std::lock_guard<std::recursive_mutex>;

const char* base_text(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    default: return "unknown error";
  }
}

cudaError_t fail(cudaError_t e, const std::string& detail) {
  t_last = e;
  t_detail_code = e;
  t_last_detail = detail;
  return e;
}

DeviceState& dev(int d) { return st().devices[static_cast<size_t>(d)]; }
bool valid_device(int d) { return d >= 0 && d < static_cast<int>(st().devices.size()); }

CUstream_st* resolve(cudaStream_t s) { return s == nullptr ? dev(t_device).legacy : s; }

bool find_alloc(const void* p, size_t bytes, Alloc* out, uintptr_t* base) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto& allocs = st().allocs;
  auto it = allocs.upper_bound(a);
  if (it == allocs.begin()) return false;
  --it;
  if (a < it->first || a + bytes > it->first + it->second.size) return false;
  if (out) *out = it->second;
  if (base) *base = it->first;
  return true;
}

std::string ptr_text(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

// ---- queues ------------------------------------------------------------------------------------

double now_ms() { return std::chrono::duration<double, std::milli>(Clock::now() - st().epoch).count(); }

void run_stream(CUstream_st* s, uint64_t upto);

void run_op(CUstream_st* s, CUstream_st::Op& op) {
  for (auto& [other, seq] : op.deps) run_stream(other, seq);
  DeviceState& ds = dev(s->device);
  if (ds.sticky != cudaSuccess) return;  // a faulted device runs nothing more
  try {
    op.fn();
  } catch (const Fault& f) {
    ds.sticky = f.code;
    ds.sticky_text = op.what + ": " + f.what();
  } catch (const std::exception& e) {
    ds.sticky = cudaErrorLaunchFailure;
    ds.sticky_text = op.what + ": " + e.what();
  }
}

void run_stream(CUstream_st* s, uint64_t upto) {
  while (s->done < upto && !s->queue.empty()) {
    CUstream_st::Op op = std::move(s->queue.front());
    s->queue.pop_front();
    run_op(s, op);
    ++s->done;
  }
}

void run_all(CUstream_st* s) { run_stream(s, s->queued); }

cudaError_t device_error(int d) {
  DeviceState& ds = dev(d);
  if (ds.sticky == cudaSuccess) return cudaSuccess;
  return fail(ds.sticky, ds.sticky_text);
}

// The streams an op on s must wait for: the legacy stream waits for every blocking stream of its
// device, a blocking stream for the legacy stream (CUDA's legacy default-stream semantics).
std::vector<std::pair<CUstream_st*, uint64_t>> implicit_deps(CUstream_st* s) {
  std::vector<std::pair<CUstream_st*, uint64_t>> deps;
  if (s->flags & cudaStreamNonBlocking) return deps;
  for (CUstream_st* o : dev(s->device).streams) {
    if (o == s || o->destroyed || (o->flags & cudaStreamNonBlocking)) continue;
    if (s->legacy || o->legacy) deps.emplace_back(o, o->queued);
  }
  return deps;
}

cudaError_t push(CUstream_st* s, std::string what, std::function<void()> fn,
                 std::vector<std::pair<CUstream_st*, uint64_t>> deps = {}) {
  auto implicit = implicit_deps(s);
  deps.insert(deps.end(), implicit.begin(), implicit.end());
  s->queue.push_back({std::move(what), std::move(fn), std::move(deps)});
  ++s->queued;
  return cudaSuccess;
}

cudaError_t check_stream(cudaStream_t s) {
  if (s != nullptr && s->destroyed) return fail(cudaErrorInvalidResourceHandle, "the stream was destroyed");
  return cudaSuccess;
}

// ---- kernel execution ----------------------------------------------------------------------------

enum class Wait : int { None, Block, Warp };

struct Team;
// The team whose fiber is running on this host thread, and which fiber (-1: none). Set by the
// scheduler, read by the fibers: relaxed atomics, which TSan neither reports nor takes as ordering.
thread_local std::atomic<Team*> t_team_{nullptr};
thread_local std::atomic<int> t_fiber_{-1};
Team* cur_team() { return t_team_.load(std::memory_order_relaxed); }
int cur_fiber() { return t_fiber_.load(std::memory_order_relaxed); }
thread_local dim3 t_thread_idx, t_block_idx, t_block_dim, t_grid_dim;

// The fibers of one host thread, reused from block to block.
struct Team {
  struct Member {
    Fiber fiber;
    dim3 idx;
    std::atomic<int> wait{0};
    std::atomic<unsigned> barriers{0};     // block barriers passed
    std::atomic<unsigned> warp_syncs{0};   // warp barriers passed
    uint64_t slot = 0;                     // warp exchange value
    bool vote = false;
    const char* collective = nullptr;      // the warp-collective op (mma, ldmatrix) it waits at
    const void* operands = nullptr;        // and its operands
    // cp.async copies issued and not yet completed, each with its commit-group number (the
    // number of commits before it: an uncommitted copy is in group `commits`).
    struct AsyncCopy {
      void* dst;
      const void* src;
      int cp_size, src_size;
      unsigned group;
    };
    std::vector<AsyncCopy> copies;
    unsigned commits = 0;
  };
  std::vector<std::unique_ptr<Member>> members;
  int n = 0;
  const std::function<void()>* body = nullptr;
  std::atomic<long> sync_calls{0};
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  // TSan happens-before tokens: the launch, the block's end, two generations of the block
  // barrier and of each warp's barrier.
  char launch_token = 0, done_token = 0, error_token = 0;
  char block_token[2] = {};
  std::vector<std::array<char, 2>> warp_token;

  static void entry(void* arg) {
    auto* self = cur_team();
    const int me = static_cast<int>(reinterpret_cast<intptr_t>(arg));
    (void)me;
    hb_acquire(&self->launch_token);
    try {
      (*self->body)();
    } catch (...) {
      self->error = std::current_exception();
      hb_release(&self->error_token);
      self->failed.store(true, std::memory_order_relaxed);
    }
    hb_release(&self->done_token);
  }
};

// Never destroyed: the fibers' last stores would otherwise race (for TSan) with the destructor.
Team& team() {
  static thread_local Team* t = new Team();
  return *t;
}

[[noreturn]] void kernel_fault(const std::string& what) { throw Fault(cudaErrorLaunchFailure, what); }

std::string dim_text(dim3 d) { return "(" + std::to_string(d.x) + ", " + std::to_string(d.y) + ", " + std::to_string(d.z) + ")"; }

Team::Member& current_member(const char* what) {
  if (cur_team() == nullptr || cur_fiber() < 0)
    kernel_fault(std::string(what) + " outside a block's fibers: a barrier that block (0, 0, 0) did not reach (block " +
                 dim_text(t_block_idx) + ", thread " + dim_text(t_thread_idx) + ")");
  return *cur_team()->members[static_cast<size_t>(cur_fiber())];
}

void wait_here(Team::Member& m, Wait w) {
  m.wait.store(static_cast<int>(w), std::memory_order_relaxed);
  cur_team()->sync_calls.fetch_add(1, std::memory_order_relaxed);
  m.fiber.suspend();  // resumed by the scheduler, which has set this thread's coordinates
}

// A block abandoned on a fault: every fiber's work so far happens before what the scheduler does
// next (for TSan: the fibers released these tokens on finishing or at their barrier).
void abandon(Team& tm) {
  hb_acquire(&tm.done_token);
  hb_acquire(&tm.error_token);
  hb_acquire(&tm.block_token[0]);
  hb_acquire(&tm.block_token[1]);
  for (auto& w : tm.warp_token) {
    hb_acquire(&w[0]);
    hb_acquire(&w[1]);
  }
}

// Runs every thread of one block as fibers until all have finished.
void run_block_fibers(Team& tm, const char* name) {
  const int n = tm.n;
  for (int t = 0; t < n; ++t) {
    Team::Member& m = *tm.members[static_cast<size_t>(t)];
    m.wait.store(0, std::memory_order_relaxed);
    m.barriers.store(0, std::memory_order_relaxed);
    m.warp_syncs.store(0, std::memory_order_relaxed);
    m.collective = nullptr;
    m.copies.clear();
    m.commits = 0;
    m.fiber.reset(&Team::entry, reinterpret_cast<void*>(static_cast<intptr_t>(t)));
  }
  const int warps = (n + 31) / 32;
  if (static_cast<int>(tm.warp_token.size()) < warps) tm.warp_token.resize(static_cast<size_t>(warps));
  hb_release(&tm.launch_token);  // everything above (and before the launch) happens before the block
  for (;;) {
    for (int t = 0; t < n; ++t) {
      Team::Member& m = *tm.members[static_cast<size_t>(t)];
      if (m.fiber.finished() || m.wait.load(std::memory_order_relaxed) != 0) continue;
      t_team_.store(&tm, std::memory_order_relaxed);
      t_fiber_.store(t, std::memory_order_relaxed);
      t_thread_idx = m.idx;
      m.fiber.resume();
      t_team_.store(nullptr, std::memory_order_relaxed);
      t_fiber_.store(-1, std::memory_order_relaxed);
      if (tm.failed.load(std::memory_order_relaxed)) break;
    }
    if (tm.failed.load(std::memory_order_relaxed)) {
      // Finish no other fiber: the block is abandoned (its fibers are reset before reuse).
      abandon(tm);
      std::exception_ptr e = tm.error;
      tm.error = nullptr;
      tm.failed.store(false, std::memory_order_relaxed);
      std::rethrow_exception(e);
    }
    int finished = 0, at_block = 0;
    bool released = false;
    for (int w = 0; w < warps; ++w) {
      int live = 0, waiting = 0;
      for (int t = w * 32; t < std::min(n, w * 32 + 32); ++t) {
        Team::Member& m = *tm.members[static_cast<size_t>(t)];
        if (m.fiber.finished()) continue;
        ++live;
        waiting += m.wait.load(std::memory_order_relaxed) == static_cast<int>(Wait::Warp);
      }
      if (live > 0 && waiting == live) {
        for (int t = w * 32; t < std::min(n, w * 32 + 32); ++t) {
          Team::Member& m = *tm.members[static_cast<size_t>(t)];
          if (!m.fiber.finished()) m.wait.store(0, std::memory_order_relaxed);
        }
        released = true;
      }
    }
    if (released) continue;
    for (int t = 0; t < n; ++t) {
      Team::Member& m = *tm.members[static_cast<size_t>(t)];
      if (m.fiber.finished())
        ++finished;
      else
        at_block += m.wait.load(std::memory_order_relaxed) == static_cast<int>(Wait::Block);
    }
    if (finished == n) break;
    if (at_block == n) {
      for (int t = 0; t < n; ++t) tm.members[static_cast<size_t>(t)]->wait.store(0, std::memory_order_relaxed);
      continue;
    }
    // Some threads wait at a barrier that the others will never reach.
    abandon(tm);
    throw Fault(cudaErrorLaunchFailure,
                std::string("kernel ") + name + ", block " + dim_text(t_block_idx) + ": " + std::to_string(at_block) +
                    " of " + std::to_string(n) + " threads wait at __syncthreads while " + std::to_string(finished) +
                    " have exited and " + std::to_string(n - finished - at_block) +
                    " wait at a warp barrier (a barrier in divergent code)");
  }
  hb_acquire(&tm.done_token);
}

void run_grid(const std::string& name, dim3 grid, dim3 block, const std::function<void()>& body) {
  Team& tm = team();
  const int n = static_cast<int>(block.x * block.y * block.z);
  while (static_cast<int>(tm.members.size()) < n) tm.members.push_back(std::make_unique<Team::Member>());
  tm.n = n;
  tm.body = &body;
  for (int t = 0; t < n; ++t)
    tm.members[static_cast<size_t>(t)]->idx =
        dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
  t_block_dim = block;
  t_grid_dim = grid;
  bool fibers = true;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        t_block_idx = dim3(x, y, z);
        if (fibers) {
          tm.sync_calls.store(0, std::memory_order_relaxed);
          run_block_fibers(tm, name.c_str());
          // A kernel whose first block never waits runs its other blocks thread after thread on the
          // host stack (much faster); a barrier reached there is reported as divergent.
          if (tm.sync_calls.load(std::memory_order_relaxed) == 0 && !st().fibers_everywhere) fibers = false;
        } else {
          for (int t = 0; t < n; ++t) {
            t_thread_idx = tm.members[static_cast<size_t>(t)]->idx;
            body();
          }
        }
      }
}

// "dir/file.cu:ns::kernel<128" -> "file.cu:kernel"; a name without a file keeps no file part.
std::string strip_name(const char* name) {
  std::string s = name, file;
  const size_t colon = s.find(':');
  if (colon != std::string::npos && colon > 0 && s.compare(colon, 2, "::") != 0) {
    file = s.substr(0, colon);
    const size_t slash = file.rfind('/');
    if (slash != std::string::npos) file = file.substr(slash + 1);
    s = s.substr(colon + 1);
  }
  const size_t lt = s.find('<');
  if (lt != std::string::npos) s.resize(lt);
  while (!s.empty() && (s.back() == ' ' || s.back() == '(')) s.pop_back();
  const size_t ns = s.rfind("::");
  if (ns != std::string::npos) s = s.substr(ns + 2);
  while (!s.empty() && (s.front() == '(' || s.front() == ' ')) s.erase(s.begin());
  return file.empty() ? s : file + ":" + s;
}

void write_launch_log_at_exit() {
  const char* path = std::getenv("DROPNET_EMU_LAUNCH_LOG");
  if (path == nullptr || *path == '\0') return;
  std::FILE* f = std::fopen(path, "a");
  if (f == nullptr) return;
  for (const auto& [name, count] : launched_kernels()) std::fprintf(f, "%s %ld\n", name.c_str(), count);
  std::fclose(f);
}

}  // namespace

// ---- device-side entry points ------------------------------------------------------------------

void syncthreads() {
  Team::Member& m = current_member("__syncthreads");
  Team* tm = cur_team();
  const unsigned gen = m.barriers.load(std::memory_order_relaxed);
  hb_release(&tm->block_token[gen % 2]);
  wait_here(m, Wait::Block);
  hb_acquire(&tm->block_token[gen % 2]);
  m.barriers.store(gen + 1, std::memory_order_relaxed);
}

namespace {
void warp_barrier(Team::Member& m) {
  Team* tm = cur_team();
  const size_t warp = static_cast<size_t>(cur_fiber() / 32);
  const unsigned gen = m.warp_syncs.load(std::memory_order_relaxed);
  hb_release(&tm->warp_token[warp][gen % 2]);
  wait_here(m, Wait::Warp);
  hb_acquire(&tm->warp_token[warp][gen % 2]);
  m.warp_syncs.store(gen + 1, std::memory_order_relaxed);
}
}  // namespace

void syncwarp(unsigned) { warp_barrier(current_member("__syncwarp")); }

uint64_t warp_exchange(unsigned, uint64_t value, int src_lane) {
  Team::Member& m = current_member("a warp shuffle");
  Team* tm = cur_team();
  m.slot = value;
  warp_barrier(m);
  const int warp_base = cur_fiber() - cur_fiber() % 32;
  const int src = warp_base + src_lane;
  const uint64_t got = src < tm->n ? tm->members[static_cast<size_t>(src)]->slot : value;
  warp_barrier(m);
  return got;
}

unsigned warp_ballot(unsigned mask, bool pred) {
  Team::Member& m = current_member("a warp vote");
  Team* tm = cur_team();
  m.vote = pred;
  warp_barrier(m);
  const int warp_base = cur_fiber() - cur_fiber() % 32;
  unsigned bits = 0;
  for (int l = 0; l < 32 && warp_base + l < tm->n; ++l)
    if (tm->members[static_cast<size_t>(warp_base + l)]->vote) bits |= 1u << l;
  warp_barrier(m);
  return bits & mask;
}

void warp_collective(const char* what, const void* operands, void (*fn)(const void* const* lanes, void* ctx),
                     void* ctx) {
  Team::Member& m = current_member(what);
  Team* tm = cur_team();
  m.collective = what;
  m.operands = operands;
  warp_barrier(m);
  const int warp_base = cur_fiber() - cur_fiber() % 32;
  const void* lanes[32];
  for (int l = 0; l < 32; ++l) {
    const int t = warp_base + l;
    const char* why = nullptr;
    if (t >= tm->n)
      why = "does not exist (the block's size is not a multiple of 32)";
    else if (tm->members[static_cast<size_t>(t)]->fiber.finished())
      why = "has exited";
    else if (tm->members[static_cast<size_t>(t)]->collective != what)
      why = "waits at another warp barrier";
    if (why != nullptr)
      kernel_fault(std::string(what) + " (block " + dim_text(t_block_idx) + ", warp " + std::to_string(warp_base / 32) +
                   "): lane " + std::to_string(l) + " " + why +
                   "; .aligned warp-collective instructions need all 32 lanes of a converged warp");
    lanes[l] = tm->members[static_cast<size_t>(t)]->operands;
  }
  fn(lanes, ctx);
  warp_barrier(m);
  m.collective = nullptr;
}

namespace {
void complete_copy(const Team::Member::AsyncCopy& c) {
  if (c.src_size > 0) std::memcpy(c.dst, c.src, static_cast<size_t>(c.src_size));
  std::memset(static_cast<char*>(c.dst) + c.src_size, 0, static_cast<size_t>(c.cp_size - c.src_size));
}
}  // namespace

void cp_async(void* dst, const void* src, int cp_size, int src_size) {
  if (src_size < 0 || src_size > cp_size)
    kernel_fault("cp.async: src-size " + std::to_string(src_size) + " outside [0, " + std::to_string(cp_size) + "]");
  if (reinterpret_cast<uintptr_t>(dst) % static_cast<uintptr_t>(cp_size) != 0 ||
      reinterpret_cast<uintptr_t>(src) % static_cast<uintptr_t>(cp_size) != 0)
    kernel_fault("cp.async: a " + std::to_string(cp_size) + "-byte copy between addresses not aligned to it");
#if !DN_EMU_TSAN
  // The source must lie in one allocation (device or pinned memory), as the hardware's would fault.
  // (Not under TSan: the allocation table's lock would order the fibers, hiding their races; the
  // ASan build checks every byte read.)
  Range r;
  if (src_size > 0 && !find_range(src, static_cast<size_t>(src_size), &r))
    kernel_fault("cp.async: " + std::to_string(src_size) + " bytes at " + ptr_text(src) +
                 " are not inside one device allocation (block " + dim_text(t_block_idx) + ", thread " +
                 dim_text(t_thread_idx) + ")");
#endif
  const Team::Member::AsyncCopy c{dst, src, cp_size, src_size, 0};
  if (cur_team() == nullptr || cur_fiber() < 0) {  // a kernel run without fibers: no later wait to defer to
    complete_copy(c);
    return;
  }
  Team::Member& m = current_member("cp.async");
  m.copies.push_back(c);
  m.copies.back().group = m.commits;
}

void cp_async_commit() {
  if (cur_team() == nullptr || cur_fiber() < 0) return;
  ++current_member("cp.async.commit_group").commits;
}

void cp_async_wait(int pending) {
  if (cur_team() == nullptr || cur_fiber() < 0) return;
  Team::Member& m = current_member("cp.async.wait_group");
  // Groups numbered below commits - pending are complete; uncommitted copies are not waited for.
  const unsigned done_below = m.commits >= static_cast<unsigned>(pending) ? m.commits - static_cast<unsigned>(pending) : 0;
  size_t kept = 0;
  for (size_t i = 0; i < m.copies.size(); ++i) {
    if (m.copies[i].group < done_below)
      complete_copy(m.copies[i]);
    else
      m.copies[kept++] = m.copies[i];
  }
  m.copies.resize(kept);
}

// The built-in variables read through these (emu/include/cuda_runtime.h): not instrumented, so
// TSan does not take the scheduler's updates for races between the fibers that read them.
__attribute__((no_sanitize_thread)) dim3 builtin_thread_idx() { return t_thread_idx; }
__attribute__((no_sanitize_thread)) dim3 builtin_block_idx() { return t_block_idx; }
__attribute__((no_sanitize_thread)) dim3 builtin_block_dim() { return t_block_dim; }
__attribute__((no_sanitize_thread)) dim3 builtin_grid_dim() { return t_grid_dim; }

cudaError_t launch_body(const char* name, dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                        const void* const* pointers, int npointers, std::function<void()> body) {
  Lock lock(st().mu);
  if (cudaError_t e = check_stream(s); e != cudaSuccess) return e;
  CUstream_st* q = resolve(s);
  const std::string kname = strip_name(name);
  const unsigned long long threads = static_cast<unsigned long long>(block.x) * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0)
    return fail(cudaErrorInvalidConfiguration, "kernel " + kname + ": a zero grid or block dimension, grid " +
                                                   dim_text(grid) + ", block " + dim_text(block));
  if (threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64)
    return fail(cudaErrorInvalidConfiguration, "kernel " + kname + ": block " + dim_text(block) + " (" +
                                                   std::to_string(threads) +
                                                   " threads; at most 1024, and z at most 64)");
  if (grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
    return fail(cudaErrorInvalidConfiguration,
                "kernel " + kname + ": grid " + dim_text(grid) + " (y and z at most 65535)");
  if (smem > 48 * 1024)
    return fail(cudaErrorInvalidValue, "kernel " + kname + ": " + std::to_string(smem) +
                                           " bytes of dynamic shared memory (at most 48 KB without an opt-in)");
  if (q->device != t_device)
    return fail(cudaErrorInvalidResourceHandle, "kernel " + kname + " launched on cuda:" + std::to_string(t_device) +
                                                    " into a stream of cuda:" + std::to_string(q->device));
  for (int i = 0; i < npointers; ++i) {
    const void* p = pointers[i];
    if (p == nullptr) continue;
    Alloc a;
    if (!find_alloc(p, 0, &a, nullptr))
      return fail(cudaErrorIllegalAddress, "kernel " + kname + ": pointer argument " + ptr_text(p) +
                                               " is not device memory (host memory or freed)");
    if (!a.pinned && a.device != q->device)
      return fail(cudaErrorIllegalAddress, "kernel " + kname + " on cuda:" + std::to_string(q->device) +
                                               ": pointer argument " + ptr_text(p) + " is memory of cuda:" +
                                               std::to_string(a.device));
  }
  return push(q, "kernel " + kname, [kname, grid, block, body = std::move(body)]() {
    {
      Lock l(st().mu);
      ++st().launches[kname];
    }
    run_grid(kname, grid, block, body);
  });
}

// ---- the internal API (emu.h) ----------------------------------------------------------------------

bool find_range(const void* p, size_t bytes, Range* out) {
  Lock lock(st().mu);
  Alloc a;
  uintptr_t base = 0;
  if (!find_alloc(p, bytes, &a, &base)) return false;
  if (out) *out = Range{a.device, a.pinned, reinterpret_cast<const char*>(base), a.size};
  return true;
}

void check_device_access(int device, const void* p, size_t bytes, const std::string& what) {
  if (bytes == 0) return;
  Range r;
  if (p == nullptr) throw Fault(cudaErrorIllegalAddress, what + ": null pointer");
  if (!find_range(p, bytes, &r)) {
    Range start;
    if (find_range(p, 1, &start))
      throw Fault(cudaErrorIllegalAddress, what + ": " + std::to_string(bytes) + " bytes at " + ptr_text(p) +
                                               " run past the end of its " + std::to_string(start.size) +
                                               "-byte allocation (offset " +
                                               std::to_string(static_cast<const char*>(p) - start.base) + ")");
    throw Fault(cudaErrorIllegalAddress, what + ": " + ptr_text(p) + " is not device memory");
  }
  if (!r.pinned && r.device != device)
    throw Fault(cudaErrorIllegalAddress, what + ": " + ptr_text(p) + " is memory of cuda:" +
                                             std::to_string(r.device) + ", accessed from cuda:" +
                                             std::to_string(device));
}

int current_device() { return t_device; }
int device_count() { return static_cast<int>(st().devices.size()); }
int stream_device(cudaStream_t s) {
  Lock lock(st().mu);
  return resolve(s)->device;
}

cudaError_t enqueue(cudaStream_t s, const char* what, std::function<void()> fn) {
  Lock lock(st().mu);
  if (cudaError_t e = check_stream(s); e != cudaSuccess) return e;
  return push(resolve(s), what, std::move(fn));
}

cudaError_t drain(cudaStream_t s) { return cudaStreamSynchronize(s); }

cudaError_t set_error(cudaError_t e, const std::string& detail) { return fail(e, detail); }

std::vector<std::pair<std::string, long>> launched_kernels() {
  Lock lock(st().mu);
  return {st().launches.begin(), st().launches.end()};
}

}  // namespace dn_emu

// ---- the runtime API ----------------------------------------------------------------------------

using dn_emu::Fault;

namespace {

using namespace dn_emu;

// Device memory, as opposed to pinned host memory.
bool is_device(const Alloc& a) { return !a.pinned; }

// What [p, p + bytes) is: 1 device memory (device in *d), 0 host memory (pinned or pageable),
// -1 the range starts in an allocation but runs past its end.
int classify(const void* p, size_t bytes, int* d, bool* pinned) {
  Alloc a;
  if (find_alloc(p, bytes, &a, nullptr)) {
    *d = a.device;
    *pinned = a.pinned;
    return is_device(a) ? 1 : 0;
  }
  // (At least its first byte: a pointer just past one allocation's end may be the start of
  // unrelated host memory, as TSan's allocator packs blocks end to end.)
  if (bytes > 0 && find_alloc(p, 1, &a, nullptr)) return -1;
  *d = -1;
  *pinned = false;
  return 0;
}

cudaError_t copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s, bool sync) {
  Lock lock(st().mu);
  if (cudaError_t e = check_stream(s); e != cudaSuccess) return e;
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return fail(cudaErrorInvalidValue, "cudaMemcpy with a null pointer");
  int dd = -1, sd = -1;
  bool dpin = false, spin = false;
  const int dk = classify(dst, bytes, &dd, &dpin), sk = classify(src, bytes, &sd, &spin);
  if (dk < 0 || sk < 0)
    return fail(cudaErrorInvalidValue, "cudaMemcpy of " + std::to_string(bytes) + " bytes runs past the end of the " +
                                           std::string(dk < 0 ? "destination" : "source") + " allocation");
  const bool want_dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool want_src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind != cudaMemcpyDefault) {
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
      return fail(cudaErrorInvalidMemcpyDirection, "unknown cudaMemcpyKind");
    if ((dk == 1) != want_dst_dev || (sk == 1) != want_src_dev)
      return fail(cudaErrorInvalidValue,
                  std::string("cudaMemcpy direction does not match the pointers: the destination is ") +
                      (dk == 1 ? "device" : "host") + " memory, the source " + (sk == 1 ? "device" : "host") +
                      " memory");
  }
  CUstream_st* q = resolve(s);
  if (sync) {
    // A synchronous copy runs on the legacy stream: after the device's blocking streams.
    run_stream(q, q->queued);
    for (CUstream_st* o : dev(q->device).streams)
      if (!(o->flags & cudaStreamNonBlocking)) run_all(o);
    if (cudaError_t e = device_error(q->device); e != cudaSuccess) return e;
    std::memmove(dst, src, bytes);
    return cudaSuccess;
  }
  const bool src_pageable = sk == 0 && !spin, dst_pageable = dk == 0 && !dpin;
  if (dst_pageable) {
    // Device to pageable host: returns once the copy is done.
    run_all(q);
    if (cudaError_t e = device_error(q->device); e != cudaSuccess) return e;
    std::memmove(dst, src, bytes);
    return cudaSuccess;
  }
  if (src_pageable) {
    // Pageable host to device: the source is staged now; the host may reuse it at once.
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src),
                                                       static_cast<const char*>(src) + bytes);
    return push(q, "cudaMemcpyAsync", [dst, staged, bytes] { std::memcpy(dst, staged->data(), bytes); });
  }
  return push(q, "cudaMemcpyAsync", [dst, src, bytes] { std::memmove(dst, src, bytes); });
}

cudaError_t allocate(void** p, size_t bytes, int device, bool pinned, bool pooled) {
  if (p == nullptr) return fail(cudaErrorInvalidValue, "allocation into a null pointer");
  *p = nullptr;
  if (!pinned) {
    DeviceState& ds = dev(device);
    if (bytes > ds.capacity - ds.used)
      return fail(cudaErrorMemoryAllocation,
                  "cuda:" + std::to_string(device) + ": " + std::to_string(bytes) + " bytes requested, " +
                      std::to_string(ds.used) + " of " + std::to_string(ds.capacity) +
                      " in use (DROPNET_EMU_MEMORY_MB sets the emulated capacity)");
  }
  void* q = nullptr;
  if (posix_memalign(&q, 256, bytes == 0 ? 1 : bytes) != 0)
    return fail(cudaErrorMemoryAllocation, "the host has no " + std::to_string(bytes) + " bytes for the emulated device");
  // Fresh device memory holds garbage on a GPU: here all-ones bytes (NaN floats), so a kernel that
  // reads what nobody wrote produces NaN instead of a lucky zero.
  if (!pinned) std::memset(q, 0xff, bytes);
  st().allocs[reinterpret_cast<uintptr_t>(q)] = Alloc{bytes == 0 ? 1 : bytes, pinned ? -1 : device, pinned, pooled};
  if (!pinned) dev(device).used += bytes == 0 ? 1 : bytes;
  *p = q;
  return cudaSuccess;
}

cudaError_t release(void* p, bool want_pinned) {
  if (p == nullptr) return cudaSuccess;
  auto it = st().allocs.find(reinterpret_cast<uintptr_t>(p));
  if (it == st().allocs.end() || it->second.pinned != want_pinned)
    return fail(cudaErrorInvalidValue, std::string(want_pinned ? "cudaFreeHost" : "cudaFree") + " of " + ptr_text(p) +
                                           ", which is not the start of a live " +
                                           (want_pinned ? "pinned host" : "device") + " allocation");
  if (!want_pinned) dev(it->second.device).used -= it->second.size;
  st().allocs.erase(it);
  std::free(p);
  return cudaSuccess;
}

}  // namespace

const char* cudaGetErrorString(cudaError_t e) {
  if (e == t_detail_code && !t_last_detail.empty()) {
    t_error_text = std::string(base_text(e)) + " (emulated device: " + t_last_detail + ")";
    return t_error_text.c_str();
  }
  return base_text(e);
}

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    default: return "cudaErrorUnknown";
  }
}

// Returns and clears the last error; its detail stays readable through cudaGetErrorString.
cudaError_t cudaGetLastError() {
  const cudaError_t e = t_last;
  t_last = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return t_last; }

cudaError_t cudaGetDeviceCount(int* n) {
  if (n == nullptr) return fail(cudaErrorInvalidValue, "null count");
  *n = device_count();
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (!valid_device(device))
    return fail(cudaErrorInvalidDevice, "cuda:" + std::to_string(device) + " does not exist (" +
                                            std::to_string(device_count()) + " emulated devices; DROPNET_EMU_DEVICES)");
  t_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return fail(cudaErrorInvalidValue, "null device");
  *device = t_device;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  Lock lock(st().mu);
  for (CUstream_st* s : dev(t_device).streams) run_all(s);
  return device_error(t_device);
}

cudaError_t cudaDeviceReset() {
  Lock lock(st().mu);
  DeviceState& ds = dev(t_device);
  for (CUstream_st* s : ds.streams) {
    s->queue.clear();
    s->done = s->queued;
  }
  ds.sticky = cudaSuccess;
  ds.sticky_text.clear();
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return fail(cudaErrorInvalidValue, "null properties");
  if (!valid_device(device)) return fail(cudaErrorInvalidDevice, "cuda:" + std::to_string(device));
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "dropnet emulated device %d", device);
  prop->totalGlobalMem = dev(device).capacity;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = st().sms;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (value == nullptr) return fail(cudaErrorInvalidValue, "null attribute");
  if (!valid_device(device)) return fail(cudaErrorInvalidDevice, "cuda:" + std::to_string(device));
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = st().sms; break;
    case cudaDevAttrMemoryClockRate: *value = 2619000; break;      // kHz, as an H100 SXM reports
    case cudaDevAttrGlobalMemoryBusWidth: *value = 5120; break;    // bits
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    default: return fail(cudaErrorInvalidValue, "device attribute " + std::to_string(int(attr)) + " is not emulated");
  }
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  Lock lock(st().mu);
  DeviceState& ds = dev(t_device);
  if (free) *free = ds.capacity - ds.used;
  if (total) *total = ds.capacity;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  Lock lock(st().mu);
  return allocate(p, bytes, t_device, false, false);
}

cudaError_t cudaFree(void* p) {
  Lock lock(st().mu);
  // cudaFree synchronizes the device first.
  Alloc a;
  if (p != nullptr && find_alloc(p, 0, &a, nullptr) && !a.pinned)
    for (CUstream_st* s : dev(a.device).streams) run_all(s);
  return release(p, false);
}

cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
  Lock lock(st().mu);
  return allocate(p, bytes, -1, true, false);
}

cudaError_t cudaMallocHost(void** p, size_t bytes) { return cudaHostAlloc(p, bytes, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void* p) {
  Lock lock(st().mu);
  // The host may not free memory that queued copies still read: run everything first (as the
  // real call synchronizes the context).
  for (DeviceState& ds : st().devices)
    for (CUstream_st* s : ds.streams) run_all(s);
  return release(p, true);
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s) {
  Lock lock(st().mu);
  if (cudaError_t e = check_stream(s); e != cudaSuccess) return e;
  if (bytes == 0) return cudaSuccess;
  Alloc a;
  if (!find_alloc(p, bytes, &a, nullptr) || a.pinned)
    return fail(cudaErrorInvalidValue, "cudaMemset of " + std::to_string(bytes) + " bytes at " + ptr_text(p) +
                                           ": not inside one device allocation");
  return push(resolve(s), "cudaMemsetAsync", [p, value, bytes] { std::memset(p, value, bytes); });
}

cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  Lock lock(st().mu);
  if (cudaError_t e = cudaMemsetAsync(p, value, bytes, nullptr); e != cudaSuccess) return e;
  return cudaStreamSynchronize(nullptr);
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return copy(dst, src, bytes, kind, nullptr, true);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
  return copy(dst, src, bytes, kind, s, false);
}

cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s) {
  Lock lock(st().mu);
  if (cudaError_t e = check_stream(s); e != cudaSuccess) return e;
  const int d = resolve(s)->device;
  if (d != t_device)
    return fail(cudaErrorInvalidResourceHandle, "cudaMallocAsync on cuda:" + std::to_string(t_device) +
                                                    " with a stream of cuda:" + std::to_string(d));
  return allocate(p, bytes, d, false, true);
}

cudaError_t cudaFreeAsync(void* p, cudaStream_t s) {
  Lock lock(st().mu);
  if (cudaError_t e = check_stream(s); e != cudaSuccess) return e;
  if (p == nullptr) return cudaSuccess;
  auto it = st().allocs.find(reinterpret_cast<uintptr_t>(p));
  if (it == st().allocs.end() || it->second.pinned)
    return fail(cudaErrorInvalidValue, "cudaFreeAsync of " + ptr_text(p) + ", not a live device allocation");
  return push(resolve(s), "cudaFreeAsync", [p] {
    Lock l(st().mu);
    (void)release(p, false);
  });
}

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  if (pool == nullptr) return fail(cudaErrorInvalidValue, "null pool");
  if (!valid_device(device)) return fail(cudaErrorInvalidDevice, "cuda:" + std::to_string(device));
  *pool = &dev(device).pool;
  return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
  if (pool == nullptr || value == nullptr) return fail(cudaErrorInvalidValue, "null pool or value");
  if (attr == cudaMemPoolAttrReleaseThreshold) pool->release_threshold = *static_cast<uint64_t*>(value);
  return cudaSuccess;
}

cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t) {
  return pool == nullptr ? fail(cudaErrorInvalidValue, "null pool") : cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  if (s == nullptr) return fail(cudaErrorInvalidValue, "null stream");
  Lock lock(st().mu);
  auto* q = new CUstream_st();
  q->device = t_device;
  q->flags = flags;
  dev(t_device).streams.push_back(q);
  *s = q;
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t s) {
  Lock lock(st().mu);
  if (s == nullptr || s->destroyed) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy of a dead stream");
  // Queued work still completes; the object stays (events may still name it), marked dead.
  run_all(s);
  s->destroyed = true;
  auto& v = dev(s->device).streams;
  v.erase(std::remove(v.begin(), v.end(), s), v.end());
  st().dead_streams.emplace_back(s);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  Lock lock(st().mu);
  if (cudaError_t e = check_stream(s); e != cudaSuccess) return e;
  CUstream_st* q = resolve(s);
  run_all(q);
  return device_error(q->device);
}

cudaError_t cudaStreamQuery(cudaStream_t s) { return cudaStreamSynchronize(s); }

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  Lock lock(st().mu);
  if (cudaError_t err = check_stream(s); err != cudaSuccess) return err;
  if (e == nullptr || e->destroyed) return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent on a dead event");
  if (e->stream == nullptr) return cudaSuccess;  // never recorded: nothing to wait for
  return push(resolve(s), "cudaStreamWaitEvent", [] {}, {{e->stream, e->seq}});
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags) {
  if (e == nullptr) return fail(cudaErrorInvalidValue, "null event");
  Lock lock(st().mu);
  st().events.push_back(std::make_unique<CUevent_st>());
  CUevent_st* ev = st().events.back().get();
  ev->flags = flags;
  *e = ev;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t e) {
  Lock lock(st().mu);
  if (e == nullptr || e->destroyed) return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy of a dead event");
  e->destroyed = true;  // kept: a queued record may still write it
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  Lock lock(st().mu);
  if (cudaError_t err = check_stream(s); err != cudaSuccess) return err;
  if (e == nullptr || e->destroyed) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord on a dead event");
  CUstream_st* q = resolve(s);
  if (q->device != t_device)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord on cuda:" + std::to_string(t_device) +
                                                    " into a stream of cuda:" + std::to_string(q->device));
  const uint64_t gen = ++e->generation;
  push(q, "cudaEventRecord", [e, gen] {
    if (e->generation == gen) e->time_ms = now_ms();
  });
  e->stream = q;
  e->seq = q->queued;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  Lock lock(st().mu);
  if (e == nullptr || e->destroyed) return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize on a dead event");
  if (e->stream == nullptr) return cudaSuccess;
  run_stream(e->stream, e->seq);
  return device_error(e->stream->device);
}

// Queries make progress (nothing else would run the queue): a query completes the work up to the
// event and reports success.
cudaError_t cudaEventQuery(cudaEvent_t e) { return cudaEventSynchronize(e); }

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  Lock lock(st().mu);
  if (ms == nullptr || start == nullptr || end == nullptr) return fail(cudaErrorInvalidValue, "null argument");
  if ((start->flags | end->flags) & cudaEventDisableTiming)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime on an event created with cudaEventDisableTiming");
  if (start->stream == nullptr || end->stream == nullptr)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime on an event never recorded");
  if (start->stream->done < start->seq || end->stream->done < end->seq) return fail(cudaErrorNotReady, "");
  *ms = static_cast<float>(end->time_ms - start->time_ms);
  return cudaSuccess;
}

cudaError_t cudaStreamGetDevice(cudaStream_t s, int* device) {
  Lock lock(st().mu);
  if (device == nullptr) return fail(cudaErrorInvalidValue, "null device");
  if (cudaError_t e = check_stream(s); e != cudaSuccess) return e;
  *device = resolve(s)->device;
  return cudaSuccess;
}
