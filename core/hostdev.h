// Marks functions shared by the CPU loops and the CUDA kernels (DESIGN.md §3).
#pragma once

#if defined(__CUDACC__)
#define DN_HD __host__ __device__ __forceinline__
#else
#define DN_HD inline
#endif
