// Shared by the CLIs: the top-level error handler (exit 2 on bad input, 1 on internal errors),
// logging setup, argument helpers and the config's top-level section.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/device.h"
#include "layers/config.h"
#include "layers/net.h"

namespace dropnet::cli {

// Runs `body`, catching dropnet::Error and std::exception: prints "<tool>: error: <message>"
// and returns 2 for input errors, 1 otherwise.
int run_main(const char* tool, const std::function<int()>& body);

void init_logging(int rank = 0);

// The run-level keys of a config: name, seed, device, engine, vars, data (train/test), solver,
// layers. Unknown top-level keys are errors.
struct RunSettings {
  std::string name;
  uint64_t seed = 1;
  std::string device = "auto";
  std::string engine = "native";
};
RunSettings read_run_settings(const LoadedConfig& cfg);
// Options of a tool's single net (dropnet-test, dropnet-time, dropnet-dump): the run's seed and
// engine, data from the config's sources, batch_override 0 = as configured.
NetOptions net_options(const RunSettings& run, Device dev, Phase phase, int64_t batch_override = 0);

// Simple argv scanner: positional args and --flag [value] options.
class Args {
 public:
  Args(int argc, char** argv);
  // Takes "--name value" or "--name=value"; returns def when absent.
  std::string take(const std::string& name, const std::string& def = "");
  int64_t take_int(const std::string& name, int64_t def);
  bool take_flag(const std::string& name);
  // Remaining arguments after the options were taken; unknown --options are errors.
  std::vector<std::string> positional(const char* usage);

 private:
  std::vector<std::string> args_;
  std::vector<bool> used_;
};

void set_threads(int64_t threads);

}  // namespace dropnet::cli
