// What the CUDA benchmarks share: deterministic device data and the event-timed loop.
#pragma once

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>

#include "core/cuda_check.h"
#include "core/launch.cuh"
#include "core/device.h"
#include "core/tensor.h"

namespace dropnet::bench {

// Deterministic values in [-1, 1) from the element index (no host generation of GBs of data).
// static: a non-template kernel in a header included by several benches.
static __global__ void fill_hash(float* p, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    p[i] = static_cast<float>(h >> 8) * (2.f / 16777216.f) - 1.f;
  }
}

inline Tensor device_random(int64_t n, uint32_t seed) {
  Tensor t(Shape{n}, Device::cuda(0));
  fill_hash<<<grid_for(n), 256, 0, cuda_stream()>>>(t.data(), n, seed);
  DN_CUDA_LAUNCH_CHECK();
  return t;
}

// Runs `op` once untimed (warm-up: handles, workspaces, algorithm searches), then once per
// benchmark iteration between two CUDA events on the compute stream, reporting each iteration's
// GPU time as the manual time. Returns the mean milliseconds per call.
inline double time_cuda_ms(benchmark::State& state, const std::function<void()>& op) {
  const Stream s = cuda_stream();
  op();
  DN_CUDA_CHECK(cudaStreamSynchronize(s));
  cudaEvent_t start, stop;
  DN_CUDA_CHECK(cudaEventCreate(&start));
  DN_CUDA_CHECK(cudaEventCreate(&stop));
  double total_ms = 0;
  int64_t iters = 0;
  for (auto _ : state) {
    DN_CUDA_CHECK(cudaEventRecord(start, s));
    op();
    DN_CUDA_CHECK(cudaEventRecord(stop, s));
    DN_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.f;
    DN_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(ms * 1e-3);
    total_ms += ms;
    ++iters;
  }
  DN_CUDA_CHECK(cudaEventDestroy(start));
  DN_CUDA_CHECK(cudaEventDestroy(stop));
  return iters > 0 ? total_ms / static_cast<double>(iters) : 0.0;
}

}  // namespace dropnet::bench
