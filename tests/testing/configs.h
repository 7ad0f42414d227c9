// YAML text for tests: the shipped configs (configs/*.yaml) with their data sections swapped for
// small synthetic sources of the same sample shape, for tests that build or run every config; and
// "key: value" lines nested into a hand-written section.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace dropnet::testing {

// (file name, resolved YAML text) sorted by name; batch size `batch`, `samples` samples.
std::vector<std::pair<std::string, std::string>> shipped_configs_synthetic(int batch = 2, int samples = 8);

// Every line of `text` (split at '\n'; none for an empty text) prefixed by `indent` and ended by a newline: the
// "key: value" lines a test passes, nested under a map such as `data:\n  train:\n`.
std::string indent_lines(const std::string& text, const std::string& indent);

}  // namespace dropnet::testing
