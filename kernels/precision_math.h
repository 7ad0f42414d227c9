// The arithmetic precisions of the matrix products (the `precision` config key) and the one rounding
// both backends apply to their operands, so CPU and GPU results stay comparable:
//
//   fp32  operands as stored, FP32 products and sums (the paper's reproductions)
//   tf32  each GEMM / convolution operand rounded to TF32 (8-bit exponent, 10-bit mantissa) as
//         PTX `cvt.rna.tf32.f32` does: to nearest, ties away from zero; FP32 accumulation
//   bf16  each operand rounded to BF16 (8-bit exponent, 7-bit mantissa) to nearest even, as
//         `__float2bfloat16_rn` does; FP32 accumulation, FP32 master weights, loss and softmax
//
// A rounded value is still a float (its low mantissa bits zero): the CPU kernels compute with it
// directly, the tensor-core kernels hand its high bits to `mma`. NaN stays NaN (quiet), infinities
// stay infinite, and a finite value whose rounding carries past the largest exponent becomes
// infinite, as the hardware conversions do.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include "core/hostdev.h"

namespace dropnet {

enum class Precision : uint8_t { FP32, TF32, BF16 };

namespace precision {

DN_HD uint32_t bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}
DN_HD float from_bits(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}
DN_HD bool is_nan_bits(uint32_t u) { return (u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0; }

// To nearest, ties away from zero, keeping 10 mantissa bits (the low 13 cleared).
DN_HD float round_tf32(float x) {
  const uint32_t u = bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return is_nan_bits(u) ? from_bits(u | 0x00400000u) : x;
  return from_bits((u + 0x00001000u) & 0xffffe000u);
}

// The 16 high bits of x rounded to nearest even (NaN: a quiet NaN of the same sign).
DN_HD uint16_t bf16_bits(float x) {
  const uint32_t u = bits(x);
  if (is_nan_bits(u)) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  return static_cast<uint16_t>((u + 0x00007fffu + ((u >> 16) & 1u)) >> 16);
}
DN_HD float bf16_to_float(uint16_t h) { return from_bits(static_cast<uint32_t>(h) << 16); }
DN_HD float round_bf16(float x) { return bf16_to_float(bf16_bits(x)); }

DN_HD float round(Precision p, float x) {
  return p == Precision::TF32 ? round_tf32(x) : p == Precision::BF16 ? round_bf16(x) : x;
}

}  // namespace precision

// The config spelling: "fp32", "tf32", "bf16".
constexpr const char* precision_name(Precision p) {
  return p == Precision::TF32 ? "tf32" : p == Precision::BF16 ? "bf16" : "fp32";
}

// The spelling back to the enum (host code); false for anything else.
inline bool parse_precision(std::string_view s, Precision* p) {
  for (Precision q : {Precision::FP32, Precision::TF32, Precision::BF16})
    if (s == precision_name(q)) {
      *p = q;
      return true;
    }
  return false;
}

}  // namespace dropnet
