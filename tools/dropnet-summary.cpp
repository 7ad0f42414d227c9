// dropnet-summary CONFIG [key.path=value ...] [options]   (--help: every option)
// Prints, for the TRAIN and TEST nets, per layer: type, top shape, parameters, forward FLOPs,
// activation and parameter memory, with totals; then every default that was filled in (the same
// table as `dropnet-train --dry-run`). --iter N adds the FLOPs per image that DropIn compute
// skipping leaves at iteration N. Nothing is run and no data is read: the sample shapes come from
// the config (SourceRequest::shapes_only; a missing data file is a warning). --synthetic replaces
// the sources by synthetic ones, for an image_list whose shape only its images tell.
#include <iostream>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "data/sources.h"
#include "optim/solver.h"
#include "tools/cli_common.h"
#include "tools/run_support.h"

using namespace dropnet;

namespace {

int summary_main(int argc, char** argv) {
  cli::Parser args("dropnet-summary", "dropnet-summary CONFIG [key.path=value ...] [options]",
                   "Prints, for the TRAIN and TEST nets, per layer: type, top shape, parameters, forward FLOPs, "
                   "activation and parameter memory, with totals; then every default that was filled in. Nothing is "
                   "run and no data is read: the sample shapes come from the config (a missing data file is a "
                   "warning).",
                   "  CONFIG          the net description (YAML)\n"
                   "  key.path=value  changes a setting of CONFIG (e.g. vars.L=1000)");
  SummaryOptions opts;
  bool no_defaults = false, synthetic = false, print_config = false;
  int64_t batch = 0;
  std::string synthetic_shape;
  opts.at_iter = -1;
  args.flag("--markdown", opts.markdown, "GitHub tables (for a README)");
  args.flag("--no-defaults", no_defaults, "leave out the list of defaults filled in");
  args.option("--batch", batch, "N", "batch size of both phases (default: 0, as configured)");
  args.flag("--synthetic", synthetic,
            "replace the data sources by synthetic ones of the same shape (no data is read either way; needed only "
            "for an image_list without resize or crop)");
  args.option("--synthetic-shape", synthetic_shape, "C,H,W", "the synthetic samples' shape (default: the source's)");
  args.flag("--config", print_config,
            "print the resolved config (repeat blocks expanded, vars and overrides applied) as YAML");
  args.option("--iter", opts.at_iter, "N",
              "also the forward FLOPs per image left at iteration N by DropIn compute skipping (default: not shown)");
  std::vector<std::string> pos = args.parse(argc, argv);
  opts.defaults = !no_defaults;
  if (pos.empty()) input_error("missing CONFIG\n{}", args.usage());
  if (batch < 0) input_error("--batch must be > 0, got {}", batch);
  if (opts.at_iter < -1) input_error("--iter must be >= 0, got {}", opts.at_iter);
  std::vector<std::string> overrides(pos.begin() + 1, pos.end());
  for (const auto& o : overrides)
    if (o.find('=') == std::string::npos) input_error("unexpected argument '{}' (overrides are key.path=value)", o);

  cli::init_logging();
  spdlog::set_level(spdlog::level::warn);  // stdout is the product; keep the source banners out
  LoadedConfig cfg = load_config_file(pos[0], overrides);
  if (synthetic || !synthetic_shape.empty()) use_synthetic_data(cfg, synthetic_shape);
  if (print_config) {
    std::cout << dump_config(cfg);
    return 0;
  }
  // Shapes and counts do not depend on the engine; build on the CPU with the native one so that
  // cuDNN/cuBLAS configs can be summarized on any machine.
  if (cfg.root["engine"].IsDefined()) cfg.root["engine"] = "native";
  for (YAML::Node l : cfg.root["layers"])
    if (l.IsMap() && l["engine"].IsDefined()) l["engine"] = "native";
  cli::RunSettings run = cli::read_run_settings(cfg);
  SolverOptions so;
  so.net = cli::net_options(run, Device::cpu(), Phase::Train, batch);  // shapes only: no device memory needed
  so.net.default_engine = "native";
  so.quiet = true;
  so.net.shapes_only = true;  // VGG16 at batch 256 describes itself without touching its ~20 GB
  Solver solver(cfg, so);
  print_net_summary(solver.train_net(), solver.test_net(), *cfg.defaults, opts);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cli::tune_openmp_waiting(argv);
  return cli::run_main("dropnet-summary", [&] { return summary_main(argc, argv); });
}
