// Gradient checks for dropin, dropout, resize and lrn (RNG state fixed by the RunContext, so
// masks do not change between the evaluations of one check).
#include <fmt/format.h>

#include "core/error.h"
#include "tests/testing/gradcheck.h"

using namespace dropnet;
using namespace dropnet::testing;

namespace {

RunContext train_ctx(int64_t iter) { return RunContext{Phase::Train, iter, 42, static_cast<uint32_t>(iter)}; }

TEST(DropinGrad, GradualMidSchedule) {
  auto t = make_layer_under_test("{name: d, type: dropin, bottom: [s, n], top: y, length: 100}",
                                 {Shape({2, 3, 4, 5}), Shape({2, 3, 4, 5})});
  GradCheckOptions o;
  o.ctx = train_ctx(37);
  EXPECT_TRUE(check_gradients(t, o));
}

TEST(DropinGrad, RegularizeTrainChannelUnit) {
  auto t = make_layer_under_test("{name: d, type: dropin, bottom: [s, n], top: y, mode: regularize, p: 0.5, unit: channel}",
                                 {Shape({3, 4, 2, 2}), Shape({3, 4, 2, 2})});
  GradCheckOptions o;
  o.ctx = train_ctx(5);
  EXPECT_TRUE(check_gradients(t, o));
}

TEST(DropinGrad, RegularizeTestExpectation) {
  auto t = make_layer_under_test("{name: d, type: dropin, bottom: [s, n], top: y, mode: regularize, p: 0.3}",
                                 {Shape({2, 5}), Shape({2, 5})});
  GradCheckOptions o;
  o.ctx = RunContext{Phase::Test, 0, 42, 0};
  EXPECT_TRUE(check_gradients(t, o));
  // y = 0.3 new + 0.7 skip
  t.forward(o.ctx);
  auto s = t.bottoms[0].value.to_host(), n = t.bottoms[1].value.to_host(), y = t.tops[0].value.to_host();
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], 0.3f * n[i] + 0.7f * s[i], 1e-6);
}

TEST(DropinGrad, FullyGrownIsIdentityOnNew) {
  auto t = make_layer_under_test("{name: d, type: dropin, bottom: [s, n], top: y, length: 10, start: 5}",
                                 {Shape({2, 3, 2, 2}), Shape({2, 3, 2, 2})});
  t.forward(train_ctx(15));
  EXPECT_EQ(t.tops[0].value.to_host(), t.bottoms[1].value.to_host());
  t.forward(train_ctx(5));  // p = 0 at the start: the shallow net
  EXPECT_EQ(t.tops[0].value.to_host(), t.bottoms[0].value.to_host());
  GradCheckOptions o;
  o.ctx = train_ctx(100);
  EXPECT_TRUE(check_gradients(t, o));
  // The skip input gets no gradient once p = 1.
  for (float g : t.bottoms[0].grad.to_host()) EXPECT_EQ(g, 0.f);
}

