// Solver arithmetic: lr policies against known values, one SGD step against hand-computed numbers.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/sources.h"
#include "kernels/sgd.h"
#include "optim/solver.h"
#include "tests/testing/solvers.h"
#include "tests/testing/harness.h"

using namespace dropnet;

namespace {

SolverConfig policy(const std::string& name) {
  SolverConfig c;
  c.base_lr = 0.01;
  c.lr_policy = lr_policy_named(name);
  c.max_iter = 10000;
  return c;
}

TEST(LrPolicy, CaffeValues) {
  SolverConfig inv = policy("inv");
  inv.gamma = 1e-4;
  inv.power = 0.75;
  EXPECT_NEAR(learning_rate(inv, 100), 0.00992565, 1e-8);  // Caffe's lenet_solver at iteration 100
  EXPECT_DOUBLE_EQ(learning_rate(inv, 0), 0.01);
  SolverConfig step = policy("step");
  step.gamma = 0.1;
  step.stepsize = 100000;
  EXPECT_DOUBLE_EQ(learning_rate(step, 99999), 0.01);
  EXPECT_NEAR(learning_rate(step, 100000), 0.001, 1e-15);
  EXPECT_NEAR(learning_rate(step, 250000), 0.0001, 1e-15);
  SolverConfig ms = policy("multistep");
  ms.gamma = 0.1;
  ms.stepvalue = {60000, 65000};
  EXPECT_DOUBLE_EQ(learning_rate(ms, 59999), 0.01);
  EXPECT_NEAR(learning_rate(ms, 60000), 0.001, 1e-15);
  EXPECT_NEAR(learning_rate(ms, 65000), 0.0001, 1e-15);
  SolverConfig ex = policy("exp");
  ex.gamma = 0.99;
  EXPECT_NEAR(learning_rate(ex, 10), 0.01 * std::pow(0.99, 10), 1e-15);
  SolverConfig poly = policy("poly");
  poly.power = 2;
  EXPECT_NEAR(learning_rate(poly, 5000), 0.0025, 1e-15);
  SolverConfig sig = policy("sigmoid");
  sig.gamma = -0.001;
  sig.stepsize = 5000;
  EXPECT_NEAR(learning_rate(sig, 5000), 0.005, 1e-15);
  SolverConfig fixed = policy("fixed");
  EXPECT_DOUBLE_EQ(learning_rate(fixed, 123456), 0.01);
  SolverConfig warm = policy("fixed");
  warm.warmup_iter = 100;
  warm.warmup_start_factor = 0.1;
  EXPECT_NEAR(learning_rate(warm, 0), 0.001, 1e-15);
  EXPECT_NEAR(learning_rate(warm, 50), 0.0055, 1e-15);
  EXPECT_DOUBLE_EQ(learning_rate(warm, 100), 0.01);
}

TEST(Sgd, OneStepHandComputed) {
  // w = 1, g = 0.5, v = 0.2, lr = 0.1, mu = 0.9, wd = 0.01:
  // g' = 0.5 + 0.01 * 1 = 0.51; v' = 0.9 * 0.2 + 0.1 * 0.51 = 0.231; w' = 1 - 0.231 = 0.769
  float w = 1.f, g = 0.5f, v = 0.2f;
  sgd_update_cpu(1, 0.1f, 0.9f, 0.01f, &w, &g, &v);
  EXPECT_FLOAT_EQ(g, 0.51f);
  EXPECT_FLOAT_EQ(v, 0.231f);
  EXPECT_FLOAT_EQ(w, 0.769f);
}

// Bitwise equality (an ulp matters here); the message names the first differing element.
::testing::AssertionResult same_bits(const std::vector<float>& ref, const std::vector<float>& got) {
  for (size_t i = 0; i < ref.size(); ++i)
    if (std::bit_cast<uint32_t>(ref[i]) != std::bit_cast<uint32_t>(got[i]))
      return ::testing::AssertionFailure() << "element " << i << ": " << got[i] << " instead of " << ref[i];
  return ::testing::AssertionSuccess();
}

// The fused arena update is the per-parameter path it replaced (the scale passes, then one
// sgd_update_cpu per parameter with its rates rounded from double), bit for bit, and leaves the
// elements outside the segments alone (the reference never touches them). The large segment
// takes the OpenMP path.
TEST(Sgd, ArenaUpdateEqualsPerParameterLoop) {
  const std::vector<SgdSegment> segs = {{0, 1000, 1.f, 1.f},
                                        {1000, 7, 2.f, 0.f},
                                        {1007, 0, 1.f, 1.f},        // empty
                                        {1100, 300000, 0.1f, 3.f},  // after a gap of 93
                                        {301100, 33, 1.f, 1.f}};
  const int64_t n = 301200;  // a gap at the end too
  const double lr = 0.00992565, wd = 0.0005;
  const float mu = 0.9f;
  struct Scales {
    float grad, clip;
  };
  using dropnet::testing::random_vector;
  std::vector<float> w = random_vector(n, 71), v = random_vector(n, 72, -0.01f, 0.01f);
  std::vector<float> w_ref = w, v_ref = v;
  uint64_t seed = 73;
  for (const Scales sc : {Scales{1.f, 1.f}, Scales{0.25f, 1.f}, Scales{1.f / 3.f, 0.7f}, Scales{1.f, 0.37f}}) {
    SCOPED_TRACE("grad_scale " + std::to_string(sc.grad) + " clip_scale " + std::to_string(sc.clip));
    std::vector<float> g = random_vector(n, seed++, -0.1f, 0.1f), g_ref = g;
    for (const SgdSegment& s : segs) {
      float *wp = w_ref.data() + s.offset, *gp = g_ref.data() + s.offset, *vp = v_ref.data() + s.offset;
      if (sc.grad != 1.f) scale_cpu(s.count, sc.grad, gp);
      if (sc.clip != 1.f) scale_cpu(s.count, sc.clip, gp);
      sgd_update_cpu(s.count, static_cast<float>(lr * s.lr_mult), mu, static_cast<float>(wd * s.decay_mult), wp, gp,
                     vp);
    }
    sgd_update_arena_cpu(segs.data(), static_cast<int>(segs.size()), lr, mu, wd, sc.grad, sc.clip, w.data(), g.data(),
                         v.data());
    EXPECT_TRUE(same_bits(w_ref, w)) << "w";
    EXPECT_TRUE(same_bits(g_ref, g)) << "g (scaled and regularized)";
    EXPECT_TRUE(same_bits(v_ref, v)) << "v (momentum)";
  }
  // Out of arena order (the CUDA kernel's binary search relies on it) is an error, found before
  // any element is read.
  const std::vector<SgdSegment> swapped = {segs[1], segs[0]};
  EXPECT_THROW(sgd_update_arena_cpu(swapped.data(), 2, lr, mu, wd, 1.f, 1.f, nullptr, nullptr, nullptr), Error);
}

// A full solver step on a tiny net equals the update computed by hand from the gradients.
TEST(Sgd, SolverAppliesLrMultAndDecayMult) {
  const char* text = R"(name: t
data:
  train: {source: synthetic, shape: [1, 1, 3], num_classes: 2, num_samples: 4, batch_size: 4}
solver: {base_lr: 0.5, max_iter: 1, momentum: 0.9, weight_decay: 0.1, display: 0}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: fc, type: fc, bottom: data, top: fc, num_output: 2, lr_mult: [1, 2], decay_mult: [1, 0],
     weight_filler: {type: gaussian, std: 0.5}, bias_filler: {type: constant, value: 0.3}}
  - {name: loss, type: softmax_loss, bottom: [fc, label], top: loss}
)";
  LoadedConfig cfg = load_config_text(text, "t.yaml");
  SolverOptions so;
  so.net.source_factory = make_batch_source;
  Solver s(cfg, so);
  Net& net = s.train_net();
  std::vector<float> w0 = net.param_values().to_host();
  // Gradients of the same batch, computed separately.
  Solver probe(cfg, so);
  probe.train_net().zero_param_grads();
  RunContext ctx{Phase::Train, 0, 1, 0};
  probe.train_net().forward(ctx);
  probe.train_net().backward(ctx);
  std::vector<float> g = probe.train_net().param_grads().to_host();
  s.step(1);
  std::vector<float> w1 = net.param_values().to_host();
  for (const ParamRef& r : net.params()) {
    for (int64_t i = 0; i < r.count; ++i) {
      const size_t k = static_cast<size_t>(r.offset + i);
      const float gg = g[k] + 0.1f * r.decay_mult * w0[k];
      const float v = 0.5f * r.lr_mult * gg;  // momentum buffer starts at 0
      EXPECT_NEAR(w1[k], w0[k] - v, 1e-6) << r.name << "[" << i << "]";
    }
  }
  EXPECT_EQ(net.params()[1].lr_mult, 2.f);
  EXPECT_EQ(net.params()[1].decay_mult, 0.f);
}

