// The parameter checks of the Resize entry points (resize_cpu.cpp, resize.cu) and the Resize
// layer's configuration: one backend-neutral place, called by both backends' launchers.
#pragma once

#include "core/error.h"
#include "kernels/resize.h"

namespace dropnet {

// n >= 0, every other extent >= 1, spatial extents <= 2^24 (exact index arithmetic); throws
// dropnet::Error.
inline void resize_check_params(const ResizeParams& p) {
  DN_CHECK(p.method == ResizeMethod::Nearest || p.method == ResizeMethod::Bilinear ||
               p.method == ResizeMethod::Area,
           "resize: bad method {}", static_cast<int>(p.method));
  DN_CHECK(p.channel_mode == ChannelMode::Tile || p.channel_mode == ChannelMode::Pad ||
               p.channel_mode == ChannelMode::Average,
           "resize: bad channel mode {}", static_cast<int>(p.channel_mode));
  DN_CHECK(p.n >= 0 && p.c >= 1 && p.h >= 1 && p.w >= 1 && p.out_c >= 1 && p.out_h >= 1 && p.out_w >= 1,
           "resize: bad extents ({}, {}, {}, {}) -> ({}, {}, {}, {})", p.n, p.c, p.h, p.w, p.n,
           p.out_c, p.out_h, p.out_w);
  constexpr int64_t kMaxExtent = int64_t{1} << 24;  // float(dst) and the bilinear source are exact
  DN_CHECK(p.h <= kMaxExtent && p.w <= kMaxExtent && p.out_h <= kMaxExtent && p.out_w <= kMaxExtent,
           "resize: spatial extent above 2^24 ({}x{} -> {}x{})", p.h, p.w, p.out_h, p.out_w);
}

}  // namespace dropnet
