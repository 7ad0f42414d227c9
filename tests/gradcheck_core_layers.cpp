// Finite-difference gradient checks for the core layers on CPU.
#include <fmt/format.h>

#include "core/rng.h"
#include "tests/testing/gradcheck.h"

using namespace dropnet;
using namespace dropnet::testing;

namespace {

struct ConvCase {
  const char* name;
  int64_t n, c, h, w, out;
  int k, stride, pad, group;
};

class ConvGrad : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvGrad, MatchesFiniteDifferences) {
  const ConvCase& c = GetParam();
  std::string yaml = fmt::format(
      "{{name: conv, type: conv, bottom: x, top: y, num_output: {}, kernel: {}, stride: {}, pad: {}, group: {}}}",
      c.out, c.k, c.stride, c.pad, c.group);
  auto t = make_layer_under_test(yaml, {Shape({c.n, c.c, c.h, c.w})});
  EXPECT_TRUE(check_gradients(t, {}));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ConvGrad,
    ::testing::Values(ConvCase{"k3_s1_p0", 2, 3, 5, 5, 4, 3, 1, 0, 1}, ConvCase{"k3_s2_p1_odd", 2, 2, 7, 6, 3, 3, 2, 1, 1},
                      ConvCase{"group2", 2, 4, 5, 5, 6, 3, 1, 1, 2}, ConvCase{"k1", 3, 3, 4, 3, 2, 1, 1, 0, 1},
                      ConvCase{"k5_p2_batch1", 1, 2, 6, 6, 3, 5, 1, 2, 1},
                      ConvCase{"stride3_nonsquare", 2, 2, 8, 7, 2, 2, 3, 0, 1}),
    [](const ::testing::TestParamInfo<ConvCase>& i) { return std::string(i.param.name); });

TEST(FcGrad, MatchesFiniteDifferences) {
  auto t = make_layer_under_test("{name: fc, type: fc, bottom: x, top: y, num_output: 7}", {Shape({3, 2, 3, 2})});
  EXPECT_TRUE(check_gradients(t, {}));
}

TEST(FcGrad, NoBias) {
  auto t = make_layer_under_test("{name: fc, type: fc, bottom: x, top: y, num_output: 4, bias: false}", {Shape({5, 6})});
  EXPECT_EQ(t.layer->params().size(), 1u);
  EXPECT_TRUE(check_gradients(t, {}));
}

TEST(ReluGrad, MatchesFiniteDifferences) {
  auto t = make_layer_under_test("{name: r, type: relu, bottom: x, top: y}", {Shape({2, 3, 4, 5})});
  GradCheckOptions o;
  o.kink = 0.02f;
  EXPECT_TRUE(check_gradients(t, o));
}

TEST(ReluGrad, Leaky) {
  auto t = make_layer_under_test("{name: r, type: relu, bottom: x, top: y, negative_slope: 0.1}", {Shape({2, 3, 4})});
  GradCheckOptions o;
  o.kink = 0.02f;
  EXPECT_TRUE(check_gradients(t, o));
}

// Inputs spaced so that no two values in a window are within 2 * step (no max ties).
void spaced_inputs(LayerUnderTest& t, uint64_t seed) {
  Tensor& x = t.bottoms[0].value;
  std::vector<float> v(static_cast<size_t>(x.count()));
  HostRng rng(seed, 3);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.05f;
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
  x.from_host(v);
}

TEST(PoolGrad, MaxCeilMode) {
  auto t = make_layer_under_test("{name: p, type: pool, bottom: x, top: y, method: max, kernel: 3, stride: 2}",
                                 {Shape({2, 2, 7, 6})});
  spaced_inputs(t, 5);
  EXPECT_TRUE(check_gradients(t, {}));
}

TEST(PoolGrad, MaxPadded) {
  auto t = make_layer_under_test("{name: p, type: pool, bottom: x, top: y, method: max, kernel: 3, stride: 2, pad: 1}",
                                 {Shape({1, 2, 6, 5})});
  spaced_inputs(t, 6);
  EXPECT_TRUE(check_gradients(t, {}));
}

TEST(PoolGrad, AveCeilModePadded) {
  auto t = make_layer_under_test("{name: p, type: pool, bottom: x, top: y, method: ave, kernel: 3, stride: 2, pad: 1}",
                                 {Shape({2, 2, 6, 7})});
  EXPECT_TRUE(check_gradients(t, {}));
}

TEST(SoftmaxLossGrad, MatchesFiniteDifferences) {
  auto t = make_layer_under_test("{name: loss, type: softmax_loss, bottom: [x, label], top: loss}",
                                 {Shape({4, 5}), Shape({4})});
  t.bottoms[1].value.from_host(std::vector<float>{0, 3, 4, 1});
  EXPECT_TRUE(check_gradients(t, {}));
}

TEST(SoftmaxLossGrad, SpatialWithIgnoreAndWeight) {
  auto t = make_layer_under_test(
      "{name: loss, type: softmax_loss, bottom: [x, label], top: loss, ignore_label: 2, loss_weight: 0.5}",
      {Shape({2, 3, 2, 2}), Shape({2, 1, 2, 2})});
  t.bottoms[1].value.from_host(std::vector<float>{0, 1, 2, 1, 2, 0, 0, 1});
  // The objective is the raw loss; backward is scaled by loss_weight, so compare at weight 1.
  auto t1 = make_layer_under_test("{name: loss, type: softmax_loss, bottom: [x, label], top: loss, ignore_label: 2}",
                                  {Shape({2, 3, 2, 2}), Shape({2, 1, 2, 2})});
  t1.bottoms[1].value.from_host(std::vector<float>{0, 1, 2, 1, 2, 0, 0, 1});
  EXPECT_TRUE(check_gradients(t1, {}));
  // And the weighted layer's gradient is exactly half the unweighted one.
  t.forward({});
  t.backward({});
  t1.forward({});
  t1.backward({});
  std::vector<float> a = t.bottoms[0].grad.to_host(), b = t1.bottoms[0].grad.to_host();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_FLOAT_EQ(a[i], 0.5f * b[i]);
}

}  // namespace
