// The emulated device's tensor-core instructions (kernels/mma.cuh on emu/mma.cpp): one mma of each
// kind (TF32 m16n8k8, BF16 m16n8k16) on known inputs, every lane's D fragment checked against a
// scalar product, with the A / B / C fragments built on the host from the PTX ISA's layout tables
// (so a wrong layout in the emulator fails); ldmatrix .x4 and .x4.trans, lane by lane; cp.async
// zero-fill and its commit / wait groups; the faults of an mma in a divergent warp and of a
// cp.async past its allocation.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/launch.cuh"
#include "emu/emu.h"
#include "emu/fiber.h"
#include "kernels/mma.cuh"
#include "kernels/precision_math.h"

namespace {

using dropnet::mma::cp_async_ca4;
using dropnet::mma::cp_async_cg16;
using dropnet::mma::cp_async_commit;
using dropnet::mma::cp_async_wait;

// Registers in, registers out, lane by lane: a (32 x 4), b (32 x 2), c and d (32 x 4).
__global__ void mma_tf32_probe(const uint32_t* a, const uint32_t* b, const float* c, float* d) {
  const int l = static_cast<int>(threadIdx.x);
  uint32_t af[4] = {a[4 * l], a[4 * l + 1], a[4 * l + 2], a[4 * l + 3]};
  uint32_t bf[2] = {b[2 * l], b[2 * l + 1]};
  float acc[4] = {c[4 * l], c[4 * l + 1], c[4 * l + 2], c[4 * l + 3]};
  dropnet::mma::mma_m16n8k8_tf32(acc, af, bf);
  for (int i = 0; i < 4; ++i) d[4 * l + i] = acc[i];
}

__global__ void mma_bf16_probe(const uint32_t* a, const uint32_t* b, const float* c, float* d) {
  const int l = static_cast<int>(threadIdx.x);
  uint32_t af[4] = {a[4 * l], a[4 * l + 1], a[4 * l + 2], a[4 * l + 3]};
  uint32_t bf[2] = {b[2 * l], b[2 * l + 1]};
  float acc[4] = {c[4 * l], c[4 * l + 1], c[4 * l + 2], c[4 * l + 3]};
  dropnet::mma::mma_m16n8k16_bf16(acc, af, bf);
  for (int i = 0; i < 4; ++i) d[4 * l + i] = acc[i];
}

// Lanes below `active` only: the others have exited.
__global__ void mma_divergent(int active, float* d) {
  if (static_cast<int>(threadIdx.x) >= active) return;
  uint32_t af[4] = {}, bf[2] = {};
  float acc[4] = {};
  dropnet::mma::mma_m16n8k8_tf32(acc, af, bf);
  d[threadIdx.x] = acc[0];
}

// Four 8 x 8 b16 matrices (256 values) staged in shared memory; r (32 x 4) per lane.
__global__ void ldmatrix_probe(const uint16_t* m, bool trans, uint32_t* r) {
  __shared__ __align__(16) uint16_t s[4 * 64];
  const int l = static_cast<int>(threadIdx.x);
  for (int i = l; i < 256; i += 32) s[i] = m[i];
  __syncthreads();
  uint32_t out[4];
  const void* row = s + 64 * (l / 8) + 8 * (l % 8);  // lane l: row l % 8 of matrix l / 8
  if (trans)
    dropnet::mma::ldmatrix_x4_trans(out, row);
  else
    dropnet::mma::ldmatrix_x4(out, row);
  for (int i = 0; i < 4; ++i) r[4 * l + i] = out[i];
}

// One thread: 16-byte copies of src_bytes 16, 8, 4, 0 (group 0) and 4-byte copies of 4 and 0
// (group 1) into shared memory holding -1; `before` is shared memory after the copies were issued
// and group 1 committed, `mid` after wait_group 1 (group 0 done), `after` after wait_group 0.
__global__ void cp_async_probe(const float* src, float* before, float* mid, float* after) {
  __shared__ __align__(16) float s[24];
  for (int i = 0; i < 24; ++i) s[i] = -1.f;
  cp_async_cg16(s, src, 16);
  cp_async_cg16(s + 4, src + 4, 8);
  cp_async_cg16(s + 8, src + 8, 4);
  cp_async_cg16(s + 12, src + 12, 0);
  cp_async_commit();
  cp_async_ca4(s + 16, src + 16, 4);
  cp_async_ca4(s + 17, src + 17, 0);
  cp_async_commit();
  for (int i = 0; i < 24; ++i) before[i] = s[i];
  cp_async_wait<1>();
  for (int i = 0; i < 24; ++i) mid[i] = s[i];
  cp_async_wait<0>();
  for (int i = 0; i < 24; ++i) after[i] = s[i];
}

// A 16-byte cp.async from src + offset (then waited for).
__global__ void cp_async_from(const float* src, int offset, float* out) {
  __shared__ __align__(16) float s[4];
  cp_async_cg16(s, src + offset, 16);
  cp_async_commit();
  cp_async_wait<0>();
  out[0] = s[0];
}

template <typename T>
T* to_device(const std::vector<T>& h) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, h.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}
template <typename T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

