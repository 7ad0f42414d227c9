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

#include <tuple>
#include <type_traits>
#include <utility>

namespace dropnet {

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
