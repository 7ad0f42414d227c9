// Solvers of the small nets that tests write as YAML text.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/device.h"
#include "optim/solver.h"

namespace dropnet::testing {

// A Solver for `yaml` (`file_name` names it in messages) with the real data sources (synthetic ones, in tests), the
// RNG seed `seed`, on `dev`, printing nothing.
std::unique_ptr<Solver> quiet_solver(const std::string& yaml, const std::string& file_name, uint64_t seed,
                                     Device dev = Device::cpu(), bool skip_unused = true);

}  // namespace dropnet::testing
