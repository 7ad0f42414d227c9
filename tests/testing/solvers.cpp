#include "tests/testing/solvers.h"

#include "data/sources.h"
#include "core/config.h"

namespace dropnet::testing {

std::unique_ptr<Solver> quiet_solver(const std::string& yaml, const std::string& file_name, uint64_t seed,
                                     Device dev, bool skip_unused) {
  SolverOptions so;
  so.net.skip_unused = skip_unused;
  so.net.device = dev;
  so.net.seed = seed;
  so.net.source_factory = make_batch_source;
  so.quiet = true;
  return std::make_unique<Solver>(load_config_text(yaml, file_name), so);
}

}  // namespace dropnet::testing
