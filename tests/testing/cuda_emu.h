// Runs CUDA kernel bodies on the CPU, so that the indexing, bounds and shared-memory logic of the
// block-level kernels (gemm_tile.cuh, conv_igemm.cuh) is tested on machines without a GPU.
//
// Include this before a device-code header (.cuh). Each block runs on `blockDim` real threads
// (one std::thread per CUDA thread) that meet at a std::barrier for __syncthreads; blocks run one
// after another, so a function-local `static` stands in for __shared__ memory. This checks what
// one block computes and how blocks tile the problem; it cannot see races between blocks, warp
// intrinsics, or timing. Not for code that uses warp shuffles or atomics. (Tests that include
// it build with -Wno-unknown-pragmas: device code carries `#pragma unroll`.)
#pragma once

#ifdef __CUDACC__
#error "cuda_emu.h is for host compilers only"
#endif

#if DROPNET_CUDA_EMU
// The emulated-device build (DROPNET_CUDA=EMU): the same tests run on the emulator's fibers
// (emu/), with its barrier checks, and under TSan its racecheck.
#include <cuda_runtime.h>

#include <functional>
#include <stdexcept>
#include <string>

namespace cuda_emu {
inline void launch(dim3 grid, dim3 block, const std::function<void()>& body) {
  cudaError_t e = dn_emu::launch_body("cuda_emu::launch", grid, block, 0, nullptr, nullptr, 0, body);
  if (e == cudaSuccess) e = cudaStreamSynchronize(nullptr);
  if (e != cudaSuccess) throw std::runtime_error(std::string("emulated launch failed: ") + cudaGetErrorString(e));
}
}  // namespace cuda_emu
#else
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

inline thread_local dim3 threadIdx;
inline dim3 blockIdx, blockDim, gridDim;

namespace cuda_emu {
inline thread_local std::barrier<>* block_barrier = nullptr;
}  // namespace cuda_emu

inline void __syncthreads() { cuda_emu::block_barrier->arrive_and_wait(); }

using std::fmaf;
using std::max;
using std::min;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

namespace cuda_emu {

// Runs body() as the kernel for every block of `grid`, `block.x` threads per block (1-D blocks).
inline void launch(dim3 grid, dim3 block, const std::function<void()>& body) {
  const unsigned nthreads = block.x * block.y * block.z;
  std::barrier<> sync(static_cast<std::ptrdiff_t>(nthreads));
  std::vector<dim3> blocks;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) blocks.emplace_back(x, y, z);
  gridDim = grid;
  blockDim = block;
  blockIdx = blocks.empty() ? dim3(0, 0, 0) : blocks[0];
  std::vector<std::thread> threads;
  threads.reserve(nthreads);
  for (unsigned t = 0; t < nthreads; ++t)
    threads.emplace_back([&, t] {
      threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
      block_barrier = &sync;
      for (size_t i = 0; i < blocks.size(); ++i) {
        body();
        // Everyone is done with this block (its shared memory) before thread 0 moves blockIdx.
        sync.arrive_and_wait();
        if (t == 0 && i + 1 < blocks.size()) blockIdx = blocks[i + 1];
        sync.arrive_and_wait();
      }
    });
  for (std::thread& th : threads) th.join();
}

}  // namespace cuda_emu
#endif  // DROPNET_CUDA_EMU
