// Compute skipping in gradual DropIn on the CPU: bit-identical to the full computation after
// several iterations at p in {0, 0.37, 1}, element and channel units, with and without a ReLU
// between the added conv and its DropIn (tests/testing/skip_compare.h).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "core/error.h"
#include "tests/testing/skip_compare.h"
#include "tests/testing/solvers.h"

namespace dropnet {
namespace {

using testing::SkipCase;

class DropinSkip : public ::testing::TestWithParam<SkipCase> {};

TEST_P(DropinSkip, SkippedEqualsFull) { testing::compare_skipped_to_full(GetParam(), Device::cpu(), 5); }

INSTANTIATE_TEST_SUITE_P(Cases, DropinSkip,
                         ::testing::Values(SkipCase{0.0, "element", false}, SkipCase{0.37, "element", false},
                                           SkipCase{1.0, "element", false}, SkipCase{0.0, "channel", false},
                                           SkipCase{0.37, "channel", false}, SkipCase{1.0, "channel", false},
                                           SkipCase{0.0, "element", true}, SkipCase{0.37, "element", true},
                                           SkipCase{1.0, "element", true}, SkipCase{0.37, "channel", true}),
                         [](const ::testing::TestParamInfo<SkipCase>& i) { return testing::skip_case_name(i.param); });

}  // namespace
}  // namespace dropnet

namespace dropnet {
namespace {

// A gradual DropIn or grow layer that starts at or past solver.max_iter would never change the
// net: a config error naming the file, line and key.
TEST(ScheduleStart, AtOrPastMaxIterIsAConfigError) {
  for (const char* layer : {"{name: d, type: dropin, bottom: [ip1, ip1b], top: d, start: 50, length: 10}",
                            "{name: d, type: grow, bottom: ip1b, top: d, from: 0.5, start: 70, length: 10}"}) {
    const std::string yaml = fmt::format(R"(name: late
data:
  train: {{source: synthetic, shape: [1, 4, 4], num_classes: 3, num_samples: 12, batch_size: 4}}
solver: {{base_lr: 0.01, max_iter: 50}}
layers:
  - {{name: data, type: data, top: [data, label]}}
  - {{name: ip1, type: fc, bottom: data, top: ip1, num_output: 3}}
  - {{name: ip1b, type: fc, bottom: ip1, top: ip1b, num_output: 3}}
  - {}
  - {{name: loss, type: softmax_loss, bottom: [d, label], top: loss}}
)",
                                         layer);
    try {
      testing::quiet_solver(yaml, "late.yaml", 1);
      ADD_FAILURE() << layer << ": no error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(e.kind(), ErrorKind::Input);
      EXPECT_NE(msg.find("late.yaml:9:"), std::string::npos) << msg;
      EXPECT_NE(msg.find("past solver.max_iter 50"), std::string::npos) << msg;
    }
    // The same layer in a longer run is fine.
    std::string longer = yaml;
    longer.replace(longer.find("max_iter: 50"), 12, "max_iter: 71");
    EXPECT_NO_THROW(testing::quiet_solver(longer, "late.yaml", 1)) << layer;
  }
}

}  // namespace
}  // namespace dropnet
