// Tensor-core building blocks for sm_80+ kernels: mma.sync (TF32 m16n8k8, BF16 m16n8k16), ldmatrix,
// cp.async and the operand conversions, as thin wrappers. Under nvcc each is one inline PTX
// instruction; on the emulated device (emu/) each calls the emulator's implementation of the same
// PTX ISA semantics and fragment layouts (emu/mma.cpp, emu/runtime.cpp). This header is the one
// place that tells the two apart.
//
// Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k8 / mma.m16n8k16"), for a lane with
// g = lane / 4 (groupID) and t = lane % 4 (threadID_in_group):
//   m16n8k8 .tf32   A (16 x 8, row):  a0 (g, t)  a1 (g+8, t)  a2 (g, t+4)  a3 (g+8, t+4)
//                   B (8 x 8, col):   b0 (k=t, n=g)  b1 (k=t+4, n=g)
//   m16n8k16 .bf16  A (16 x 16): reg0 (g, 2t..2t+1)  reg1 (g+8, 2t..)  reg2 (g, 2t+8..)  reg3 (g+8, 2t+8..)
//                   B (16 x 8):  reg0 (k=2t..2t+1, n=g)  reg1 (k=2t+8..2t+9, n=g)
//                   (two BF16 a register, the lower index in the low 16 bits)
//   C / D (16 x 8, FP32): c0 (g, 2t)  c1 (g, 2t+1)  c2 (g+8, 2t)  c3 (g+8, 2t+1)
// ldmatrix .x4: lanes 8i..8i+7 give the row addresses (16 bytes each, 16-byte aligned) of matrix i;
// register i of lane l receives row l/4, bytes 4 (l%4) .. 4 (l%4) + 3 of matrix i. On 32-bit data
// that is element (g, t) of an 8 x 4 FP32 block: exactly a TF32 A or B fragment register.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/precision_math.h"

namespace dropnet::mma {

// FP32 -> TF32 (cvt.rna.tf32.f32: nearest, ties away; the result's low 13 bits are zero).
__device__ __forceinline__ uint32_t cvt_tf32(float x) {
#if defined(DROPNET_CUDA_EMU_RUNTIME)
  return precision::bits(precision::round_tf32(x));
#else
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
#endif
}

// Two FP32 -> one register of two BF16 (cvt.rn.bf16x2.f32: nearest even), `lo` in the low half.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
#if defined(DROPNET_CUDA_EMU_RUNTIME)
  return static_cast<uint32_t>(precision::bf16_bits(lo)) | static_cast<uint32_t>(precision::bf16_bits(hi)) << 16;
#else
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
#endif
}

// d = a * b + d (mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32). Warp-collective.
__device__ __forceinline__ void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(DROPNET_CUDA_EMU_RUNTIME)
  dn_emu::mma_m16n8k8_tf32(d, a, b, d);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// d = a * b + d (mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32). Warp-collective.
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(DROPNET_CUDA_EMU_RUNTIME)
  dn_emu::mma_m16n8k16_bf16(d, a, b, d);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

#if !defined(DROPNET_CUDA_EMU_RUNTIME)
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
#endif

// ldmatrix.sync.aligned.m8n8.x4.shared.b16 from shared memory; `row` is this lane's row address.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
#if defined(DROPNET_CUDA_EMU_RUNTIME)
  dn_emu::ldmatrix_x4(r, row, false);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(row)));
#endif
}

// ldmatrix .trans: register i of lane l holds column l/4 of rows 2 (l%4) and 2 (l%4) + 1 (b16 each).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
#if defined(DROPNET_CUDA_EMU_RUNTIME)
  dn_emu::ldmatrix_x4(r, row, true);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(row)));
#endif
}

// cp.async global -> shared of 16 bytes (both addresses 16-byte aligned), bypassing L1 (.cg) or not
// (.ca): the first `src_bytes` (0..16) are read, the rest of the 16 zero-filled (src_bytes 0 reads
// nothing: the out-of-bounds form).
__device__ __forceinline__ void cp_async_cg16(void* smem, const void* gmem, int src_bytes) {
#if defined(DROPNET_CUDA_EMU_RUNTIME)
  dn_emu::cp_async(smem, gmem, 16, src_bytes);
#else
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(smem)), "l"(gmem), "r"(src_bytes)
               : "memory");
#endif
}
__device__ __forceinline__ void cp_async_ca16(void* smem, const void* gmem, int src_bytes) {
#if defined(DROPNET_CUDA_EMU_RUNTIME)
  dn_emu::cp_async(smem, gmem, 16, src_bytes);
#else
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(smem)), "l"(gmem), "r"(src_bytes)
               : "memory");
#endif
}
// 4 bytes (.ca only: .cg copies 16), for operands not 16-byte aligned; src_bytes 0 or 4.
__device__ __forceinline__ void cp_async_ca4(void* smem, const void* gmem, int src_bytes) {
#if defined(DROPNET_CUDA_EMU_RUNTIME)
  dn_emu::cp_async(smem, gmem, 4, src_bytes);
#else
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(smem_addr(smem)), "l"(gmem), "r"(src_bytes)
               : "memory");
#endif
}

// Closes the cp.async group of this thread's copies issued since the last commit.
__device__ __forceinline__ void cp_async_commit() {
#if defined(DROPNET_CUDA_EMU_RUNTIME)
  dn_emu::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}

// Waits until at most N of this thread's committed groups are still in flight. (Other threads'
// copies need a __syncthreads after it.)
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(DROPNET_CUDA_EMU_RUNTIME)
  dn_emu::cp_async_wait(N);
#else
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#endif
}

}  // namespace dropnet::mma
