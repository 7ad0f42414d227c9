// Launching a kernel: DN_LAUNCH, the one way dropnet launches one, and what launches are sized
// with (a 1-D grid, the SM count, stream-ordered scratch for split-K partial tiles).
//
// The one way dropnet launches a kernel:
//
//   DN_LAUNCH(kernel, grid, block, shared_bytes, stream, args...);
//
// Under nvcc it is cudaLaunchKernel (what <<<...>>> expands to); with the emulated device
// (DROPNET_CUDA=EMU, emu/) it queues the kernel on the emulator. Either way the launch error is
// checked at once and named with the kernel and the layer being run (set_launch_context), and
// with DROPNET_CUDA_SYNC=1 the stream is synchronized after every launch, so the first fault is
// reported at the kernel that caused it rather than at the next readback.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

namespace dropnet {

// Grid size for a 1-D element-wise launch, capped (kernels use grid-stride loops).
inline unsigned grid_for(long long n, int block = 256) {
  long long g = (n + block - 1) / block;
  if (g < 1) g = 1;
  if (g > 65535LL * 8) g = 65535LL * 8;
  return static_cast<unsigned>(g);
}

// Multiprocessor count of the current device (queried once per device; core/device_cuda.cu).
int current_sm_count();

// Stream-ordered scratch (split-K partial tiles) from the current device's pool: cudaMallocAsync
// on `s`, freed on `s` once the kernels that use it are queued, so it is safe on any stream. The
// pool keeps its memory (release threshold raised once per device): steady state does not return
// to the driver.
void* stream_scratch_alloc(size_t bytes, cudaStream_t s);
void stream_scratch_free(void* p, cudaStream_t s);

// Checks a launch's error (and with DROPNET_CUDA_SYNC=1 synchronizes `s` and checks again);
// throws an internal error naming the kernel, the layer and the stream's device.
void check_launch(const char* kernel, cudaError_t launch_error, cudaStream_t s);

template <typename... P, typename... A>
void launch_kernel(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t s,
                   A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
#if defined(__CUDACC__)
  std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  const cudaError_t e = std::apply(
      [&](auto&... p) {
        void* argv[] = {static_cast<void*>(&p)..., nullptr};
        return cudaLaunchKernel(reinterpret_cast<const void*>(kernel), grid, block, argv, shared_bytes, s);
      },
      params);
#else
  const cudaError_t e = dn_emu::launch(name, kernel, grid, block, shared_bytes, s, std::forward<A>(args)...);
#endif
  check_launch(name, e, s);
}

}  // namespace dropnet

// The name is "file:kernel" (the emulator's coverage test counts launches per defining file).
// `kernel` may be a template instance with commas in its arguments: only its text up to the first
// comma enters the name, and the launch itself receives every token.
#define DN_LAUNCH(kernel, ...) ::dropnet::launch_kernel(__FILE__ ":" #kernel, kernel, __VA_ARGS__)
