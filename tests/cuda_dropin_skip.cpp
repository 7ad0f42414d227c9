// Compute skipping in gradual DropIn on the CUDA device (the emulated one in CI): bit-identical to
// the full computation at p in {0, 0.37, 1}, element and channel units, with and without a ReLU
// (tests/testing/skip_compare.h). Layers that no later layer reads do not run; a pass-through
// DropIn is a view of its input.
#include <gtest/gtest.h>

#include "tests/testing/harness.h"
#include "tests/testing/skip_compare.h"

namespace dropnet {
namespace {

using testing::SkipCase;

class CudaDropinSkip : public ::testing::TestWithParam<SkipCase> {};

TEST_P(CudaDropinSkip, SkippedEqualsFull) {
  DN_REQUIRE_CUDA();
  testing::compare_skipped_to_full(GetParam(), Device::cuda(0), 3);
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaDropinSkip,
                         ::testing::Values(SkipCase{0.0, "element", false}, SkipCase{0.37, "element", false},
                                           SkipCase{1.0, "element", false}, SkipCase{0.0, "channel", true},
                                           SkipCase{0.37, "channel", true}, SkipCase{1.0, "channel", true}),
                         [](const ::testing::TestParamInfo<SkipCase>& i) { return testing::skip_case_name(i.param); });

}  // namespace
}  // namespace dropnet
