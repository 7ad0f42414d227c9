// The launch checks of the pooling entry points, shared by the CPU loops (pool_cpu.cpp) and the
// CUDA kernels (pool.cu). make_pool_params validates the configuration itself; this only catches
// hand-built params and missing buffers (programming errors: internal errors).
#pragma once

#include <cstdint>

#include "core/error.h"
#include "kernels/pool.h"
#include "kernels/pool_math.h"

namespace dropnet {

inline void pool_check_args(const PoolParams& p, const void* in, const void* out, const int32_t* argmax) {
  DN_CHECK(p.out_h == pool_out_size(p.h, p.kernel_h, p.stride_h, p.pad_h) &&
               p.out_w == pool_out_size(p.w, p.kernel_w, p.stride_w, p.pad_w),
           "PoolParams output {}x{} does not match its input (build it with make_pool_params)",
           p.out_h, p.out_w);
  DN_CHECK(in != nullptr && out != nullptr, "null tensor pointer");
  DN_CHECK(p.method != PoolMethod::Max || argmax != nullptr, "max pooling needs an argmax buffer");
}

}  // namespace dropnet
