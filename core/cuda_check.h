// DN_CUDA_CHECK (a failing CUDA runtime call reports the statement, file:line and CUDA's own
// text) and the helpers the .cu files share: grid size, SM count, stream-ordered scratch. The
// other libraries' checks sit beside their wrappers: DN_CUBLAS_CHECK (kernels/cublas_check.h),
// DN_CUDNN_CHECK (kernels/conv_cudnn.cu), DN_NCCL_CHECK (dist/nccl_comm.cu). Only included from
// .cu files and CUDA-enabled sources.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "core/error.h"

#define DN_CUDA_CHECK(stmt)                                                                  \
  do {                                                                                       \
    cudaError_t dn_err_ = (stmt);                                                            \
    if (dn_err_ != cudaSuccess)                                                              \
      ::dropnet::internal_error(__FILE__, __LINE__,                                          \
                                std::string(#stmt " failed: ") + cudaGetErrorString(dn_err_)); \
  } while (0)

// After a raw <<<...>>> launch (benches; the library launches with DN_LAUNCH, core/launch.cuh,
// which checks by itself): catches bad launch configurations immediately.
#define DN_CUDA_LAUNCH_CHECK() DN_CUDA_CHECK(cudaGetLastError())

namespace dropnet {
// Grid size for a 1-D element-wise launch, capped (kernels use grid-stride loops).
inline unsigned grid_for(long long n, int block = 256) {
  long long g = (n + block - 1) / block;
  if (g < 1) g = 1;
  if (g > 65535LL * 8) g = 65535LL * 8;
  return static_cast<unsigned>(g);
}

// Multiprocessor count of the current device (queried once per device).
int current_sm_count();

// Stream-ordered scratch (split-K partial tiles) from the current device's pool: cudaMallocAsync
// on `s`, freed on `s` once the kernels that use it are queued, so it is safe on any stream. The
// pool keeps its memory (release threshold raised once per device): steady state does not return
// to the driver.
void* stream_scratch_alloc(size_t bytes, cudaStream_t s);
void stream_scratch_free(void* p, cudaStream_t s);
}  // namespace dropnet
