// libFuzzer harness for the config loader: the input is YAML text, loaded (aliases, repeat
// expansion, overrides-free) and built as `dropnet-train --dry-run` builds it (run settings,
// solver, TRAIN and TEST nets, data sources; shapes only, no blob memory). dropnet::Error is the
// expected outcome of bad input; anything else (another exception, a sanitizer report, a crash, an
// input past -timeout or -rss_limit_mb) is a finding. Built and run by tools/run_fuzzers.sh.
#include <spdlog/spdlog.h>

#include <cstdint>
#include <string>

#include "core/error.h"
#include "data/sources.h"
#include "core/config.h"
#include "optim/solver.h"
#include "tools/cli_common.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // data sources log their shapes on every build
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    dropnet::LoadedConfig cfg = dropnet::load_config_text(text, "fuzz.yaml");
    dropnet::cli::read_run_settings(cfg);
    dropnet::SolverOptions so;
    so.net.source_factory = dropnet::make_batch_source;
    so.net.shapes_only = true;
    so.quiet = true;
    // The per-input memory budget: libFuzzer refuses single allocations past -rss_limit_mb, and a
    // config may describe a net of any size; past 256 MiB per allocation is an input error here.
    so.net.max_blob_floats = double(int64_t{1} << 26);
    so.net.max_param_floats = double(int64_t{1} << 26);
    dropnet::Solver solver(cfg, so);
    (void)dropnet::dump_config(cfg);
  } catch (const dropnet::Error&) {
  }
  return 0;
}
