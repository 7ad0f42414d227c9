// The emulated CUDA device (DROPNET_CUDA=EMU): the part of the CUDA runtime surface that dropnet
// uses, implemented on the host (emu/runtime.cpp), so that the same .cu sources compile with the
// host compiler and run without a GPU. See emu/README.md for what is and is not emulated.
//
// Device memory is host memory (ASan is the memcheck), streams are in-order queues that run when
// the host waits on them (a missing synchronization shows as stale data), every kernel launch
// goes through dn_emu::launch (core/launch.cuh), and the threads of a block are fibers on one host
// thread that meet at __syncthreads (under TSan each fiber is its own thread: the racecheck).
#pragma once

#if defined(__CUDACC__)
#error "emu/include/cuda_runtime.h is the emulated runtime: compile with the host compiler"
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#define DROPNET_CUDA_EMU_RUNTIME 1
#define CUDART_VERSION 13000

// ---- qualifiers ----------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __restrict__ __restrict
// Blocks run one at a time on a host thread (under a process-wide lock), so a block's static
// shared memory is a function-local static. (Its 48 KB limit is enforced by ptxas in the nvcc
// build, which CI also runs.)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __constant__ static

// ---- vector types and built-in variables ----------------------------------------------------
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) int2 { int x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }

// The executing thread's coordinates, kept by the emulator for the thread it is running.
namespace dn_emu {
dim3 builtin_thread_idx();
dim3 builtin_block_idx();
dim3 builtin_block_dim();
dim3 builtin_grid_dim();
}  // namespace dn_emu
#define threadIdx (::dn_emu::builtin_thread_idx())
#define blockIdx (::dn_emu::builtin_block_idx())
#define blockDim (::dn_emu::builtin_block_dim())
#define gridDim (::dn_emu::builtin_grid_dim())
constexpr int warpSize = 32;

// ---- runtime types ---------------------------------------------------------------------------
enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
  cudaErrorUnknown = 999,
};
using cudaError_t = cudaError;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrMemoryClockRate = 36,
  cudaDevAttrGlobalMemoryBusWidth = 37,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
};

enum cudaMemPoolAttr {
  cudaMemPoolReuseFollowEventDependencies = 1,
  cudaMemPoolAttrReleaseThreshold = 4,
};

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major, minor;
  int multiProcessorCount;
};

struct CUstream_st;
struct CUevent_st;
struct CUmemPoolHandle_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;
using cudaMemPool_t = CUmemPoolHandle_st*;

constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDefault = 0, cudaEventBlockingSync = 1, cudaEventDisableTiming = 2;
constexpr unsigned cudaHostAllocDefault = 0, cudaHostAllocPortable = 1, cudaHostAllocMapped = 2;

// ---- runtime API (emu/runtime.cpp) -----------------------------------------------------------
// C++ linkage on purpose: these never collide with libcudart's C symbols.
const char* cudaGetErrorString(cudaError_t e);
const char* cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();

cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceReset();
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaMemGetInfo(size_t* free, size_t* total);

cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned flags);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s);
cudaError_t cudaFreeAsync(void* p, cudaStream_t s);
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value);
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t min_bytes_to_keep);

cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaStreamGetDevice(cudaStream_t s, int* device);

cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);

template <typename T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
template <typename T>
cudaError_t cudaMallocAsync(T** p, size_t bytes, cudaStream_t s) {
  return cudaMallocAsync(reinterpret_cast<void**>(p), bytes, s);
}
template <typename T>
cudaError_t cudaHostAlloc(T** p, size_t bytes, unsigned flags) {
  return cudaHostAlloc(reinterpret_cast<void**>(p), bytes, flags);
}
template <typename T>
cudaError_t cudaMallocHost(T** p, size_t bytes) {
  return cudaMallocHost(reinterpret_cast<void**>(p), bytes);
}

// ---- device functions ------------------------------------------------------------------------
namespace dn_emu {
void syncthreads();                                      // block barrier
void syncwarp(unsigned mask);                            // warp barrier
uint64_t warp_exchange(unsigned mask, uint64_t value, int src_lane);  // value of lane src_lane
unsigned warp_ballot(unsigned mask, bool pred);
}  // namespace dn_emu