// dropnet-summary / --dry-run build shapes-only solvers: memory is reserved, never touched, so a
// net far larger than the machine (VGG16 at batch 256 is ~20 GB) can still be described. Here a
// LeNet at batch 20,000 (~3 GB of blobs and gradients) must not make the process grow by 1 GB.
TEST(Solver, ShapesOnlyTouchesNoBlobMemory) {
  const char* text = R"(name: t
data:
  train: {source: synthetic, shape: [1, 28, 28], num_classes: 10, num_samples: 20000, batch_size: 20000}
solver: {base_lr: 0.01, max_iter: 1}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 20, kernel: 5}
  - {name: pool1, type: pool, bottom: conv1, top: pool1, method: max, kernel: 2, stride: 2}
  - {name: conv2, type: conv, bottom: pool1, top: conv2, num_output: 50, kernel: 5}
  - {name: ip1, type: fc, bottom: conv2, top: ip1, num_output: 500}
  - {name: loss, type: softmax_loss, bottom: [ip1, label], top: loss}
)";
  LoadedConfig cfg = load_config_text(text, "t.yaml");
  SolverOptions so;
  so.net.source_factory = make_batch_source;
  so.net.shapes_only = true;
  auto max_rss_mb = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
  };
  const double before = max_rss_mb();
  Solver s(cfg, so);
  double blob_mb = 0;
  for (int i = 0; i < s.train_net().num_layers(); ++i)
    for (const Blob* b : s.train_net().tops(i)) blob_mb += 2.0 * static_cast<double>(b->value.count()) * 4 / 1e6;
  EXPECT_GT(blob_mb, 2500.0);  // the test means something: the blobs are big
  EXPECT_LT(max_rss_mb() - before, 1000.0) << "a shapes-only solver touched its memory (blobs: " << blob_mb << " MB)";
}


