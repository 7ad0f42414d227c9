// CUDA memory: a caching allocator (freed blocks are kept in size-keyed free lists and reused,
// so steady-state training never calls cudaMalloc), the compute stream and copies.
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/cuda_check.h"
#include "core/device.h"

namespace dropnet {

namespace {

struct CachingAllocator {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;           // rounded size -> block
  std::unordered_map<void*, size_t> live;              // block -> rounded size
  size_t in_use = 0, cached = 0;

  static size_t round(size_t bytes) {
    const size_t kGranule = 512;
    return bytes < kGranule ? kGranule : (bytes + kGranule - 1) / kGranule * kGranule;
  }

  void* alloc(size_t bytes) {
    size_t r = round(bytes);
    std::lock_guard<std::mutex> lock(mu);
    // Reuse the smallest cached block that fits and wastes at most 2x.
    auto it = free_blocks.lower_bound(r);
    if (it != free_blocks.end() && it->first <= 2 * r) {
      void* p = it->second;
      size_t s = it->first;
      free_blocks.erase(it);
      cached -= s;
      live[p] = s;
      in_use += s;
      return p;
    }
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, r);
    if (err != cudaSuccess) {
      // Release the cache and retry once before giving up.
      (void)cudaGetLastError();
      for (auto& kv : free_blocks) cudaFree(kv.second);
      free_blocks.clear();
      cached = 0;
      DN_CUDA_CHECK(cudaMalloc(&p, r));
    }
    live[p] = r;
    in_use += r;
    return p;
  }

  void release(void* p) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = live.find(p);
    DN_CHECK(it != live.end(), "freeing a pointer the CUDA allocator does not own");
    size_t s = it->second;
    live.erase(it);
    in_use -= s;
    free_blocks.emplace(s, p);
    cached += s;
  }
};

CachingAllocator& allocator() {
  static CachingAllocator* a = new CachingAllocator();  // never destroyed: outlives static tensors
  return *a;
}

cudaStream_t& stream_ref() {
  static thread_local cudaStream_t s = nullptr;
  return s;
}

__global__ void fill_kernel(float* p, size_t n, float v) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = v;
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

Stream cuda_stream() {
  cudaStream_t& s = stream_ref();
  if (s == nullptr) DN_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

void* cuda_alloc(size_t bytes) { return allocator().alloc(bytes); }
void cuda_free(void* p, size_t) { allocator().release(p); }
void cuda_zero(void* p, size_t bytes) { DN_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda_stream())); }
void cuda_fill(float* p, size_t n, float v) {
  fill_kernel<<<grid_for(static_cast<long long>(n)), 256, 0, cuda_stream()>>>(p, n, v);
  DN_CUDA_LAUNCH_CHECK();
}
void cuda_copy(void* dst, bool dst_dev, const void* src, bool src_dev, size_t bytes) {
  cudaMemcpyKind kind = dst_dev ? (src_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                : (src_dev ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  DN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, cuda_stream()));
  if (!dst_dev) DN_CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
}
void* cuda_pinned_alloc(size_t bytes) {
  void* p = nullptr;
  DN_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocDefault));
  return p;
}
// The release paths run from destructors (possibly at exit): errors are ignored, not thrown.
void cuda_pinned_free(void* p) { (void)cudaFreeHost(p); }
void* cuda_event_create() {
  cudaEvent_t e = nullptr;
  DN_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}
void cuda_event_destroy(void* e) {  // after the fenced work is done
  (void)cudaEventSynchronize(static_cast<cudaEvent_t>(e));
  (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
}
void cuda_event_record(void* e) { DN_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(e), cuda_stream())); }
void cuda_event_wait_host(void* e) { DN_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(e))); }
void cuda_sync() { DN_CUDA_CHECK(cudaStreamSynchronize(cuda_stream())); }
size_t cuda_bytes_in_use() { return allocator().in_use; }
size_t cuda_bytes_cached() { return allocator().cached; }

int current_sm_count() {
  static std::mutex mu;
  static std::vector<int> counts;
  int device = 0;
  DN_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mu);
  if (device >= int(counts.size())) counts.resize(device + 1, 0);
  if (counts[device] == 0)
    DN_CUDA_CHECK(cudaDeviceGetAttribute(&counts[device], cudaDevAttrMultiProcessorCount, device));
  return counts[device];
}

void* stream_scratch_alloc(size_t bytes, cudaStream_t s) {
  static std::mutex mu;
  static std::vector<bool> kept;
  int device = 0;
  DN_CUDA_CHECK(cudaGetDevice(&device));
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
  DN_CUDA_CHECK(cudaMallocAsync(&p, bytes, s));
  return p;
}

void stream_scratch_free(void* p, cudaStream_t s) { DN_CUDA_CHECK(cudaFreeAsync(p, s)); }

}  // namespace dropnet