inline void __syncthreads() { dn_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { dn_emu::syncwarp(mask); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

namespace dn_emu {
inline unsigned lane_id() {
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  return t % 32u;
}
template <typename T>
T shfl(unsigned mask, T v, int src, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffles move up to 64 bits");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  const int lane = static_cast<int>(lane_id());
  const int base = lane - lane % width;
  uint64_t got = warp_exchange(mask, bits, base + ((src % width) + width) % width);
  T out;
  std::memcpy(&out, &got, sizeof(T));
  return out;
}
}  // namespace dn_emu

template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return dn_emu::shfl(mask, v, src_lane, width);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = static_cast<int>(dn_emu::lane_id()) % width;
  const int src = lane + static_cast<int>(delta) < width ? lane + static_cast<int>(delta) : lane;
  return dn_emu::shfl(mask, v, src, width);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = static_cast<int>(dn_emu::lane_id()) % width;
  const int src = lane - static_cast<int>(delta) >= 0 ? lane - static_cast<int>(delta) : lane;
  return dn_emu::shfl(mask, v, src, width);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = static_cast<int>(dn_emu::lane_id()) % width;
  return dn_emu::shfl(mask, v, lane ^ lane_mask, width);
}
inline unsigned __ballot_sync(unsigned mask, int pred) { return dn_emu::warp_ballot(mask, pred != 0); }
inline int __any_sync(unsigned mask, int pred) { return dn_emu::warp_ballot(mask, pred != 0) != 0; }
inline int __all_sync(unsigned mask, int pred) { return dn_emu::warp_ballot(mask, pred != 0) == dn_emu::warp_ballot(mask, true); }
inline unsigned __activemask() { return 0xffffffffu; }

// Tensor cores, ldmatrix and cp.async: what kernels/mma.cuh calls instead of its inline PTX
// (emu/mma.cpp, emu/runtime.cpp). The warp-collective ones (mma, ldmatrix) are a warp barrier at
// which all 32 lanes of a converged warp deposit their registers; each lane then computes its own
// result with the fragment layouts of the PTX ISA. A lane missing (exited, diverged, at another
// barrier) is a kernel fault. See emu/README.md for the arithmetic.
namespace dn_emu {
// d = a * b + c, m16n8k8, A row-major, B column-major, TF32 operands (the high 19 bits of each
// register), FP32 accumulators.
void mma_m16n8k8_tf32(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]);
// d = a * b + c, m16n8k16, BF16 operands packed two a register (lower index in the low half).
void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]);
// ldmatrix.sync.aligned.m8n8.x4(.trans).shared.b16: lane l gives the address of row l % 8 of
// matrix l / 8; r[i] is this lane's part of matrix i.
void ldmatrix_x4(uint32_t r[4], const void* row, bool trans);
// cp.async of cp_size bytes, the first src_size of them read from src, the rest zero-filled. The
// copy happens at the cp.async.wait_group that covers it (so a read before the wait sees the old
// shared memory, as it may on the hardware).
void cp_async(void* dst, const void* src, int cp_size, int src_size);
void cp_async_commit();
void cp_async_wait(int pending);  // all but the `pending` most recent committed groups complete
}  // namespace dn_emu

// Atomics: the fibers of a block share one host thread, but the TSan build sees each as a thread,
// so these are real atomic operations.
template <typename T>
T atomicAdd(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_add(v);
}
template <typename T>
T atomicSub(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_sub(v);
}
template <typename T>
T atomicExch(T* p, T v) {
  return std::atomic_ref<T>(*p).exchange(v);
}
template <typename T>
T atomicCAS(T* p, T expected, T desired) {
  std::atomic_ref<T>(*p).compare_exchange_strong(expected, desired);
  return expected;
}
template <typename T>
T atomicMax(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}
template <typename T>
T atomicMin(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (v < old && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}
template <typename T>
T __ldg(const T* p) {
  return *p;
}

// ---- device math -----------------------------------------------------------------------------
using std::fmaf;
using std::isfinite;
using std::isinf;
using std::isnan;
using std::max;
using std::min;
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline int __float_as_int(float x) { int i; std::memcpy(&i, &x, 4); return i; }
inline float __int_as_float(int i) { float x; std::memcpy(&x, &i, 4); return x; }
inline unsigned __float_as_uint(float x) { unsigned i; std::memcpy(&i, &x, 4); return i; }
inline float __uint_as_float(unsigned i) { float x; std::memcpy(&x, &i, 4); return x; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }

// ---- kernel launches -------------------------------------------------------------------------
namespace dn_emu {

// Validates a launch and queues `body` (which runs the kernel for the current block and thread)
// on `s`: every block of `grid`, every thread of `block`. Returns the launch error (also kept as
// the last error). `pointers` are the kernel's pointer arguments, checked against the device that
// owns the stream.
cudaError_t launch_body(const char* name, dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                        const void* const* pointers, int npointers, std::function<void()> body);

template <typename T>
void collect_pointer(const T& v, const void** out, int* n) {
  if constexpr (std::is_pointer_v<T>) out[(*n)++] = static_cast<const void*>(v);
}

// Converts the arguments to the kernel's parameter types now (as a launch copies them) and queues
// the kernel.
template <typename... P, typename... A>
cudaError_t launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                   A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  const void* pointers[sizeof...(P) + 1] = {};
  int npointers = 0;
  std::apply([&](const auto&... v) { (collect_pointer(v, pointers, &npointers), ...); }, params);
  return launch_body(name, grid, block, smem, s, pointers, npointers,
                     [kernel, params]() { std::apply(kernel, params); });
}

}  // namespace dn_emu
