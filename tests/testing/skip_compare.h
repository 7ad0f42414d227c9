// Compute skipping against the full computation (NetOptions::skip_unused): two solvers of one
// small LeNet(2N)-shaped net, one skipping and one not, trained the same iterations from the same
// seed at a given DropIn p; every parameter, parameter gradient, loss, and every blob value and
// gradient that the skipping net computes must be equal (float ==, so +0 and -0 are not told
// apart). Shared by the CPU test (unit_dropin_skip) and the CUDA one (cuda_dropin_skip).
#pragma once

#include <string>

#include "core/device.h"

namespace dropnet::testing {

struct SkipCase {
  double p = 0.0;       // the DropIn p over the compared iterations (gradual: start 100, length 1000)
  std::string unit;     // element | channel
  bool relu = false;    // a ReLU between each added conv and its DropIn
};
std::string skip_case_name(const SkipCase& c);

// Runs the comparison (gtest assertions). Also checks that the skipping net did skip: at p = 0
// the added convs do not run, at p in (0, 1) they compute fewer channels than they have (CPU).
void compare_skipped_to_full(const SkipCase& c, Device dev, int iterations);

}  // namespace dropnet::testing