// A signal during a test (should_stop true) abandons it: no record, and no iteration after it;
// each TEST batch reports its progress.
TEST(Solver, StopDuringTestAbandonsItAndTrainsNoFurther) {
  const char* text = R"(name: t
data:
  train: {source: synthetic, shape: [1, 4, 4], num_classes: 3, num_samples: 12, batch_size: 4}
  test: {source: synthetic, shape: [1, 4, 4], num_classes: 3, num_samples: 12, batch_size: 4}
solver: {base_lr: 0.01, max_iter: 100, test_interval: 5, test_iter: 40}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: fc, type: fc, bottom: data, top: fc, num_output: 3}
  - {name: loss, type: softmax_loss, bottom: [fc, label], top: loss}
)";
  auto s = dropnet::testing::quiet_solver(text, "t.yaml", 1);
  std::vector<std::string> records;
  std::vector<std::pair<int64_t, int64_t>> batches;
  int64_t stop_at_batch = -1;  // the TEST batch after which a "signal" arrives
  s->on_record = [&](const TrainRecord& r) { records.push_back(r.kind + "@" + std::to_string(r.iter)); };
  s->on_test_batch = [&](int64_t done, int64_t total) { batches.emplace_back(done, total); };
  s->should_stop = [&] { return stop_at_batch >= 0 && !batches.empty() && batches.back().first >= stop_at_batch; };
  s->step(7);  // tests at iterations 0 and 5, each of 40 batches
  EXPECT_EQ(s->iter(), 7);
  ASSERT_EQ(batches.size(), 80u);
  EXPECT_EQ(batches.back(), std::make_pair(int64_t{40}, int64_t{40}));
  EXPECT_EQ(std::count(records.begin(), records.end(), "test@5"), 1);
  batches.clear();
  records.clear();
  stop_at_batch = 3;
  s->step(10);  // the test at iteration 10 is stopped after its third batch
  EXPECT_EQ(s->iter(), 10) << "an iteration ran after the stopped test";
  EXPECT_EQ(batches.size(), 3u);
  EXPECT_TRUE(std::find(records.begin(), records.end(), "test@10") == records.end());
}

}  // namespace
