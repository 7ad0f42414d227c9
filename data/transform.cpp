#include "data/transform.h"

#include <fmt/format.h>

#include "core/error.h"

namespace dropnet::data {

std::pair<int, int> transform_output_hw(const TransformSpec& t, int h, int w) {
  if (t.crop > 0) return {t.crop, t.crop};
  return {h, w};
}

std::string transform_problem(const TransformSpec& t, int c, int h, int w) {
  if (t.pad > 0 && t.crop <= 0) return "pad needs crop";
  if (t.crop > 0 && (h + 2 * t.pad < t.crop || w + 2 * t.pad < t.crop))
    return fmt::format("crop {} is larger than the {}x{} image{}", t.crop, h, w,
                       t.pad ? fmt::format(" padded by {}", t.pad) : std::string());
  if (t.mean_values.size() > 1 && static_cast<int>(t.mean_values.size()) != c)
    return fmt::format("mean has {} values but the image has {} channels", t.mean_values.size(), c);
  if (!t.mean_image.empty() && (t.mean_c != c || t.mean_h != h || t.mean_w != w))
    return fmt::format("the mean image is {}x{}x{} but the image is {}x{}x{} (C x H x W)", t.mean_c, t.mean_h,
                       t.mean_w, c, h, w);
  return "";
}

void transform_sample(const TransformSpec& t, const ImageView& in, const TransformDraw& draw, float* out) {
  const int c = in.c, h = in.h, w = in.w;
  auto [oh, ow] = transform_output_hw(t, h, w);
  // Source coordinate of output (0, 0), in unpadded source pixels (may be negative with pad).
  int y0 = 0, x0 = 0;
  if (t.crop > 0) {
    int ry = h + 2 * t.pad - t.crop, rx = w + 2 * t.pad - t.crop;
    if (t.train) {
      y0 = static_cast<int>(draw.oy % static_cast<uint32_t>(ry + 1));
      x0 = static_cast<int>(draw.ox % static_cast<uint32_t>(rx + 1));
    } else {
      y0 = ry / 2;
      x0 = rx / 2;
    }
    y0 -= t.pad;
    x0 -= t.pad;
  }
  const bool flip = t.mirror && t.train && (draw.flip & 1u);
  const bool mean_img = !t.mean_image.empty();
  const float scale = t.scale;
  for (int ch = 0; ch < c; ++ch) {
    float mv = t.mean_values.empty() ? 0.f : (t.mean_values.size() == 1 ? t.mean_values[0] : t.mean_values[ch]);
    const uint8_t* plane = in.px + static_cast<int64_t>(ch) * h * w;
    const float* mplane = mean_img ? t.mean_image.data() + static_cast<int64_t>(ch) * h * w : nullptr;
    float* oplane = out + static_cast<int64_t>(ch) * oh * ow;
    for (int y = 0; y < oh; ++y) {
      int sy = y0 + y;
      float* orow = oplane + static_cast<int64_t>(y) * ow;
      if (sy < 0 || sy >= h) {
        for (int x = 0; x < ow; ++x) orow[x] = 0.f;
        continue;
      }
      const uint8_t* srow = plane + static_cast<int64_t>(sy) * w;
      const float* mrow = mean_img ? mplane + static_cast<int64_t>(sy) * w : nullptr;
      for (int x = 0; x < ow; ++x) {
        int sx = x0 + (flip ? ow - 1 - x : x);
        if (sx < 0 || sx >= w) {
          orow[x] = 0.f;
          continue;
        }
        float m = mean_img ? mrow[sx] : mv;
        orow[x] = (static_cast<float>(srow[sx]) - m) * scale;
      }
    }
  }
}

}  // namespace dropnet::data
