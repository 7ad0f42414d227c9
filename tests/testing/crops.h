// Recognizing the crops that data sources take at TRAIN time (random offset, optional zero padding and mirror).
#pragma once

#include <functional>
#include <optional>
#include <tuple>

namespace dropnet::testing {

// Which crop of an h x w image with `channels` channels `sample` (channels x crop_h x crop_w, C order) is: the first
// (oy, ox, flip) -- offsets from -pad to their largest, row by row, unmirrored before mirrored -- for which every
// element equals image(c, oy + y, ox + x'), x' = crop_w - 1 - x when flip, else x; 0 outside the image (the padding).
// nullopt when no crop matches.
std::optional<std::tuple<int, int, bool>> find_crop(const float* sample, int channels, int crop_h, int crop_w, int h,
                                                    int w, int pad,
                                                    const std::function<float(int c, int y, int x)>& image);

}  // namespace dropnet::testing
