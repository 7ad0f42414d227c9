// Dropout on CUDA against the CPU path: the mask and the scaled values agree bit for bit.
#include <gtest/gtest.h>

#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "kernels/dropout.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

using testing::all_close;
using testing::random_vector;

using testing::on_device;

TEST(CudaDropout, MatchesCpuExactly) {
  DN_REQUIRE_CUDA();
  // Emulated device (one host thread): the same odd and power-of-two counts, smaller.
  using testing::on_gpu_or_emulated;
  const int64_t counts[] = {1, on_gpu_or_emulated<int64_t>(1000003, 100003),
                           on_gpu_or_emulated<int64_t>(int64_t{1} << 22, 1 << 18)};
  for (int64_t count : counts) {
    for (float ratio : {0.f, 0.1f, 0.5f, 0.9f}) {
      SCOPED_TRACE("count " + std::to_string(count) + " ratio " + std::to_string(ratio));
      DropoutParams p;
      p.count = count;
      p.ratio = ratio;
      p.seed = 987654321ull << 20;
      p.stream = 3;
      p.step = 4242;
      const std::vector<float> x = random_vector(count, 1), dy = random_vector(count, 2), acc = random_vector(count, 3);
      std::vector<float> y(count);
      dropout_forward_cpu(p, x.data(), y.data());
      Tensor x_d = on_device(x), y_d(Shape{count}, Device::cuda());
      dropout_forward_cuda(p, x_d.data(), y_d.data(), cuda_stream());
      EXPECT_TRUE(all_close(y, y_d.to_host(), 0.f, 0.f)) << "forward";
      for (float beta : {0.f, 1.f}) {
        std::vector<float> dx = beta == 0.f ? std::vector<float>(count, 0.f) : acc;
        Tensor dy_d = on_device(dy), dx_d = on_device(dx);
        dropout_backward_cpu(p, dy.data(), beta, dx.data());
        dropout_backward_cuda(p, dy_d.data(), beta, dx_d.data(), cuda_stream());
        EXPECT_TRUE(all_close(dx, dx_d.to_host(), 0.f, 0.f)) << "backward, beta " << beta;
      }
    }
  }
}

}  // namespace
}  // namespace dropnet
