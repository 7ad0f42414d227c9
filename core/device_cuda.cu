// CUDA memory: a caching allocator per device (freed blocks are kept in size-keyed free lists and
// reused, so steady-state training never calls cudaMalloc), the compute stream of each (thread,
// device), copies, and the launch check behind DN_LAUNCH.
//
// Everything allocates on, and queues work to, the device the memory belongs to; the calling
// thread's current device is restored afterwards (DeviceGuard), so an allocation never moves a
// thread to another GPU behind its back.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/cuda_check.h"
#include "core/device.h"
#include "core/device_internal.h"
#include "core/launch.cuh"

namespace dropnet {

namespace {

std::atomic<uint64_t> g_host_syncs{0}, g_copy_stream_uploads{0};

int current_device_index() {
  int d = 0;
  DN_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

// Makes `device` current for a scope and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) : prev_(current_device_index()) {
    if (device != prev_) DN_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { (void)cudaSetDevice(prev_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_;
};

std::string mb(size_t bytes) { return fmt::format("{:.1f} MB", static_cast<double>(bytes) / (1 << 20)); }

struct CachingAllocator {
  struct PerDevice {
    std::multimap<size_t, void*> free_blocks;  // rounded size -> block
    size_t in_use = 0, cached = 0;
  };
  struct Block {
    size_t size;
    int device;
  };
  std::mutex mu;
  std::map<int, PerDevice> devices;
  std::unordered_map<void*, Block> live;  // block -> rounded size, device

  static size_t round(size_t bytes) {
    const size_t kGranule = 512;
    return bytes < kGranule ? kGranule : (bytes + kGranule - 1) / kGranule * kGranule;
  }

  // Returns every cached block of `device` to the driver (the caller holds mu and has made the
  // device current).
  void release_cache(int device) {
    PerDevice& d = devices[device];
    for (auto& kv : d.free_blocks) (void)cudaFree(kv.second);
    d.free_blocks.clear();
    d.cached = 0;
  }

  void* alloc(int device, size_t bytes) {
    const size_t r = round(bytes);
    std::lock_guard<std::mutex> lock(mu);
    PerDevice& d = devices[device];
    // Reuse the smallest cached block that fits and wastes at most 2x.
    auto it = d.free_blocks.lower_bound(r);
    if (it != d.free_blocks.end() && it->first <= 2 * r) {
      void* p = it->second;
      const size_t s = it->first;
      d.free_blocks.erase(it);
      d.cached -= s;
      live[p] = {s, device};
      d.in_use += s;
      return p;
    }
    DeviceGuard guard(device);
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, r);
    if (err != cudaSuccess) {
      // Out of memory: give back the cache and the stream-ordered pool's reserve, retry once.
      (void)cudaGetLastError();
      const size_t cached_before = d.cached;
      release_cache(device);
      trim_pool(device);
      err = cudaMalloc(&p, r);
      if (err != cudaSuccess) {
        (void)cudaGetLastError();
        size_t free = 0, total = 0;
        (void)cudaMemGetInfo(&free, &total);
        (void)cudaGetLastError();
        input_error(
            "CUDA out of memory on cuda:{}: {} requested; dropnet holds {} in use and held {} cached (released, then "
            "retried once); the device reports {} free of {}. Use a smaller batch_size, or the cudnn / im2col conv "
            "engines' smaller workspaces",
            device, mb(r), mb(d.in_use), mb(cached_before), mb(free), mb(total));
      }
    }
    live[p] = {r, device};
    d.in_use += r;
    return p;
  }

  void release(void* p) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = live.find(p);
    DN_CHECK(it != live.end(), "freeing a pointer the CUDA allocator does not own");
    const Block b = it->second;
    live.erase(it);
    PerDevice& d = devices[b.device];
    d.in_use -= b.size;
    d.free_blocks.emplace(b.size, p);
    d.cached += b.size;
  }

  static void trim_pool(int device) {
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
      g_host_syncs.fetch_add(1, std::memory_order_relaxed);
      (void)cudaDeviceSynchronize();
      (void)cudaMemPoolTrimTo(pool, 0);
    }
    (void)cudaGetLastError();
  }
};

CachingAllocator& allocator() {
  static CachingAllocator* a = new CachingAllocator();  // never destroyed: outlives static tensors
  return *a;
}

// Every blocking wait of the host on the GPU goes through these two (cuda_host_syncs counts them).
cudaError_t sync_stream(cudaStream_t s) {
  g_host_syncs.fetch_add(1, std::memory_order_relaxed);
  return cudaStreamSynchronize(s);
}
cudaError_t sync_event(cudaEvent_t e) {
  g_host_syncs.fetch_add(1, std::memory_order_relaxed);
  return cudaEventSynchronize(e);
}

// The compute stream (copy = false) or the upload stream (copy = true) of this thread on `device`
// (created on first use, never destroyed).
cudaStream_t stream_on(int device, bool copy = false) {
  static thread_local std::vector<cudaStream_t> compute_streams, copy_streams;
  std::vector<cudaStream_t>& streams = copy ? copy_streams : compute_streams;
  if (device >= static_cast<int>(streams.size())) streams.resize(static_cast<size_t>(device) + 1, nullptr);
  cudaStream_t& s = streams[static_cast<size_t>(device)];
  if (s == nullptr) {
    DeviceGuard guard(device);
    DN_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  }
  return s;
}

__global__ void fill_kernel(float* p, size_t n, float v) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = v;
}

