// Tensor-core mma.sync and ldmatrix on the emulated device (declared in emu/include/cuda_runtime.h,
// called by kernels/mma.cuh). Each is a warp-collective exchange (warp_collective, runtime.cpp):
// the 32 lanes deposit pointers to their registers, then every lane assembles its own result from
// the others' with the fragment layouts of the PTX ISA ("Matrix fragments for mma.m16n8k8" (.tf32),
// "for mma.m16n8k16 with floating point type" (.bf16), "ldmatrix"), where, for a lane,
// groupID = lane / 4 and threadID_in_group = lane % 4.
//
// Arithmetic: the operands are the TF32 (high 19 bits) or BF16 values of the registers; every
// product of two is exact in FP32; the products are added to the accumulator in FP32, k = 0, 1, ...
// in turn. The hardware's order and internal precision of that sum are unspecified, so results
// agree with a GPU's to a tolerance, not bit for bit (emu/README.md).
#include <cstdint>
#include <cstring>
#include <string>

#include "emu/emu.h"

namespace dn_emu {
namespace {

float f32(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
float tf32_value(uint32_t u) { return f32(u & 0xffffe000u); }
float bf16_value(uint32_t reg, int half) { return f32(half ? reg & 0xffff0000u : reg << 16); }

struct MmaOperands {
  const uint32_t* a;
  const uint32_t* b;
};
struct MmaResult {
  float* d;
  const float* c;
  int lane;
};

// D element i of `lane`: row groupID (+8 for i >= 2), column 2 * threadID_in_group + (i & 1).
int d_row(int lane, int i) { return lane / 4 + (i >= 2 ? 8 : 0); }
int d_col(int lane, int i) { return 2 * (lane % 4) + (i & 1); }

void mma_tf32_lane(const void* const* lanes, void* ctx) {
  auto* r = static_cast<MmaResult*>(ctx);
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const int row = d_row(r->lane, i), col = d_col(r->lane, i);
    float acc = r->c[i];
    for (int k = 0; k < 8; ++k) {
      // A (16 x 8): a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4).
      const auto* ao = static_cast<const MmaOperands*>(lanes[(row % 8) * 4 + k % 4]);
      const float a = tf32_value(ao->a[(row >= 8 ? 1 : 0) + (k >= 4 ? 2 : 0)]);
      // B (8 x 8): b0 (k = t, n = g), b1 (k = t + 4, n = g).
      const auto* bo = static_cast<const MmaOperands*>(lanes[col * 4 + k % 4]);
      const float b = tf32_value(bo->b[k >= 4 ? 1 : 0]);
      acc += a * b;
    }
    out[i] = acc;
  }
  std::memcpy(r->d, out, sizeof out);
}

void mma_bf16_lane(const void* const* lanes, void* ctx) {
  auto* r = static_cast<MmaResult*>(ctx);
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const int row = d_row(r->lane, i), col = d_col(r->lane, i);
    float acc = r->c[i];
    for (int k = 0; k < 16; ++k) {
      // A (16 x 16), two a register: a0,a1 (g, 2t + j), a2,a3 (g + 8, 2t + j), a4,a5 (g, 2t + 8 + j),
      // a6,a7 (g + 8, 2t + 8 + j).
      const auto* ao = static_cast<const MmaOperands*>(lanes[(row % 8) * 4 + (k % 8) / 2]);
      const float a = bf16_value(ao->a[(row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)], k % 2);
      // B (16 x 8): b0,b1 (k = 2t + j, n = g), b2,b3 (k = 2t + 8 + j, n = g).
      const auto* bo = static_cast<const MmaOperands*>(lanes[col * 4 + (k % 8) / 2]);
      const float b = bf16_value(bo->b[k >= 8 ? 1 : 0], k % 2);
      acc += a * b;
    }
    out[i] = acc;
  }
  std::memcpy(r->d, out, sizeof out);
}

struct LdmatrixResult {
  uint32_t* r;
  int lane;
  bool trans;
};

void ldmatrix_lane(const void* const* lanes, void* ctx) {
  auto* res = static_cast<LdmatrixResult*>(ctx);
  const int l = res->lane;
  for (int l2 = 0; l2 < 32; ++l2)
    if (reinterpret_cast<uintptr_t>(*static_cast<const void* const*>(lanes[l2])) % 16 != 0)
      throw Fault(cudaErrorLaunchFailure,
                  "ldmatrix: lane " + std::to_string(l2) + "'s row address is not 16-byte aligned");
  const auto row = [&](int m, int r) { return static_cast<const char*>(*static_cast<const void* const*>(lanes[8 * m + r])); };
  for (int m = 0; m < 4; ++m) {
    if (!res->trans) {
      // Row l / 4, elements 2 (l % 4) and 2 (l % 4) + 1: the 4 bytes at 4 (l % 4).
      std::memcpy(&res->r[m], row(m, l / 4) + 4 * (l % 4), 4);
    } else {
      // The transposed matrix's row l / 4: column l / 4 of rows 2 (l % 4) and 2 (l % 4) + 1.
      uint16_t lo, hi;
      std::memcpy(&lo, row(m, 2 * (l % 4)) + 2 * (l / 4), 2);
      std::memcpy(&hi, row(m, 2 * (l % 4) + 1) + 2 * (l / 4), 2);
      res->r[m] = static_cast<uint32_t>(lo) | static_cast<uint32_t>(hi) << 16;
    }
  }
}

int this_lane() { return static_cast<int>(lane_id()); }

}  // namespace

void mma_m16n8k8_tf32(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  const MmaOperands mine{a, b};
  float c_copy[4] = {c[0], c[1], c[2], c[3]};  // d may be c
  MmaResult r{d, c_copy, this_lane()};
  warp_collective("mma.sync.m16n8k8.tf32", &mine, &mma_tf32_lane, &r);
}

void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  const MmaOperands mine{a, b};
  float c_copy[4] = {c[0], c[1], c[2], c[3]};
  MmaResult r{d, c_copy, this_lane()};
  warp_collective("mma.sync.m16n8k16.bf16", &mine, &mma_bf16_lane, &r);
}

void ldmatrix_x4(uint32_t r[4], const void* row, bool trans) {
  LdmatrixResult res{r, this_lane(), trans};
  warp_collective(trans ? "ldmatrix.x4.trans" : "ldmatrix.x4", &row, &ldmatrix_lane, &res);
}

}  // namespace dn_emu