uint32_t bits(float x) { return dropnet::precision::bits(x); }

// The PTX ISA's C / D layout: element i of lane l is (g + 8 [i >= 2], 2 t + (i & 1)).
int c_row(int l, int i) { return l / 4 + (i >= 2 ? 8 : 0); }
int c_col(int l, int i) { return 2 * (l % 4) + (i & 1); }

// A(16 x K), B(K x 8), C(16 x 8) of small integers: every product and sum exact in FP32, every
// value exact in TF32 and BF16, no two alike, so any misplaced element changes some D.
float a_val(int r, int k) { return static_cast<float>(((r * 7 + k * 3) % 23) - 11); }
float b_val(int k, int n) { return static_cast<float>(((k * 5 + n * 11) % 19) - 9); }
float c_val(int r, int n) { return static_cast<float>(r * 8 + n) * 0.5f; }

TEST(EmulatorMma, Tf32M16n8k8EveryLaneFragment) {
  std::vector<uint32_t> a(128), b(64);
  std::vector<float> c(128);
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    // a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4); b0 (k = t, n = g), b1 (k = t + 4, n = g).
    a[4 * l + 0] = bits(a_val(g, t));
    a[4 * l + 1] = bits(a_val(g + 8, t));
    a[4 * l + 2] = bits(a_val(g, t + 4));
    a[4 * l + 3] = bits(a_val(g + 8, t + 4));
    b[2 * l + 0] = bits(b_val(t, g));
    b[2 * l + 1] = bits(b_val(t + 4, g));
    for (int i = 0; i < 4; ++i) c[4 * l + i] = c_val(c_row(l, i), c_col(l, i));
  }
  uint32_t *ad = to_device(a), *bd = to_device(b);
  float *cd = to_device(c), *dd = to_device(std::vector<float>(128));
  DN_LAUNCH(mma_tf32_probe, dim3(1), dim3(32), 0, nullptr, ad, bd, cd, dd);
  const std::vector<float> d = to_host(dd, 128);
  for (int l = 0; l < 32; ++l)
    for (int i = 0; i < 4; ++i) {
      float want = c_val(c_row(l, i), c_col(l, i));
      for (int k = 0; k < 8; ++k) want += a_val(c_row(l, i), k) * b_val(k, c_col(l, i));
      EXPECT_EQ(d[4 * l + i], want) << "lane " << l << " d" << i;
    }
  cudaFree(ad);
  cudaFree(bd);
  cudaFree(cd);
  cudaFree(dd);
}

