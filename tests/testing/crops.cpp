#include "tests/testing/crops.h"

namespace dropnet::testing {

std::optional<std::tuple<int, int, bool>> find_crop(const float* sample, int channels, int crop_h, int crop_w, int h,
                                                    int w, int pad,
                                                    const std::function<float(int c, int y, int x)>& image) {
  for (int oy = -pad; oy <= h + pad - crop_h; ++oy)
    for (int ox = -pad; ox <= w + pad - crop_w; ++ox)
      for (bool flip : {false, true}) {
        bool ok = true;
        for (int c = 0; c < channels && ok; ++c)
          for (int y = 0; y < crop_h && ok; ++y)
            for (int x = 0; x < crop_w && ok; ++x) {
              const int sy = oy + y, sx = ox + (flip ? crop_w - 1 - x : x);
              const float want = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? image(c, sy, sx) : 0.f;
              ok = sample[(c * crop_h + y) * crop_w + x] == want;
            }
        if (ok) return std::tuple<int, int, bool>{oy, ox, flip};
      }
  return std::nullopt;
}

}  // namespace dropnet::testing
