// Per-sample transforms in Caffe's order: crop (random at TRAIN, center at TEST; optional zero
// padding first), mirror (TRAIN only), then (x - mean) * scale with a scalar, per-channel or
// per-pixel mean. The random choices come from three 32-bit words supplied by the caller (a pure
// function of seed, epoch and position), so a resumed run transforms every sample identically.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/dataset.h"

namespace dropnet::data {

struct TransformSpec {
  float scale = 1.f;
  std::vector<float> mean_values;  // empty, one value, or one per channel
  std::vector<float> mean_image;   // (mean_c, mean_h, mean_w) at the source size; empty = none
  int mean_c = 0, mean_h = 0, mean_w = 0;
  int crop = 0;  // square crop side; 0 = no crop
  int pad = 0;   // zero border added around the source before cropping (needs crop)
  bool mirror = false;
  bool train = true;  // TRAIN: random crop offsets and mirror; TEST: center crop, no mirror
};

struct TransformDraw {
  uint32_t oy = 0, ox = 0, flip = 0;  // random bits
};

// Output (H, W) for a source of (h, w).
std::pair<int, int> transform_output_hw(const TransformSpec& t, int h, int w);
// "" when `t` applies to a (c, h, w) source, else what is wrong (for an input error).
std::string transform_problem(const TransformSpec& t, int c, int h, int w);
// in (C, H, W) uint8 -> out (C, out_h, out_w) float. Padded cells are 0 in the output.
void transform_sample(const TransformSpec& t, const ImageView& in, const TransformDraw& draw, float* out);

}  // namespace dropnet::data
