#include "tests/testing/skip_compare.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include <fmt/format.h>

#include "tests/testing/solvers.h"

namespace dropnet::testing {

namespace {

// LeNet(4)-shaped: two stages, each a conv followed by an added conv whose DropIn mixes it with
// the stage's input (the skip feeds both, so its gradient accumulates), then an fc DropIn.
std::string yaml(const SkipCase& c) {
  auto stage = [&](const std::string& s, const std::string& in, int ch) {
    std::string conv_top = c.relu ? "c" + s + "_2" : "n" + s;
    std::string out = fmt::format(
        "  - {{name: conv{s}_2, type: conv, bottom: {in}, top: {ct}, num_output: {ch}, kernel: 3, pad: 1,\n"
        "     weight_filler: {{type: xavier}}, bias_filler: {{type: constant, value: 0.1}}}}\n",
        fmt::arg("s", s), fmt::arg("in", in), fmt::arg("ct", conv_top), fmt::arg("ch", ch));
    if (c.relu) out += fmt::format("  - {{name: relu{s}_2, type: relu, bottom: c{s}_2, top: n{s}}}\n", fmt::arg("s", s));
    out += fmt::format(
        "  - {{name: dropin{s}_2, type: dropin, bottom: [{in}, n{s}], top: x{s}, start: 100, length: 1000, "
        "unit: {u}}}\n",
        fmt::arg("s", s), fmt::arg("in", in), fmt::arg("u", c.unit));
    return out;
  };
  return fmt::format(R"(name: skip_check
data:
  train: {{source: synthetic, shape: [2, 10, 10], num_classes: 4, num_samples: 48, batch_size: 6,
          scale: 0.00390625}}
solver: {{base_lr: 0.02, momentum: 0.9, weight_decay: 0.0005, lr_policy: fixed, max_iter: 100000, display: 0}}
layers:
  - {{name: data, type: data, top: [data, label]}}
  - {{name: conv1_1, type: conv, bottom: data, top: s1, num_output: 7, kernel: 3, weight_filler: {{type: xavier}}}}
{stage1}  - {{name: pool1, type: pool, bottom: x1, top: pool1, method: max, kernel: 2, stride: 2}}
  - {{name: conv2_1, type: conv, bottom: pool1, top: s2, num_output: 9, kernel: 3, pad: 1,
     weight_filler: {{type: xavier}}}}
{stage2}  - {{name: ip1, type: fc, bottom: x2, top: ip1, num_output: 12, weight_filler: {{type: xavier}}}}
  - {{name: relu1, type: relu, bottom: ip1, top: r1}}
  - {{name: ip1b, type: fc, bottom: r1, top: ip1b, num_output: 12, weight_filler: {{type: xavier}}}}
  - {{name: dropin_fc, type: dropin, bottom: [r1, ip1b], top: xf, start: 100, length: 1000, unit: {u}}}
  - {{name: ip2, type: fc, bottom: xf, top: ip2, num_output: 4, weight_filler: {{type: xavier}}}}
  - {{name: loss, type: softmax_loss, bottom: [ip2, label], top: loss}}
)",
                     fmt::arg("stage1", stage("1", "s1", 7)), fmt::arg("stage2", stage("2", "s2", 9)),
                     fmt::arg("u", c.unit));
}

// The iteration at which p(t) = c.p (start 100, length 1000).
// p = 0 is held from iteration 0 to 100.
int64_t first_iter(const SkipCase& c) { return c.p == 0.0 ? 0 : 100 + static_cast<int64_t>(std::lround(c.p * 1000)); }

void expect_equal(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i]) && !(std::isnan(a[i]) && std::isnan(b[i]))) {
      if (first < 0) first = static_cast<int64_t>(i);
      ++bad;
    }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << a.size() << " differ, first at " << first << " ("
                    << (first >= 0 ? a[first] : 0.f) << " skipped vs " << (first >= 0 ? b[first] : 0.f) << " full)";
}

