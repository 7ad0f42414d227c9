// Shared by the CLIs: the top-level error handler (exit 2 on bad input, 1 on internal errors),
// logging setup, argument helpers and the config's top-level section.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/config.h"
#include "layers/net.h"
#include "optim/snapshot.h"

namespace dropnet::cli {

// Runs `body`, catching dropnet::Error and std::exception: prints "<tool>: error: <message>"
// and returns 2 for input errors, 1 otherwise.
int run_main(const char* tool, const std::function<int()>& body);

// OpenMP's default spin-waiting (libgomp: GOMP_SPINCOUNT 300,000) makes a waiting thread burn
// its core. Where other processes compete for the cores, that starves the thread being waited
// for: LeNet on 2 threads beside two busy processes trains at 532 img/s, with GOMP_SPINCOUNT
// 10,000 at 3,866-3,950 (1 thread: 4,903); on a quiet machine 10,000 costs nothing measurable
// (three runs each: 12,000-12,200 img/s with the default, 12,100-12,400 with 10,000). libgomp reads the variable when it is loaded, so when neither
// OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set, this sets GOMP_SPINCOUNT=10000 and re-executes the
// tool once (same pid, same arguments; where that fails it carries on with the defaults). First
// statement of every tool's main().
void tune_openmp_waiting(char** argv);
// "GOMP_SPINCOUNT <v>", "OMP_WAIT_POLICY <v>" or "OpenMP defaults": what the threads run with.
std::string openmp_waiting();

void init_logging(int rank = 0);

// The run-level keys of a config: name, seed, device, engine, vars, data (train/test), solver,
// layers, weights_map. Unknown top-level keys are errors.
struct RunSettings {
  std::string name;
  uint64_t seed = 1;
  std::string device = "auto";
  std::string engine = "native";
  Precision precision = Precision::FP32;  // `precision: fp32 | tf32 | bf16`
  // `weights_map: {conv1: conv1_1}`: the file's layer conv1 initializes the net's conv1_1 when the
  // run starts from --weights (WeightsMapEntry); each entry's origin is its file:line.
  std::vector<WeightsMapEntry> weights_map;
};
RunSettings read_run_settings(const LoadedConfig& cfg);
// Options of a tool's single net (dropnet-test, dropnet-time, dropnet-dump): the run's seed and
// engine, data from the config's sources, batch_override 0 = as configured.
NetOptions net_options(const RunSettings& run, Device dev, Phase phase, int64_t batch_override = 0);

// Every tool's command line, parsed by CLI11: options registered with their meaning (and their
// default, from the variable's value when it is not empty or zero), then parse(). --help prints the
// description, the usage, the arguments and every option; --version the version and commit (both
// exit 0, whatever else is given). An unknown --option is an input error that names the closest
// option this tool takes ("did you mean"); a malformed value one that names the option.
class Parser {
 public:
  // usage: the synopsis lines ("dropnet-test RUN_DIR|SNAPSHOT [key.path=value ...] [options]");
  // about: what the tool does; arguments: the positional arguments, one "NAME  meaning" per line.
  Parser(std::string tool, std::string usage, std::string about, std::string arguments = "");
  ~Parser();
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;
  // name is "--name"; value_name e.g. "FILE", "N". The variable's value is the default.
  void option(const std::string& name, std::string& value, const std::string& value_name, const std::string& help);
  void option(const std::string& name, int64_t& value, const std::string& value_name, const std::string& help);
  void option(const std::string& name, double& value, const std::string& value_name, const std::string& help);
  void flag(const std::string& name, bool& value, const std::string& help);
  // The options several tools share, with one meaning everywhere.
  void threads(int64_t& value);      // --threads N (0: OpenMP's default, every core)
  void device(std::string& value);   // --device D (empty: the config's)
  // Parses argv; returns the positional arguments (CONFIG, key.path=value overrides, ...).
  std::vector<std::string> parse(int argc, char** argv);
  // "usage: <the synopsis>", for error messages.
  std::string usage() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

void set_threads(int64_t threads);

// dropnet's version and the git commit it was built from ("unknown" outside a git checkout).
std::string version();
std::string commit();

}  // namespace dropnet::cli
