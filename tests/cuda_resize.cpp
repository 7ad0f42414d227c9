// Resize on CUDA against the CPU path for every method x channel mode, up, down, mixed and
// identity sizes: nearest (a copy, and a gather in the same order) bit for bit, bilinear and area
// within a float tolerance; backward (the deterministic gather) with beta 0 and 1.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "kernels/resize.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

using testing::all_close;
using testing::random_vector;

using testing::on_device;

struct Sizes {
  int64_t n, c, h, w, oc, oh, ow;
};

TEST(CudaResize, MatchesCpu) {
  DN_REQUIRE_CUDA();
  const Sizes sizes[] = {
      {2, 3, 5, 7, 5, 9, 4},     {2, 5, 7, 9, 2, 3, 4},       {1, 3, 3, 5, 7, 11, 13}, {2, 4, 8, 8, 4, 16, 16},
      {1, 6, 13, 11, 4, 13, 11}, {1, 2, 116, 10, 2, 108, 20}, {8, 16, 56, 56, 32, 28, 28},
      {4, 3, 31, 47, 3, 64, 64}, {3, 20, 27, 27, 20, 27, 27},
  };
  const ResizeMethod methods[] = {ResizeMethod::Nearest, ResizeMethod::Bilinear, ResizeMethod::Area};
  const ChannelMode modes[] = {ChannelMode::Tile, ChannelMode::Pad, ChannelMode::Average};
  for (const Sizes& s : sizes)
    for (ResizeMethod m : methods)
      for (ChannelMode cm : modes) {
        ResizeParams p;
        p.method = m;
        p.channel_mode = cm;
        p.n = s.n;
        p.c = s.c;
        p.h = s.h;
        p.w = s.w;
        p.out_c = s.oc;
        p.out_h = s.oh;
        p.out_w = s.ow;
        SCOPED_TRACE("method " + std::to_string(static_cast<int>(m)) + " channel mode " +
                     std::to_string(static_cast<int>(cm)) + " (" + std::to_string(s.n) + ", " + std::to_string(s.c) +
                     ", " + std::to_string(s.h) + ", " + std::to_string(s.w) + ") -> (" + std::to_string(s.oc) +
                     ", " + std::to_string(s.oh) + ", " + std::to_string(s.ow) + ")");
        const int64_t ni = s.n * s.c * s.h * s.w, no = s.n * s.oc * s.oh * s.ow;
        const float tol = m == ResizeMethod::Nearest ? 0.f : 1e-6f;
        const std::vector<float> x = random_vector(ni, 1), dy = random_vector(no, 2), acc = random_vector(ni, 3);
        std::vector<float> y(no);
        resize_forward_cpu(p, x.data(), y.data());
        Tensor x_d = on_device(x), y_d(Shape{no}, Device::cuda());
        resize_forward_cuda(p, x_d.data(), y_d.data(), cuda_stream());
        EXPECT_TRUE(all_close(y, y_d.to_host(), tol, tol)) << "forward";
        for (float beta : {0.f, 1.f}) {
          std::vector<float> dx = beta == 0.f ? std::vector<float>(ni, 0.f) : acc;
          Tensor dy_d = on_device(dy), dx_d = on_device(dx);
          resize_backward_cpu(p, dy.data(), beta, dx.data());
          resize_backward_cuda(p, dy_d.data(), beta, dx_d.data(), cuda_stream());
          EXPECT_TRUE(all_close(dx, dx_d.to_host(), tol, tol)) << "backward, beta " << beta;
        }
      }
}

}  // namespace
}  // namespace dropnet