// The channels [r.begin, r.end) of every sample of a (n, c, ...) host copy.
std::vector<float> channels(const std::vector<float>& v, const Shape& s, ChannelRange r) {
  const int64_t n = s.n(), c = num_channels(s), inner = s.count() / std::max<int64_t>(1, n * c);
  std::vector<float> out;
  for (int64_t i = 0; i < n; ++i)
    out.insert(out.end(), v.begin() + (i * c + r.begin) * inner, v.begin() + (i * c + r.end) * inner);
  return out;
}

}  // namespace

std::string skip_case_name(const SkipCase& c) {
  return fmt::format("p{}_{}{}", static_cast<int>(std::lround(c.p * 100)), c.unit, c.relu ? "_relu" : "");
}

void compare_skipped_to_full(const SkipCase& c, Device dev, int iterations) {
  const std::string text = yaml(c);
  std::unique_ptr<Solver> skip = quiet_solver(text, "skip_check.yaml", 7, dev, true);
  std::unique_ptr<Solver> full = quiet_solver(text, "skip_check.yaml", 7, dev, false);
  const int64_t it0 = first_iter(c);
  skip->set_iter(it0);
  full->set_iter(it0);
  for (int i = 0; i < iterations; ++i) {
    ASSERT_NO_THROW(full->step(1)) << "the full computation, iteration " << it0 + i;
    ASSERT_NO_THROW(skip->step(1)) << "the skipping one, iteration " << it0 + i;
    ASSERT_EQ(skip->loss_window().back(), full->loss_window().back()) << "loss at iteration " << it0 + i;
  }
  Net& ns = skip->train_net();
  Net& nf = full->train_net();
  expect_equal(ns.param_values().to_host(), nf.param_values().to_host(), "parameters");
  expect_equal(ns.param_grads().to_host(), nf.param_grads().to_host(), "parameter gradients");
  // The last pass again, forward and backward without an update, to compare every blob.
  const RunContext ctx{Phase::Train, skip->iter(), 7, static_cast<uint32_t>(skip->iter())};
  ns.zero_param_grads();
  nf.zero_param_grads();
  ns.forward(ctx);
  nf.forward(ctx);
  ns.backward(ctx);
  nf.backward(ctx);
  int skipped_layers = 0, narrowed = 0;
  for (int i = 0; i < ns.num_layers(); ++i) {
    if (!ns.layer_active(i, ctx)) {
      ++skipped_layers;
      continue;
    }
    const ChannelRange use = ns.layer_top_use(i, ctx);
    for (size_t t = 0; t < ns.tops(i).size(); ++t) {
      const Blob& a = *ns.tops(i)[t];
      const Blob& b = *nf.tops(i)[t];
      const ChannelRange r = t == 0 ? use : whole_channels(a.shape());
      if (t == 0 && r.size() < num_channels(a.shape())) ++narrowed;
      const std::string where = fmt::format("blob '{}' (layer '{}', channels [{}, {}))", a.name, ns.layer(i).name(),
                                            r.begin, r.end);
      expect_equal(channels(a.value.to_host(), a.shape(), r), channels(b.value.to_host(), b.shape(), r),
                   where + " value");
      if (!a.grad.empty() && ns.layer_needs_backward(i))
        expect_equal(channels(a.grad.to_host(), a.shape(), r), channels(b.grad.to_host(), b.shape(), r),
                     where + " gradient");
    }
  }
  expect_equal(ns.param_grads().to_host(), nf.param_grads().to_host(), "parameter gradients of the extra pass");
  // Skipping did happen: at p = 0 the added convs (and their ReLUs) and ip1b do not run.
  if (c.p == 0.0) EXPECT_EQ(skipped_layers, c.relu ? 5 : 3);
  if (c.p > 0.0 && c.p < 1.0) EXPECT_GE(narrowed, 2) << "the added convs compute every channel";
  if (c.p == 1.0) EXPECT_EQ(skipped_layers, 0);
}

}  // namespace dropnet::testing