thread_local const char* t_launch_context = nullptr;

// Read at every launch (a getenv is cheap next to a launch), so a test can switch it.
bool sync_after_launch() {
  const char* v = std::getenv("DROPNET_CUDA_SYNC");
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

}  // namespace

bool cuda_compiled() { return true; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

void cuda_set_device(int index) { DN_CUDA_CHECK(cudaSetDevice(index)); }

int cuda_current_device() { return current_device_index(); }

Stream cuda_stream() { return stream_on(current_device_index()); }
Stream cuda_copy_stream() { return stream_on(current_device_index(), true); }
void cuda_stream_wait_host(Stream s) { DN_CUDA_CHECK(sync_stream(s)); }
uint64_t cuda_host_syncs() { return g_host_syncs.load(std::memory_order_relaxed); }
uint64_t cuda_copy_stream_uploads() { return g_copy_stream_uploads.load(std::memory_order_relaxed); }

const char* set_launch_context(const char* what) {
  const char* prev = t_launch_context;
  t_launch_context = what;
  return prev;
}

void check_launch(const char* kernel, cudaError_t launch_error, cudaStream_t s) {
  const bool sync = sync_after_launch();
  cudaError_t e = launch_error;
  if (e == cudaSuccess && sync) {
    // DROPNET_CUDA_SYNC=1 also checks that the stream belongs to the current device.
    int stream_device = 0;
    if (cudaStreamGetDevice(s, &stream_device) == cudaSuccess && stream_device != current_device_index())
      internal_error(__FILE__, __LINE__,
                     fmt::format("kernel {} launched on cuda:{} into a stream of cuda:{}{}", kernel,
                                 current_device_index(), stream_device,
                                 t_launch_context ? fmt::format(" (layer {})", t_launch_context) : ""));
    e = sync_stream(s);
  }
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();
  internal_error(__FILE__, __LINE__,
                 fmt::format("kernel {} on cuda:{}{} failed{}: {}", kernel, current_device_index(),
                             t_launch_context ? fmt::format(" (layer {})", t_launch_context) : "",
                             launch_error == cudaSuccess ? " (found by DROPNET_CUDA_SYNC=1 after the launch)" : "",
                             cudaGetErrorString(e)));
}

void* cuda_alloc(int device, size_t bytes) { return allocator().alloc(device, bytes); }
void cuda_free(void* p, size_t) { allocator().release(p); }
void cuda_zero(int device, void* p, size_t bytes) {
  DeviceGuard guard(device);
  DN_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_on(device)));
}
void cuda_fill(int device, float* p, size_t n, float v) {
  DeviceGuard guard(device);
  DN_LAUNCH(fill_kernel, grid_for(static_cast<long long>(n)), 256, 0, stream_on(device), p, n, v);
}
// dst_dev / src_dev: the CUDA device of each side, -1 for host memory.
void cuda_copy(void* dst, int dst_dev, const void* src, int src_dev, size_t bytes) {
  const cudaMemcpyKind kind = dst_dev >= 0 ? (src_dev >= 0 ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                           : (src_dev >= 0 ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  // Between two GPUs: the source's pending writes finish first, then the copy runs on the
  // destination's stream.
  if (dst_dev >= 0 && src_dev >= 0 && dst_dev != src_dev) {
    DeviceGuard guard(src_dev);
    DN_CUDA_CHECK(sync_stream(stream_on(src_dev)));
  }
  const int device = dst_dev >= 0 ? dst_dev : src_dev;
  DeviceGuard guard(device);
  DN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream_on(device)));
  if (dst_dev < 0) DN_CUDA_CHECK(sync_stream(stream_on(device)));
}
void* cuda_pinned_alloc(size_t bytes) {
  void* p = nullptr;
  DN_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocDefault));
  return p;
}
// The release paths run from destructors (possibly at exit): errors are ignored, not thrown.
void cuda_pinned_free(void* p) { (void)cudaFreeHost(p); }
void* cuda_event_create(int device) {
  DeviceGuard guard(device);
  cudaEvent_t e = nullptr;
  DN_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}