// The hardware reads only a register's TF32 bits: the low 13 are ignored (not rounded).
TEST(EmulatorMma, Tf32OperandsAreTheRegistersHigh19Bits) {
  const float x = 1.f + 0x1.ffcp-11f;  // 1 + 2^-10 - 2^-21: TF32 truncation 1, cvt.rna 1 + 2^-10
  std::vector<uint32_t> a(128, bits(0.f)), b(64, bits(0.f));
  a[0] = bits(x);    // lane 0's a0: A(0, 0)
  b[0] = bits(1.f);  // lane 0's b0: B(0, 0)
  uint32_t *ad = to_device(a), *bd = to_device(b);
  float *cd = to_device(std::vector<float>(128, 0.f)), *dd = to_device(std::vector<float>(128));
  DN_LAUNCH(mma_tf32_probe, dim3(1), dim3(32), 0, nullptr, ad, bd, cd, dd);
  EXPECT_EQ(to_host(dd, 128)[0], 1.f);
  EXPECT_EQ(dropnet::precision::round_tf32(x), 1.f + 0x1p-10f);
  cudaFree(ad);
  cudaFree(bd);
  cudaFree(cd);
  cudaFree(dd);
}

uint32_t pack(float lo, float hi) {
  return static_cast<uint32_t>(dropnet::precision::bf16_bits(lo)) |
         static_cast<uint32_t>(dropnet::precision::bf16_bits(hi)) << 16;
}

TEST(EmulatorMma, Bf16M16n8k16EveryLaneFragment) {
  std::vector<uint32_t> a(128), b(64);
  std::vector<float> c(128);
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    // a0,a1 (g, 2t..2t+1)  a2,a3 (g+8, 2t..)  a4,a5 (g, 2t+8..)  a6,a7 (g+8, 2t+8..), lower index low.
    a[4 * l + 0] = pack(a_val(g, 2 * t), a_val(g, 2 * t + 1));
    a[4 * l + 1] = pack(a_val(g + 8, 2 * t), a_val(g + 8, 2 * t + 1));
    a[4 * l + 2] = pack(a_val(g, 2 * t + 8), a_val(g, 2 * t + 9));
    a[4 * l + 3] = pack(a_val(g + 8, 2 * t + 8), a_val(g + 8, 2 * t + 9));
    // b0,b1 (k = 2t..2t+1, n = g)  b2,b3 (k = 2t+8..2t+9, n = g).
    b[2 * l + 0] = pack(b_val(2 * t, g), b_val(2 * t + 1, g));
    b[2 * l + 1] = pack(b_val(2 * t + 8, g), b_val(2 * t + 9, g));
    for (int i = 0; i < 4; ++i) c[4 * l + i] = c_val(c_row(l, i), c_col(l, i));
  }
  uint32_t *ad = to_device(a), *bd = to_device(b);
  float *cd = to_device(c), *dd = to_device(std::vector<float>(128));
  DN_LAUNCH(mma_bf16_probe, dim3(1), dim3(32), 0, nullptr, ad, bd, cd, dd);
  const std::vector<float> d = to_host(dd, 128);
  for (int l = 0; l < 32; ++l)
    for (int i = 0; i < 4; ++i) {
      float want = c_val(c_row(l, i), c_col(l, i));
      for (int k = 0; k < 16; ++k) want += a_val(c_row(l, i), k) * b_val(k, c_col(l, i));
      EXPECT_EQ(d[4 * l + i], want) << "lane " << l << " d" << i;
    }
  cudaFree(ad);
  cudaFree(bd);
  cudaFree(cd);
  cudaFree(dd);
}

TEST(EmulatorMma, MmaInADivergentWarpIsAFault) {
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 32 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(dn_emu::launch("mma_divergent", mma_divergent, dim3(1), dim3(32), 0, nullptr, 16, d), cudaSuccess);
  const cudaError_t e = cudaDeviceSynchronize();
  EXPECT_EQ(e, cudaErrorLaunchFailure);
  EXPECT_NE(std::string(cudaGetErrorString(e)).find("lane 16 has exited"), std::string::npos) << cudaGetErrorString(e);
  ASSERT_EQ(cudaDeviceReset(), cudaSuccess);
  // The whole warp is fine.
  ASSERT_EQ(cudaMalloc(&d, 32 * sizeof(float)), cudaSuccess);
  DN_LAUNCH(mma_divergent, dim3(1), dim3(32), 0, nullptr, 32, d);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  cudaFree(d);
}

