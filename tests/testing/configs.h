// The shipped configs (configs/*.yaml) with their data sections swapped for small synthetic
// sources of the same sample shape, for tests that build or run every config.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace dropnet::testing {

// (file name, resolved YAML text) sorted by name; batch size `batch`, `samples` samples.
std::vector<std::pair<std::string, std::string>> shipped_configs_synthetic(int batch = 2, int samples = 8);

}  // namespace dropnet::testing
