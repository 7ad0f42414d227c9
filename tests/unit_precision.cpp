// The operand rounding of `precision: tf32 | bf16` (kernels/precision_math.h) against the
// conversions it stands for: cvt.rna.tf32.f32 (nearest, ties away) and __float2bfloat16_rn
// (nearest even), including ties, carries into the exponent, overflow, subnormals, NaN, infinity.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kernels/precision_math.h"

namespace dropnet {
namespace {

using precision::round_bf16;
using precision::round_tf32;

TEST(Precision, Tf32KeepsTenMantissaBitsAndRoundsTiesAwayFromZero) {
  EXPECT_EQ(round_tf32(1.0f), 1.0f);
  EXPECT_EQ(round_tf32(1.0f + 0x1p-12f), 1.0f);                // below half an ulp (2^-10)
  EXPECT_EQ(round_tf32(1.0f + 0x1p-11f), 1.0f + 0x1p-10f);     // a tie: away from zero
  EXPECT_EQ(round_tf32(-1.0f - 0x1p-11f), -1.0f - 0x1p-10f);   // ... on both sides
  EXPECT_EQ(round_tf32(1.0f + 0x1p-10f + 0x1p-11f), 1.0f + 0x1p-9f);  // a tie from an odd value
  EXPECT_EQ(round_tf32(2.0f - 0x1p-12f), 2.0f);                // carry into the exponent
  for (float x : {3.14159265f, -2.71828f, 1e-3f, 12345.678f}) {
    const float r = round_tf32(x);
    EXPECT_EQ(precision::bits(r) & 0x1fffu, 0u) << x;
    EXPECT_LE(std::fabs(r - x), std::fabs(x) * 0x1p-11f) << x;
  }
}

TEST(Precision, Bf16KeepsSevenMantissaBitsAndRoundsTiesToEven) {
  EXPECT_EQ(round_bf16(1.0f + 0x1p-8f), 1.0f);                 // tie, 1.0 is even
  EXPECT_EQ(round_bf16(1.0f + 3 * 0x1p-8f), 1.0f + 0x1p-6f);   // tie, rounds up to the even one
  EXPECT_EQ(round_bf16(1.0f + 0x1p-8f + 0x1p-20f), 1.0f + 0x1p-7f);  // just above a tie
  EXPECT_EQ(round_bf16(-3.14159265f), -3.140625f);
  EXPECT_EQ(precision::bf16_bits(1.0f), 0x3f80);
  EXPECT_EQ(precision::bf16_to_float(0xc049), -3.140625f);
}

TEST(Precision, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity(), big = std::numeric_limits<float>::max();
  for (auto f : {+[](float x) { return round_tf32(x); }, +[](float x) { return round_bf16(x); }}) {
    EXPECT_EQ(f(inf), inf);
    EXPECT_EQ(f(-inf), -inf);
    EXPECT_EQ(f(big), inf);  // the rounding carries past the largest exponent, as the hardware's
    EXPECT_TRUE(std::isnan(f(std::nanf(""))));
    EXPECT_TRUE(std::isnan(f(-std::nanf(""))));
    EXPECT_EQ(f(0.0f), 0.0f);
    EXPECT_TRUE(std::signbit(f(-0.0f)));
    EXPECT_EQ(f(0x1.8p-130f + 0x1p-149f), 0x1.8p-130f);  // a subnormal: the low bits cleared
  }
  // Subnormals round on the bit grid, not relative to the value: TF32 steps are 2^-136, BF16 2^-133.
  EXPECT_EQ(round_tf32(0x1p-137f), 0x1p-136f);  // a tie: away from zero
  EXPECT_EQ(round_bf16(0x1p-134f), 0.0f);       // a tie: to even (zero)
  EXPECT_EQ(round_bf16(0x1.8p-133f), 0x1p-132f);
  EXPECT_EQ(precision::round(Precision::FP32, 1.0f + 0x1p-20f), 1.0f + 0x1p-20f);
  EXPECT_EQ(precision::round(Precision::TF32, 1.0f + 0x1p-20f), 1.0f);
  EXPECT_EQ(precision::round(Precision::BF16, 1.0f + 0x1p-7f + 0x1p-20f), 1.0f + 0x1p-7f);
}

TEST(Precision, ConfigSpellingRoundTrips) {
  for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16}) {
    Precision q = Precision::FP32;
    ASSERT_TRUE(parse_precision(precision_name(p), &q)) << precision_name(p);
    EXPECT_EQ(q, p);
  }
  Precision q = Precision::TF32;
  for (const char* bad : {"fp16", "TF32", "", "bf16 "}) EXPECT_FALSE(parse_precision(bad, &q)) << bad;
  EXPECT_EQ(q, Precision::TF32);  // untouched on failure
}

}  // namespace
}  // namespace dropnet
