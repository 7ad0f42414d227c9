// The emulated CUDA device itself (emu/, built with DROPNET_CUDA=EMU only): the hardware limits it
// refuses, barriers and shared memory, warp shuffles and votes, atomics, in-order streams that run
// only when waited on, events across streams, pinned and pageable copies, several devices and the
// errors CUDA gives for crossing them, out of memory, and sticky faults.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <cstdlib>

#include "core/device.h"
#include "core/error.h"
#include "core/launch.cuh"
#include "emu/emu.h"

namespace {

__global__ void block_sum(const float* x, int n, float* out) {
  __shared__ float s[256];
  const int t = static_cast<int>(threadIdx.x);
  float v = 0.f;
  for (int i = t; i < n; i += static_cast<int>(blockDim.x)) v += x[i];
  s[t] = v;
  __syncthreads();
  for (int w = static_cast<int>(blockDim.x) / 2; w > 0; w /= 2) {
    if (t < w) s[t] += s[t + w];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

__global__ void warp_ops(const int* x, int* sums, unsigned* ballots, int* xors) {
  const int t = static_cast<int>(threadIdx.x);
  int v = x[t];
  for (int d = 16; d > 0; d /= 2) v += __shfl_down_sync(0xffffffffu, v, d);
  if (t % 32 == 0) sums[t / 32] = v;
  const unsigned b = __ballot_sync(0xffffffffu, x[t] % 2 == 1);
  if (t % 32 == 0) ballots[t / 32] = b;
  xors[t] = __shfl_xor_sync(0xffffffffu, x[t], 1);
}

__global__ void count_atomic(int n, int* counter, float* fsum) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) {
    atomicAdd(counter, 1);
    atomicAdd(fsum, 0.5f);
  }
}

__global__ void divergent_barrier(float* out) {
  if (threadIdx.x < 16) __syncthreads();  // CUDA: undefined; the emulator reports it
  out[threadIdx.x] = 1.f;
}

__global__ void fill(float* p, int n, float v) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) p[i] = v;
}

__global__ void nothing() {}

// Allocates on the host heap from inside the kernel: under TSan each allocation stores the
// current (fiber's) call stack.
__global__ void allocate_in_kernel(int* out) {
  std::vector<int> v(4, static_cast<int>(blockIdx.x));
  if (threadIdx.x == 0) out[blockIdx.x] = v[3];
}

// Thread t writes s[t] and reads s[t + 1]: correct with the barrier, a race on a GPU without it.
__global__ void neighbour(float* out, bool barrier) {
  __shared__ float s[64];
  const int t = static_cast<int>(threadIdx.x);
  s[t] = static_cast<float>(t);
  if (barrier) __syncthreads();
  out[t] = s[(t + 1) % 64];
}

float* device_floats(size_t n) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, n * sizeof(float)), cudaSuccess);
  return static_cast<float*>(p);
}

std::string last_error_text() {
  const cudaError_t e = cudaGetLastError();
  return cudaGetErrorString(e);
}

class Emulator : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
    (void)cudaGetLastError();
  }
  void TearDown() override {
    (void)cudaSetDevice(0);
    (void)cudaDeviceReset();
    (void)cudaSetDevice(1);
    (void)cudaDeviceReset();
    (void)cudaSetDevice(0);
    (void)cudaGetLastError();
  }
};