void cuda_event_destroy(void* e) {  // after the fenced work is done
  (void)sync_event(static_cast<cudaEvent_t>(e));
  (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
}
void cuda_event_record(int device, void* e) {
  DeviceGuard guard(device);
  DN_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(e), stream_on(device)));
}
void cuda_event_wait_host(void* e) {
  const cudaError_t q = cudaEventQuery(static_cast<cudaEvent_t>(e));
  if (q == cudaSuccess) return;
  if (q != cudaErrorNotReady) DN_CUDA_CHECK(q);
  DN_CUDA_CHECK(sync_event(static_cast<cudaEvent_t>(e)));
}
void cuda_staged_upload(int device, float* dst, float* device_buf, const float* host, size_t bytes, void* uploaded,
                        void* consumed, bool wait_consumed) {
  DeviceGuard guard(device);
  const cudaStream_t copy = stream_on(device, true), compute = stream_on(device);
  const auto up = static_cast<cudaEvent_t>(uploaded), used = static_cast<cudaEvent_t>(consumed);
  // The slot's device buffer is free once the compute stream has copied its previous batch out.
  if (wait_consumed) DN_CUDA_CHECK(cudaStreamWaitEvent(copy, used, 0));
  DN_CUDA_CHECK(cudaMemcpyAsync(device_buf, host, bytes, cudaMemcpyHostToDevice, copy));
  DN_CUDA_CHECK(cudaEventRecord(up, copy));
  g_copy_stream_uploads.fetch_add(1, std::memory_order_relaxed);
  DN_CUDA_CHECK(cudaStreamWaitEvent(compute, up, 0));
  DN_CUDA_CHECK(cudaMemcpyAsync(dst, device_buf, bytes, cudaMemcpyDeviceToDevice, compute));
  DN_CUDA_CHECK(cudaEventRecord(used, compute));
}
void cuda_sync(int device) {
  DeviceGuard guard(device);
  DN_CUDA_CHECK(sync_stream(stream_on(device)));
}
size_t cuda_bytes_in_use() {
  std::lock_guard<std::mutex> lock(allocator().mu);
  size_t n = 0;
  for (const auto& [d, pd] : allocator().devices) n += pd.in_use;
  return n;
}
size_t cuda_bytes_cached() {
  std::lock_guard<std::mutex> lock(allocator().mu);
  size_t n = 0;
  for (const auto& [d, pd] : allocator().devices) n += pd.cached;
  return n;
}

int current_sm_count() {
  static std::mutex mu;
  static std::vector<int> counts;
  const int device = current_device_index();
  std::lock_guard<std::mutex> lock(mu);
  if (device >= int(counts.size())) counts.resize(device + 1, 0);
  if (counts[device] == 0)
    DN_CUDA_CHECK(cudaDeviceGetAttribute(&counts[device], cudaDevAttrMultiProcessorCount, device));
  return counts[device];
}

void* stream_scratch_alloc(size_t bytes, cudaStream_t s) {
  static std::mutex mu;
  static std::vector<bool> kept;
  const int device = current_device_index();
  {
    std::lock_guard<std::mutex> lock(mu);
    if (device >= int(kept.size())) kept.resize(device + 1, false);
    if (!kept[device]) {
      cudaMemPool_t pool;
      DN_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
      uint64_t threshold = UINT64_MAX;
      DN_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
      kept[device] = true;
    }
  }
  void* p = nullptr;
  if (cudaMallocAsync(&p, bytes, s) == cudaSuccess) return p;
  // Out of memory: release the caching allocator's blocks and the pool's reserve, retry once.
  (void)cudaGetLastError();
  {
    std::lock_guard<std::mutex> lock(allocator().mu);
    allocator().release_cache(device);
  }
  CachingAllocator::trim_pool(device);
  const cudaError_t e = cudaMallocAsync(&p, bytes, s);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    size_t free = 0, total = 0;
    (void)cudaMemGetInfo(&free, &total);
    (void)cudaGetLastError();
    input_error("CUDA out of memory on cuda:{}: {} of split-K scratch requested; dropnet holds {} in use (its cache "
                "was released and the allocation retried once); the device reports {} free of {}",
                device, mb(bytes), mb(cuda_bytes_in_use()), mb(free), mb(total));
  }
  return p;
}

void stream_scratch_free(void* p, cudaStream_t s) { DN_CUDA_CHECK(cudaFreeAsync(p, s)); }

}  // namespace dropnet
