// Softmax loss, accuracy and the solver's arena arithmetic on CUDA against the CPU path.
// - softmax + loss: the per-position math is softmax_loss_math.h on both sides, but CUDA's expf /
//   logf differ from glibc's by an ulp or two, and the loss reduction order differs: tolerances.
// - accuracy: integer counts, the same division: exact (ties included, Caffe's >= rule).
// - SGD update, scale, the fused arena update: element-wise, exact up to the compilers' FMA
//   contraction (an ulp); elements outside the arena update's segments exactly untouched.
// - sumsq (double accumulation, different order) close; count_nonfinite exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "kernels/sgd.h"
#include "kernels/softmax_loss.h"
#include "tests/testing/harness.h"

#if DROPNET_HAVE_CUDA

namespace dropnet {
namespace {

using testing::all_close;
using testing::nan_tensor;
using testing::on_device;
using testing::random_vector;

float device_scalar(const Tensor& t) { return t.to_host()[0]; }

struct SoftmaxCase {
  int64_t outer, classes, inner;
  bool has_ignore;
  int ignore_label;
  float spread;  // logits in [-spread, spread]
};

std::string describe(const SoftmaxCase& c) {
  return "outer " + std::to_string(c.outer) + " classes " + std::to_string(c.classes) + " inner " +
         std::to_string(c.inner) + (c.has_ignore ? " ignore " + std::to_string(c.ignore_label) : "") + " spread " +
         std::to_string(c.spread);
}

std::vector<float> labels_for(const SoftmaxCase& c, uint64_t seed) {
  std::vector<float> u = random_vector(c.outer * c.inner, seed, 0.f, 1.f);
  std::vector<float> l(u.size());
  for (size_t i = 0; i < u.size(); ++i)
    l[i] = std::floor(std::min(u[i] * static_cast<float>(c.classes), static_cast<float>(c.classes - 1)));
  if (c.has_ignore)
    for (size_t i = 0; i < l.size(); i += 3) l[i] = static_cast<float>(c.ignore_label);
  return l;
}

const SoftmaxCase kSoftmaxCases[] = {
    {64, 10, 1, false, 0, 5.f},          // LeNet's loss
    {256, 1000, 1, false, 0, 10.f},      // ImageNet classes, many positions
    {3, 7, 13, false, 0, 3.f},           // spatial positions (inner > 1)
    {5, 4, 9, true, 2, 3.f},             // an ignored class
    {1, 2, 1, false, 0, 1.f},            // smallest
    {17, 10, 1, false, 0, 80.f},         // saturated: p_label may underflow to the FLT_MIN clamp
    {4, 10, 1, true, -1, 3.f},           // ignore label outside the classes (every third position)
};

TEST(CudaSoftmaxLoss, ForwardBackwardMatchCpu) {
  DN_REQUIRE_CUDA();
  for (const SoftmaxCase& c : kSoftmaxCases) {
    SCOPED_TRACE(describe(c));
    const SoftmaxParams p{c.outer, c.classes, c.inner, c.ignore_label, c.has_ignore};
    const int64_t count = c.outer * c.classes * c.inner, positions = c.outer * c.inner;
    const std::vector<float> x = random_vector(count, 31, -c.spread, c.spread), labels = labels_for(c, 32);
    std::vector<float> prob(static_cast<size_t>(count));
    float loss = 0.f;
    softmax_loss_forward_cpu(p, x.data(), labels.data(), prob.data(), &loss);

    Tensor x_d = on_device(x), labels_d = on_device(labels), prob_d = nan_tensor(count);
    Tensor scratch_d = nan_tensor(2 * positions), loss_d = nan_tensor(1);
    softmax_loss_forward_cuda(p, x_d.data(), labels_d.data(), prob_d.data(), scratch_d.data(), loss_d.data(),
                              cuda_stream());
    EXPECT_TRUE(all_close(prob, prob_d.to_host(), 1e-6f, 1e-5f)) << "softmax probabilities";
    EXPECT_TRUE(all_close({loss}, {device_scalar(loss_d)}, 1e-6f, 1e-5f)) << "loss";
    EXPECT_TRUE(std::isfinite(loss)) << "the FLT_MIN clamp keeps the loss finite";

    for (float loss_weight : {1.f, 0.5f}) {
      for (float beta : {0.f, 1.f}) {
        const std::vector<float> old = random_vector(count, 33);
        std::vector<float> dx = beta == 0.f ? std::vector<float>(static_cast<size_t>(count), 0.f) : old;
        softmax_loss_backward_cpu(p, prob.data(), labels.data(), loss_weight, beta, dx.data());
        // The CUDA backward reads the CUDA forward's probabilities, as in the layer.
        Tensor dx_d = beta == 0.f ? nan_tensor(count) : on_device(old);
        softmax_loss_backward_cuda(p, prob_d.data(), labels_d.data(), loss_weight, beta, scratch_d.data(),
                                   dx_d.data(), cuda_stream());
        EXPECT_TRUE(all_close(dx, dx_d.to_host(), 1e-6f, 1e-5f))
            << "gradient, loss_weight " << loss_weight << " beta " << beta;
      }
    }
  }
}

TEST(CudaAccuracy, TopKMatchesCpuExactlyWithTies) {
  DN_REQUIRE_CUDA();
  for (const SoftmaxCase& c : kSoftmaxCases) {
    SCOPED_TRACE(describe(c));
    const SoftmaxParams p{c.outer, c.classes, c.inner, c.ignore_label, c.has_ignore};
    const int64_t count = c.outer * c.classes * c.inner, positions = c.outer * c.inner;
    // Coarse logits (5 levels) so that ties with the true class are common.
    std::vector<float> x = random_vector(count, 41, 0.f, 5.f);
    for (float& v : x) v = std::floor(v);
    const std::vector<float> labels = labels_for(c, 42);
    Tensor x_d = on_device(x), labels_d = on_device(labels), scratch_d = nan_tensor(2 * positions);
    for (int k : {1, 2, 5}) {
      if (k > c.classes) continue;
      float acc = -1.f;
      accuracy_forward_cpu(p, k, x.data(), labels.data(), &acc);
      Tensor acc_d = nan_tensor(1);
      accuracy_forward_cuda(p, k, x_d.data(), labels_d.data(), scratch_d.data(), acc_d.data(), cuda_stream());
      EXPECT_EQ(acc, device_scalar(acc_d)) << "top-" << k;
    }
  }
}

TEST(CudaSgd, UpdateAndScaleMatchCpu) {
  DN_REQUIRE_CUDA();
  struct Hyper {
    float lr, momentum, wd;
  };
  const Hyper hypers[] = {{0.01f, 0.9f, 0.0005f}, {0.1f, 0.f, 0.f}, {1e-4f, 0.99f, 0.004f * 250.f}};
  for (int64_t n : {int64_t(1), int64_t(4097),
                    testing::on_gpu_or_emulated<int64_t>(int64_t(3) << 20, int64_t(3) << 16)}) {
    for (const Hyper& h : hypers) {
      SCOPED_TRACE("n " + std::to_string(n) + " lr " + std::to_string(h.lr) + " momentum " +
                   std::to_string(h.momentum) + " wd " + std::to_string(h.wd));
      std::vector<float> w = random_vector(n, 51), g = random_vector(n, 52, -0.1f, 0.1f),
                         v = random_vector(n, 53, -0.01f, 0.01f);
      Tensor w_d = on_device(w), g_d = on_device(g), v_d = on_device(v);
      // Three steps, regularized gradient written back into g each time as Caffe does.
      for (int step = 0; step < 3; ++step) {
        sgd_update_cpu(n, h.lr, h.momentum, h.wd, w.data(), g.data(), v.data());
        sgd_update_cuda(n, h.lr, h.momentum, h.wd, w_d.data(), g_d.data(), v_d.data(), cuda_stream());
      }
      // An FMA contracted on one backend and not the other moves a result by an ulp or so.
      EXPECT_TRUE(all_close(w, w_d.to_host(), 1e-7f, 1e-6f)) << "w";
      EXPECT_TRUE(all_close(g, g_d.to_host(), 1e-7f, 1e-6f)) << "g (regularized)";
      EXPECT_TRUE(all_close(v, v_d.to_host(), 1e-8f, 1e-6f)) << "v (momentum)";
    }
    std::vector<float> x = random_vector(n, 54);
    Tensor x_d = on_device(x);
    scale_cpu(n, 1.f / 3.f, x.data());
    scale_cuda(n, 1.f / 3.f, x_d.data(), cuda_stream());
    EXPECT_TRUE(all_close(x, x_d.to_host(), 0.f, 0.f)) << "scale, n " << n;
  }
}

TEST(CudaSgd, ArenaUpdateMatchesCpu) {
  DN_REQUIRE_CUDA();
  // More segments than one shared-memory tile of the kernel's table, an empty one, gaps (at the
  // start, between segments, at the end) and a last segment that spans many blocks.
  std::vector<SgdSegment> segs;
  int64_t offset = 5;
  for (int k = 0; k < 1300; ++k) {
    const int64_t count = k == 7 ? 0 : 1 + (k * 37) % 200;
    segs.push_back({offset, count, k % 3 == 0 ? 2.f : 1.f, k % 4 == 0 ? 0.f : 1.f});
    offset += count + (k % 5 == 0 ? 3 : 0);
  }
  segs.push_back({offset, testing::on_gpu_or_emulated<int64_t>(int64_t(3) << 20, int64_t(3) << 16), 0.1f, 3.f});
  const int64_t n = offset + segs.back().count + 11;
  const double lr = 0.00992565, wd = 0.0005;
  const float mu = 0.9f;
  std::vector<float> w = random_vector(n, 81), v = random_vector(n, 82, -0.01f, 0.01f);
  Tensor w_d = on_device(w), v_d = on_device(v);
  SgdSegmentTable table;
  auto step = [&](const std::vector<SgdSegment>& sg, float grad_scale, float clip_scale, uint64_t seed) {
    SCOPED_TRACE("segments " + std::to_string(sg.size()) + " grad_scale " + std::to_string(grad_scale) +
                 " clip_scale " + std::to_string(clip_scale));
    std::vector<float> g = random_vector(n, seed, -0.1f, 0.1f);
    const std::vector<float> w0 = w_d.to_host(), g0 = g, v0 = v_d.to_host();
    Tensor g_d = on_device(g);
    const int nsegs = static_cast<int>(sg.size());
    sgd_update_arena_cpu(sg.data(), nsegs, lr, mu, wd, grad_scale, clip_scale, w.data(), g.data(), v.data());
    sgd_update_arena_cuda(table.upload(sg, Device::cuda()), nsegs, n, lr, mu, wd, grad_scale, clip_scale, w_d.data(),
                          g_d.data(), v_d.data(), cuda_stream());
    const std::vector<float> w_h = w_d.to_host(), g_h = g_d.to_host(), v_h = v_d.to_host();
    EXPECT_TRUE(all_close(w, w_h, 1e-7f, 1e-6f)) << "w";
    EXPECT_TRUE(all_close(g, g_h, 1e-7f, 1e-6f)) << "g (scaled and regularized)";
    EXPECT_TRUE(all_close(v, v_h, 1e-8f, 1e-6f)) << "v (momentum)";
    std::vector<bool> covered(static_cast<size_t>(n), false);
    for (const SgdSegment& s : sg) std::fill_n(covered.begin() + s.offset, s.count, true);
    int64_t touched = 0;
    for (size_t i = 0; i < covered.size(); ++i)
      if (!covered[i] && (g_h[i] != g0[i] || w_h[i] != w0[i] || v_h[i] != v0[i])) ++touched;
    EXPECT_EQ(touched, 0) << "elements outside the segments changed";
  };
  const std::pair<float, float> scales[] = {{1.f, 1.f}, {0.25f, 1.f}, {1.f / 3.f, 0.7f}};  // grad, clip
  uint64_t seed = 83;
  for (const auto& [grad_scale, clip_scale] : scales) step(segs, grad_scale, clip_scale, seed++);
  const SgdSegment* uploaded = table.upload(segs, Device::cuda());
  EXPECT_EQ(table.upload(segs, Device::cuda()), uploaded) << "an unchanged table stays where it is";
  // A changed table is uploaded again: other rates, and the big segment left alone from now on.
  std::vector<SgdSegment> changed(segs.begin(), segs.end() - 1);
  for (SgdSegment& s : changed) s.lr_mult *= 0.5f;
  step(changed, 0.5f, 1.f, seed++);
}

TEST(CudaSgd, SumsqAndCountNonfiniteMatchCpu) {
  DN_REQUIRE_CUDA();
  // (1 << 20) + 5 on the emulated device still takes the grid-stride loop 16 times.
  for (int64_t n : {int64_t(1), int64_t(255), int64_t(65537),
                    testing::on_gpu_or_emulated<int64_t>((int64_t(1) << 24) + 5, (1 << 20) + 5)}) {
    SCOPED_TRACE("n " + std::to_string(n));
    std::vector<float> x = random_vector(n, 61, -3.f, 3.f);
    Tensor x_d = on_device(x);
    const double ref = sumsq_cpu(n, x.data()), got = sumsq_cuda(n, x_d.data(), cuda_stream());
    EXPECT_NEAR(ref, got, 1e-10 * std::max(1.0, ref)) << "sumsq";
    EXPECT_EQ(count_nonfinite_cpu(n, x.data()), 0);
    EXPECT_EQ(count_nonfinite_cuda(n, x_d.data(), cuda_stream()), 0);
    if (n < 3) continue;
    // Plant NaN, +Inf and -Inf (spread over the array so several blocks see them).
    const float inf = std::numeric_limits<float>::infinity();
    x[0] = std::nanf("");
    x[static_cast<size_t>(n / 2)] = inf;
    x[static_cast<size_t>(n - 1)] = -inf;
    if (n > 1000) x[777] = std::nanf("");
    x_d.from_host(x);
    const int64_t expected = n > 1000 ? 4 : 3;
    EXPECT_EQ(count_nonfinite_cpu(n, x.data()), expected);
    EXPECT_EQ(count_nonfinite_cuda(n, x_d.data(), cuda_stream()), expected);
    EXPECT_FALSE(std::isfinite(sumsq_cuda(n, x_d.data(), cuda_stream()))) << "sumsq must not hide a NaN/Inf";
  }
}

}  // namespace
}  // namespace dropnet

#else  // a CPU-only build (DROPNET_CUDA=OFF) has none of the CUDA kernels tested above

TEST(CudaSoftmaxSgd, NotBuilt) { GTEST_SKIP() << "built without CUDA (DROPNET_CUDA=OFF)"; }

#endif