TEST_F(Emulator, RefusesWhatTheHardwareRefuses) {
  EXPECT_EQ(dn_emu::launch("nothing", nothing, dim3(1), dim3(1025), 0, nullptr), cudaErrorInvalidConfiguration);
  EXPECT_NE(last_error_text().find("1025 threads"), std::string::npos);
  EXPECT_EQ(dn_emu::launch("nothing", nothing, dim3(1, 65536), dim3(32), 0, nullptr), cudaErrorInvalidConfiguration);
  EXPECT_EQ(dn_emu::launch("nothing", nothing, dim3(1, 1, 65536), dim3(32), 0, nullptr), cudaErrorInvalidConfiguration);
  EXPECT_EQ(dn_emu::launch("nothing", nothing, dim3(1), dim3(2, 2, 65), 0, nullptr), cudaErrorInvalidConfiguration);
  EXPECT_EQ(dn_emu::launch("nothing", nothing, dim3(0), dim3(32), 0, nullptr), cudaErrorInvalidConfiguration);
  EXPECT_EQ(dn_emu::launch("nothing", nothing, dim3(1), dim3(32), 49 * 1024, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(dn_emu::launch("nothing", nothing, dim3(2147483647u), dim3(1024), 0, nullptr), cudaSuccess)
      << "the largest legal grid is accepted (and not run: nothing waits on it)";
  (void)cudaDeviceReset();  // drop it unrun
}

TEST_F(Emulator, BarriersAndSharedMemory) {
  const int n = 1000;
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) x[i] = static_cast<float>(i % 7);
  float* xd = device_floats(n);
  float* out = device_floats(3);
  ASSERT_EQ(cudaMemcpy(xd, x.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  for (int threads : {256, 64}) {
    DN_LAUNCH(block_sum, dim3(3), dim3(threads), 0, nullptr, xd, n, out);
    std::vector<float> got(3);
    ASSERT_EQ(cudaMemcpy(got.data(), out, 3 * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    double want = 0;
    for (float v : x) want += v;
    for (float g : got) EXPECT_EQ(g, static_cast<float>(want)) << threads << " threads";
  }
  cudaFree(xd);
  cudaFree(out);
}

TEST_F(Emulator, WarpShufflesVotesAndAtomics) {
  std::vector<int> x(64);
  for (int i = 0; i < 64; ++i) x[i] = i * 3 + 1;
  void *xd, *sums, *ballots, *xors;
  ASSERT_EQ(cudaMalloc(&xd, 64 * sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&sums, 2 * sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&ballots, 2 * sizeof(unsigned)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&xors, 64 * sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(xd, x.data(), 64 * sizeof(int), cudaMemcpyHostToDevice), cudaSuccess);
  DN_LAUNCH(warp_ops, dim3(1), dim3(64), 0, nullptr, static_cast<const int*>(xd), static_cast<int*>(sums),
            static_cast<unsigned*>(ballots), static_cast<int*>(xors));
  int s[2];
  unsigned b[2];
  std::vector<int> xr(64);
  ASSERT_EQ(cudaMemcpy(s, sums, sizeof s, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(b, ballots, sizeof b, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(xr.data(), xors, 64 * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int w = 0; w < 2; ++w) {
    int want = 0;
    unsigned bits = 0;
    for (int l = 0; l < 32; ++l) {
      want += x[w * 32 + l];
      if (x[w * 32 + l] % 2 == 1) bits |= 1u << l;
    }
    EXPECT_EQ(s[w], want);
    EXPECT_EQ(b[w], bits);
  }
  for (int i = 0; i < 64; ++i) EXPECT_EQ(xr[i], x[i ^ 1]);

  void *counter, *fsum;
  ASSERT_EQ(cudaMalloc(&counter, sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&fsum, sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemset(counter, 0, sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMemset(fsum, 0, sizeof(float)), cudaSuccess);
  DN_LAUNCH(count_atomic, dim3(5), dim3(128), 0, nullptr, 600, static_cast<int*>(counter), static_cast<float*>(fsum));
  int c = 0;
  float f = 0;
  ASSERT_EQ(cudaMemcpy(&c, counter, sizeof c, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(&f, fsum, sizeof f, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(c, 600);
  EXPECT_EQ(f, 300.f);
  for (void* p : {xd, sums, ballots, xors, counter, fsum}) cudaFree(p);
}

TEST_F(Emulator, DivergentBarrierIsAStickyFault) {
  float* out = device_floats(32);
  DN_LAUNCH(nothing, dim3(1), dim3(1), 0, nullptr);  // fine so far
  ASSERT_EQ(dn_emu::launch("divergent_barrier", divergent_barrier, dim3(1), dim3(32), 0, nullptr, out), cudaSuccess);
  const cudaError_t e = cudaDeviceSynchronize();
  EXPECT_EQ(e, cudaErrorLaunchFailure);
  EXPECT_NE(std::string(cudaGetErrorString(e)).find("16 of 32 threads wait at __syncthreads"), std::string::npos)
      << cudaGetErrorString(e);
  // Sticky: the device stays failed (later work is dropped) until reset.
  EXPECT_EQ(cudaDeviceSynchronize(), cudaErrorLaunchFailure);
  ASSERT_EQ(cudaDeviceReset(), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  cudaFree(out);
}

// DROPNET_CUDA_SYNC=1: the fault is reported at the launch that caused it, with the kernel and the
// layer; without it, at the next synchronization.
TEST_F(Emulator, CudaSyncReportsTheFaultingKernelAndLayer) {
  float* out = device_floats(32);
  ::setenv("DROPNET_CUDA_SYNC", "1", 1);
  const char* prev = dropnet::set_launch_context("conv7");
  std::string msg;
  try {
    DN_LAUNCH(divergent_barrier, dim3(1), dim3(32), 0, nullptr, out);
  } catch (const dropnet::Error& e) {
    msg = e.what();
  }
  ::unsetenv("DROPNET_CUDA_SYNC");
  dropnet::set_launch_context(prev);
  EXPECT_NE(msg.find("divergent_barrier"), std::string::npos) << msg;
  EXPECT_NE(msg.find("layer conv7"), std::string::npos) << msg;
  EXPECT_NE(msg.find("DROPNET_CUDA_SYNC"), std::string::npos) << msg;
  ASSERT_EQ(cudaDeviceReset(), cudaSuccess);

  DN_LAUNCH(divergent_barrier, dim3(1), dim3(32), 0, nullptr, out);  // queued: no error yet
  EXPECT_EQ(cudaDeviceSynchronize(), cudaErrorLaunchFailure);
  ASSERT_EQ(cudaDeviceReset(), cudaSuccess);
  cudaFree(out);
}

TEST_F(Emulator, StreamsRunWhenWaitedOnAndKeepOrderAcrossEvents) {
  cudaStream_t a, b;
  ASSERT_EQ(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
  float* d = device_floats(64);
  float* pinned = nullptr;
  ASSERT_EQ(cudaHostAlloc(&pinned, 64 * sizeof(float), cudaHostAllocDefault), cudaSuccess);
  for (int i = 0; i < 64; ++i) pinned[i] = -1.f;
  DN_LAUNCH(fill, dim3(1), dim3(64), 0, a, d, 64, 2.f);
  cudaEvent_t done;
  ASSERT_EQ(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(done, a), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(b, done, 0), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(pinned, d, 64 * sizeof(float), cudaMemcpyDeviceToHost, b), cudaSuccess);
  // Nothing has waited: an unsynchronized read sees the old contents (on a GPU: a race).
  EXPECT_EQ(pinned[0], -1.f);
  // Waiting on b runs a up to the event first, then the copy.
  ASSERT_EQ(cudaStreamSynchronize(b), cudaSuccess);
  EXPECT_EQ(pinned[63], 2.f);

  // A pageable source is staged at the call: changing it afterwards does not change the copy.
  std::vector<float> host(64, 5.f);
  ASSERT_EQ(cudaMemcpyAsync(d, host.data(), 64 * sizeof(float), cudaMemcpyHostToDevice, a), cudaSuccess);
  host.assign(64, 9.f);
  std::vector<float> back(64);
  ASSERT_EQ(cudaMemcpyAsync(back.data(), d, 64 * sizeof(float), cudaMemcpyDeviceToHost, a), cudaSuccess);
  EXPECT_EQ(back[10], 5.f) << "a device-to-pageable copy returns when done";

  // Timing events.
  cudaEvent_t t0, t1;
  ASSERT_EQ(cudaEventCreate(&t0), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&t1), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(t0, a), cudaSuccess);
  DN_LAUNCH(fill, dim3(1), dim3(64), 0, a, d, 64, 3.f);
  ASSERT_EQ(cudaEventRecord(t1, a), cudaSuccess);
  ASSERT_EQ(cudaEventSynchronize(t1), cudaSuccess);
  float ms = -1.f;
  ASSERT_EQ(cudaEventElapsedTime(&ms, t0, t1), cudaSuccess);
  EXPECT_GE(ms, 0.f);
  EXPECT_EQ(cudaEventElapsedTime(&ms, done, t1), cudaErrorInvalidResourceHandle) << "a DisableTiming event";

  // Stream-ordered allocation.
  void* scratch = nullptr;
  ASSERT_EQ(cudaMallocAsync(&scratch, 1024, a), cudaSuccess);
  ASSERT_EQ(cudaFreeAsync(scratch, a), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);
  dn_emu::Range r;
  EXPECT_FALSE(dn_emu::find_range(scratch, 1, &r)) << "freed once the stream reached the free";

  for (cudaEvent_t e : {done, t0, t1}) cudaEventDestroy(e);
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
  cudaFreeHost(pinned);
  cudaFree(d);
}

TEST_F(Emulator, FreshMemoryIsGarbageNotZero) {
  float* d = device_floats(4);
  float h[4];
  ASSERT_EQ(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost), cudaSuccess);
  for (float v : h) EXPECT_TRUE(std::isnan(v));
  cudaFree(d);
}

TEST_F(Emulator, DevicesAreSeparate) {
  int n = 0;
  ASSERT_EQ(cudaGetDeviceCount(&n), cudaSuccess);
  ASSERT_GE(n, 2);
  EXPECT_EQ(cudaSetDevice(n), cudaErrorInvalidDevice);
  ASSERT_EQ(cudaSetDevice(1), cudaSuccess);
  cudaStream_t s1;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking), cudaSuccess);
  float* on1 = device_floats(32);
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  float* on0 = device_floats(32);

  // A launch on cuda:0 into a stream of cuda:1.
  EXPECT_EQ(dn_emu::launch("fill", fill, dim3(1), dim3(32), 0, s1, on0, 32, 1.f), cudaErrorInvalidResourceHandle);
  EXPECT_NE(last_error_text().find("into a stream of cuda:1"), std::string::npos);
  // A pointer of cuda:1 in a kernel on cuda:0.
  EXPECT_EQ(dn_emu::launch("fill", fill, dim3(1), dim3(32), 0, nullptr, on1, 32, 1.f), cudaErrorIllegalAddress);
  EXPECT_NE(last_error_text().find("memory of cuda:1"), std::string::npos);
  // A host pointer in a kernel.
  std::vector<float> host(32);
  EXPECT_EQ(dn_emu::launch("fill", fill, dim3(1), dim3(32), 0, nullptr, host.data(), 32, 1.f),
            cudaErrorIllegalAddress);
  EXPECT_NE(last_error_text().find("not device memory"), std::string::npos);
  // Each device's own work is fine, and copies between devices work (unified addressing).
  DN_LAUNCH(fill, dim3(1), dim3(32), 0, nullptr, on0, 32, 4.f);
  ASSERT_EQ(cudaMemcpy(on1, on0, 32 * sizeof(float), cudaMemcpyDeviceToDevice), cudaSuccess);
  float h[32];
  ASSERT_EQ(cudaMemcpy(h, on1, sizeof h, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(h[31], 4.f);
  // A copy whose direction contradicts its pointers, and one past an allocation's end.
  EXPECT_EQ(cudaMemcpy(h, on0, sizeof h, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(h, on0, 33 * sizeof(float), cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFree(h), cudaErrorInvalidValue);
  cudaFree(on0);
  cudaFree(on1);
  cudaStreamDestroy(s1);
}

TEST_F(Emulator, OutOfMemoryIsAnErrorNotACrash) {
  size_t free = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free, &total), cudaSuccess);
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, total + 1), cudaErrorMemoryAllocation);
  EXPECT_NE(last_error_text().find("bytes requested"), std::string::npos);
  EXPECT_EQ(p, nullptr);
}

// A fiber is reused for every block its host thread runs. Under TSan each run used to leave the
// fiber's first frames on its shadow call stack (they never return: the fiber switches out), so
// after ~30,000 blocks a stored stack passed TSan's 65,536-frame limit: a CHECK failure that
// deadlocked inside TSan (CudaBias hung CI's TSan run). 40,000 blocks of one thread each.
TEST_F(Emulator, ManyBlocksReuseTheirFibers) {
  constexpr int kBlocks = 40000;
  void* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, kBlocks * sizeof(int)), cudaSuccess);
  int* out = static_cast<int*>(p);
  DN_LAUNCH(allocate_in_kernel, dim3(kBlocks), dim3(1), 0, nullptr, out);
  std::vector<int> h(kBlocks);
  ASSERT_EQ(cudaMemcpy(h.data(), out, kBlocks * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int b = 0; b < kBlocks; b += 997) EXPECT_EQ(h[static_cast<size_t>(b)], b);
  cudaFree(out);
}

// With the barrier every thread reads its neighbour's value. With DROPNET_EMU_RACY=1 the barrier
// is left out: the TSan build's racecheck test (tests/CMakeLists.txt) runs it that way and expects
// TSan's race report, which shows that the emulated racecheck sees a missing barrier.
TEST_F(Emulator, NeighbourReadThroughSharedMemory) {
  const char* racy = std::getenv("DROPNET_EMU_RACY");
  const bool barrier = racy == nullptr || std::string(racy) != "1";
  float* out = device_floats(64);
  DN_LAUNCH(neighbour, dim3(1), dim3(64), 0, nullptr, out, barrier);
  float h[64];
  ASSERT_EQ(cudaMemcpy(h, out, sizeof h, cudaMemcpyDeviceToHost), cudaSuccess);
  if (barrier)
    for (int t = 0; t < 64; ++t) EXPECT_EQ(h[t], static_cast<float>((t + 1) % 64)) << t;
  cudaFree(out);
}

}  // namespace