TEST(DropinLayer, ShapeMismatchSuggestsResize) {
  try {
    make_layer_under_test("{name: d, type: dropin, bottom: [s, n], top: y, length: 10}",
                          {Shape({2, 3, 4, 4}), Shape({2, 6, 4, 4})});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("resize"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(2, 3, 4, 4)"), std::string::npos) << e.what();
  }
}

TEST(DropinLayer, ReportsP) {
  auto t = make_layer_under_test("{name: d, type: dropin, bottom: [s, n], top: y, length: 200, start: 100}",
                                 {Shape({1, 4}), Shape({1, 4})});
  EXPECT_DOUBLE_EQ(t.layer->metrics(train_ctx(150))[0].second, 0.25);
  EXPECT_DOUBLE_EQ(t.layer->metrics(train_ctx(50))[0].second, 0.0);
  EXPECT_DOUBLE_EQ(t.layer->metrics(train_ctx(400))[0].second, 1.0);
}

// grow: width 0.25 of 8 channels at first (2 active), full at start + length.
TEST(GrowGrad, MidSchedule) {
  auto t = make_layer_under_test("{name: g, type: grow, bottom: x, top: y, from: 0.25, length: 100, start: 10}",
                                 {Shape({2, 8, 3, 3})});
  GradCheckOptions o;
  o.ctx = train_ctx(60);  // (0.25 + 0.75 * 0.5) * 8 = 5 channels
  EXPECT_TRUE(check_gradients(t, o));
  t.forward(o.ctx);
  t.backward(o.ctx);
  const auto x = t.bottoms[0].value.to_host(), y = t.tops[0].value.to_host(), dx = t.bottoms[0].grad.to_host();
  for (size_t i = 0; i < y.size(); ++i) {
    const bool on = (i / 9) % 8 < 5;
    EXPECT_EQ(y[i], on ? x[i] : 0.f) << i;
    if (!on) EXPECT_EQ(dx[i], 0.f) << "an inactive channel got a gradient at " << i;
  }
}

TEST(GrowGrad, FcFeaturesAndFullWidth) {
  auto t = make_layer_under_test("{name: g, type: grow, bottom: x, top: y, from: 0.5, length: 10}", {Shape({3, 6})});
  GradCheckOptions o;
  o.ctx = train_ctx(0);  // 3 of 6 features
  EXPECT_TRUE(check_gradients(t, o));
  o.ctx = train_ctx(10);
  EXPECT_TRUE(check_gradients(t, o));
  t.forward(o.ctx);
  EXPECT_EQ(t.tops[0].value.to_host(), t.bottoms[0].value.to_host());
}

TEST(GrowLayer, ScheduleAndWidthMetric) {
  auto t = make_layer_under_test("{name: g, type: grow, bottom: x, top: y, from: 0.3, length: 100, start: 50}",
                                 {Shape({1, 10, 2, 2})});
  EXPECT_DOUBLE_EQ(t.layer->metrics(train_ctx(0))[0].second, 0.3);    // 0.3 * 10 = 3, not rounded up to 4
  EXPECT_DOUBLE_EQ(t.layer->metrics(train_ctx(100))[0].second, 0.7);  // 0.3 + 0.7 * 0.5 = 0.65 -> 7 of 10
  EXPECT_DOUBLE_EQ(t.layer->metrics(train_ctx(150))[0].second, 1.0);
}

TEST(GrowLayer, BadFractionIsAConfigError) {
  for (const char* from : {"0", "-0.5", "1.5", "nan"}) {
    try {
      make_layer_under_test(fmt::format("{{name: g, type: grow, bottom: x, top: y, from: {}, length: 10}}", from),
                            {Shape({1, 4})});
      ADD_FAILURE() << "from " << from << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Input);
      EXPECT_NE(std::string(e.what()).find("from"), std::string::npos) << e.what();
    }
  }
}

TEST(DropoutGrad, Train) {
  auto t = make_layer_under_test("{name: d, type: dropout, bottom: x, top: y, ratio: 0.4}", {Shape({3, 4, 5})});
  GradCheckOptions o;
  o.ctx = train_ctx(3);
  EXPECT_TRUE(check_gradients(t, o));
}

TEST(DropoutLayer, TestIsIdentity) {
  auto t = make_layer_under_test("{name: d, type: dropout, bottom: x, top: y, ratio: 0.5}", {Shape({3, 4})});
  t.forward(RunContext{Phase::Test, 0, 1, 0});
  EXPECT_EQ(t.tops[0].value.to_host(), t.bottoms[0].value.to_host());
}

struct ResizeCase {
  const char* name;
  const char* keys;
};

class ResizeGrad : public ::testing::TestWithParam<ResizeCase> {};

TEST_P(ResizeGrad, MatchesFiniteDifferences) {
  std::string yaml = fmt::format("{{name: r, type: resize, bottom: x, top: y, {}}}", GetParam().keys);
  auto t = make_layer_under_test(yaml, {Shape({2, 3, 5, 4})});
  EXPECT_TRUE(check_gradients(t, {}));
}

INSTANTIATE_TEST_SUITE_P(
    Modes, ResizeGrad,
    ::testing::Values(ResizeCase{"nearest_up", "height: 7, width: 9"},
                      ResizeCase{"bilinear_down", "height: 3, width: 3, method: bilinear"},
                      ResizeCase{"bilinear_up_pad", "height: 8, width: 6, method: bilinear, channels: 5, channel_mode: pad"},
                      ResizeCase{"area_down_tile", "height: 2, width: 3, method: area, channels: 2"},
                      ResizeCase{"average_channels", "channels: 2, channel_mode: average"},
                      ResizeCase{"tile_grow", "channels: 7, channel_mode: tile, method: area, height: 6, width: 6"}),
    [](const ::testing::TestParamInfo<ResizeCase>& i) { return std::string(i.param.name); });

TEST(LrnGrad, AcrossChannels) {
  auto t = make_layer_under_test("{name: l, type: lrn, bottom: x, top: y, local_size: 3, alpha: 0.5, beta: 0.75, k: 2}",
                                 {Shape({2, 5, 3, 3})});
  EXPECT_TRUE(check_gradients(t, {}));
}

TEST(LrnGrad, WithinChannel) {
  auto t = make_layer_under_test(
      "{name: l, type: lrn, bottom: x, top: y, region: within_channel, local_size: 3, alpha: 0.9, beta: 0.75}",
      {Shape({2, 2, 5, 4})});
  EXPECT_TRUE(check_gradients(t, {}));
}

}  // namespace