TEST(EmulatorMma, LdmatrixX4AndTransEveryLane) {
  std::vector<uint16_t> m(256);
  for (int i = 0; i < 256; ++i) m[i] = static_cast<uint16_t>(1000 + i);  // matrix i / 64, row, column
  uint16_t* md = to_device(m);
  uint32_t* rd = to_device(std::vector<uint32_t>(128));
  for (bool trans : {false, true}) {
    DN_LAUNCH(ldmatrix_probe, dim3(1), dim3(32), 0, nullptr, md, trans, rd);
    const std::vector<uint32_t> r = to_host(rd, 128);
    for (int l = 0; l < 32; ++l)
      for (int i = 0; i < 4; ++i) {
        // Register i of lane l: row l / 4, columns 2 (l % 4), +1 of matrix i; .trans: of its transpose.
        const int row = l / 4, col = 2 * (l % 4);
        const auto at = [&](int rr, int cc) { return static_cast<uint32_t>(m[64 * i + 8 * rr + cc]); };
        const uint32_t want = trans ? at(col, row) | at(col + 1, row) << 16 : at(row, col) | at(row, col + 1) << 16;
        EXPECT_EQ(r[4 * l + i], want) << (trans ? "trans " : "") << "lane " << l << " r" << i;
      }
  }
  cudaFree(md);
  cudaFree(rd);
}

TEST(EmulatorMma, CpAsyncZeroFillAndWaitGroups) {
  std::vector<float> src(24);
  for (int i = 0; i < 24; ++i) src[i] = static_cast<float>(i + 1);
  float* sd = to_device(src);
  float *bd = to_device(std::vector<float>(24)), *md = to_device(std::vector<float>(24)),
        *ad = to_device(std::vector<float>(24));
  DN_LAUNCH(cp_async_probe, dim3(1), dim3(1), 0, nullptr, sd, bd, md, ad);
  const std::vector<float> before = to_host(bd, 24), mid = to_host(md, 24), after = to_host(ad, 24);
  // Copied bytes, then zeros: src-size 16, 8, 4, 0 of 16; 4, 0 of 4; untouched past 18.
  const std::vector<float> want = {1, 2, 3, 4, 5, 6, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 17, 0, -1, -1, -1, -1, -1, -1};
  for (int i = 0; i < 24; ++i) {
    EXPECT_EQ(before[i], -1.f) << "before any wait, element " << i;  // the emulator defers to the wait
    EXPECT_EQ(mid[i], i < 16 ? want[i] : -1.f) << "after wait_group 1, element " << i;
    EXPECT_EQ(after[i], want[i]) << "after wait_group 0, element " << i;
  }
  cudaFree(sd);
  cudaFree(bd);
  cudaFree(md);
  cudaFree(ad);
}

// A copy reading past its allocation is a fault (the ASan build would also see it byte by byte).
TEST(EmulatorMma, CpAsyncPastAnAllocationIsAFault) {
  // Under TSan the emulator leaves the allocation lookup out (its lock would order the fibers and
  // hide their races: emu/runtime.cpp, cp_async).
  if (DN_EMU_TSAN) GTEST_SKIP() << "cp.async's allocation check is off under TSan";
  float* src = to_device(std::vector<float>(8, 1.f));
  float* out = to_device(std::vector<float>(1, 0.f));
  DN_LAUNCH(cp_async_from, dim3(1), dim3(1), 0, nullptr, src, 4, out);  // the last 16 bytes: fine
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(to_host(out, 1)[0], 1.f);
  ASSERT_EQ(dn_emu::launch("cp_async_from", cp_async_from, dim3(1), dim3(1), 0, nullptr, src, 8, out), cudaSuccess);
  const cudaError_t e = cudaDeviceSynchronize();
  EXPECT_EQ(e, cudaErrorLaunchFailure);
  EXPECT_NE(std::string(cudaGetErrorString(e)).find("not inside one device allocation"), std::string::npos)
      << cudaGetErrorString(e);
  ASSERT_EQ(cudaDeviceReset(), cudaSuccess);
}

}  // namespace
