// dropnet-train CONFIG [key.path=value ...] [options]   (--help: every option)
// dropnet-train --resume DIR|FILE [key.path=value ...] [options]
// Trains a net described by a YAML config; writes metrics.jsonl, the resolved config and
// snapshots into the run directory. Under mpirun: data parallel (dist/), rank 0 alone logs and
// writes files.
#include <fmt/format.h>
#include <omp.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "core/error.h"
#include "data/sources.h"
#include "dist/communicator.h"
#include "layers/net.h"
#include "optim/snapshot.h"
#include "optim/solver.h"
#include "tools/cli_common.h"
#include "tools/progress.h"
#include "tools/run_support.h"

using namespace dropnet;

namespace {

std::atomic<int> g_signal{0};
std::atomic<int64_t> g_first_signal_ns{0};
// The first SIGINT/SIGTERM stops the run at the next iteration boundary with a snapshot; another
// one a second or more later exits at once (128 + signal, as a shell reports a killed command),
// without that snapshot. One sooner is the same interrupt delivered twice (`timeout` and some
// launchers signal both the process and its process group) and is ignored.
void on_signal(int sig) {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
  const int64_t now = static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  int none = 0;
  if (g_signal.compare_exchange_strong(none, sig)) {
    g_first_signal_ns.store(now);
    return;
  }
  if (now - g_first_signal_ns.load() < 1000000000) return;
  static const char kMsg[] = "\ndropnet-train: second signal: exiting at once (no final snapshot)\n";
  (void)!::write(2, kMsg, sizeof kMsg - 1);
  ::_exit(128 + sig);
}

int train_main(int argc, char** argv) {
  cli::Parser args("dropnet-train",
                   "dropnet-train CONFIG [key.path=value ...] [options]\n"
                   "       dropnet-train --resume DIR|FILE [key.path=value ...] [options]\n"
                   "       mpirun -np N dropnet-train ...   (data parallel: one rank per GPU or CPU process)",
                   "Trains the net of CONFIG with its solver, testing and snapshotting as configured; writes the run "
                   "directory (config.yaml, metrics.jsonl, train.log, snapshots). Exit 0 when finished, 2 on bad "
                   "input, 3 when training diverged, 130/143 when stopped by SIGINT/SIGTERM (after a snapshot).",
                   "  CONFIG          the net description (YAML); may be left out with --resume\n"
                   "  key.path=value  changes a setting (e.g. solver.base_lr=0.01 vars.L=100)");
  int64_t threads = 0;
  std::string device_arg, out_dir, resume, weights, weights_map_arg, progress_mode = "auto", timeout_arg = "120";
  bool weights_strict = false, dry_run = false, force = false, quiet = false, caffe_log = false, no_skip = false;
  args.threads(threads);
  args.device(device_arg);
  args.option("--out", out_dir, "DIR",
              "the run directory (default: runs/<name>; with --resume, the resumed run's); one that holds another "
              "run is refused unless --force");
  args.flag("--force", force, "write into an --out that holds another run (deletes its metrics and snapshots)");
  args.option("--resume", resume, "DIR|FILE",
              "continue the run of a snapshot (a run directory: its latest intact one) with the config stored in "
              "it; key.path=value changes a setting (logged); a CONFIG given too must resolve to the same");
  args.option("--weights", weights, "FILE",
              "start a new run from trained weights (Caffe's fine-tuning): parameters matched by name, the others "
              "keep their filler init; what was loaded, new and unused is logged");
  args.option("--weights-map", weights_map_arg, "A=B,...",
              "the file's layer A initializes the net's layer B (weight and bias); adds to / overrides the "
              "config's `weights_map: {A: B}`");
  args.flag("--weights-strict", weights_strict, "every net parameter from the file and every file tensor used");
  args.flag("--dry-run", dry_run, "build the nets, print the summary and the defaults filled in, read no data, exit");
  args.flag("--quiet", quiet, "no progress lines (warnings, tests and the final result only)");
  args.option("--comm-timeout", timeout_arg, "SECONDS",
              "data parallel: a rank that waits this long for the others fails the run, naming them");
  args.flag("--caffe-log", caffe_log, "also Caffe-style lines (\"Iteration 100, loss = 0.3\") for Caffe's log parsers");
  args.option("--progress", progress_mode, "auto|tty|log",
              "tty: one updating line; log: log lines; auto: tty when stderr is a terminal");
  args.flag("--no-skip", no_skip, "compute every layer whole (DropIn compute skipping off: same results, the cost before it)");
  std::vector<std::string> pos = args.parse(argc, argv);
  const std::string usage = args.usage();
  if (progress_mode != "auto" && progress_mode != "tty" && progress_mode != "log")
    input_error("--progress must be auto, tty or log, got '{}'", progress_mode);
  // CONFIG is the first argument that is not an override; with --resume it may be left out.
  const bool has_config = !pos.empty() && pos[0].find('=') == std::string::npos;
  if (!has_config && resume.empty()) input_error("missing CONFIG\n{}", usage);
  const std::string config_path = has_config ? pos[0] : "";
  if (!resume.empty() && !weights.empty())
    input_error("--resume and --weights contradict each other: a resume restores the weights (and the solver "
                "state) from '{}'; use --weights alone to start a new run from trained weights",
                resume);
  if (weights.empty() && (!weights_map_arg.empty() || weights_strict))
    input_error("{} applies to --weights FILE, which is not given", !weights_map_arg.empty() ? "--weights-map"
                                                                                            : "--weights-strict");
  // Malformed entries are refused before the config and the net are built.
  const std::vector<WeightsMapEntry> cli_weights_map =
      weights_map_arg.empty() ? std::vector<WeightsMapEntry>{} : parse_weights_map(weights_map_arg);
  std::vector<std::string> overrides(pos.begin() + (has_config ? 1 : 0), pos.end());
  for (const auto& o : overrides)
    if (o.find('=') == std::string::npos) input_error("unexpected argument '{}' (overrides are key.path=value)", o);

  cli::set_threads(threads);
  const int launcher_rank = dist::launcher_rank();
  cli::init_logging(launcher_rank);
  if (launcher_rank != 0) spdlog::set_level(spdlog::level::warn);  // rank 0 alone logs
  SnapshotInfo resumed = resume.empty() ? SnapshotInfo{} : read_snapshot_info(resume);
  LoadedConfig cfg = resume.empty() ? load_config_file(config_path, overrides)
                                    : resume_config(resumed, config_path, overrides);
  cli::RunSettings run = cli::read_run_settings(cfg);
  Device dev = parse_device(device_arg.empty() ? run.device : device_arg);
  dist::CommOptions co;
  co.timeout_s = dist::parse_timeout_seconds("--comm-timeout", timeout_arg);
  std::unique_ptr<dist::Communicator> comm = dist::make_communicator(dev, co);
  dev = comm->device();  // NCCL: the GPU of this rank's local rank
  const bool root = comm->rank() == 0;

  SolverOptions so;
  so.net = cli::net_options(run, dev, Phase::Train);
  so.quiet = true;  // display records are printed by the Progress reporter (rank 0)
  so.reducer = comm.get();
  so.net.shapes_only = dry_run;
  so.net.skip_unused = !no_skip;
  Solver solver(cfg, so);
  if (dry_run) {
    if (root) print_net_summary(solver.train_net(), solver.test_net(), *cfg.defaults);
    return 0;
  }
  // --resume DIR writes into DIR (--resume FILE into the file's directory) unless --out says otherwise.
  namespace fs = std::filesystem;
  std::error_code fs_ec;
  const std::string resume_dir =
      resume.empty() ? "" : (fs::is_directory(resume, fs_ec) ? resume : fs::path(resume).parent_path().string());
  if (out_dir.empty()) out_dir = !resume.empty() ? (resume_dir.empty() ? "." : resume_dir) : "runs/" + run.name;
  const bool resuming_here = !resume.empty() && fs::exists(out_dir, fs_ec) &&
                             fs::equivalent(resume_dir.empty() ? "." : resume_dir, out_dir, fs_ec);
  // A new run never mixes its metrics and snapshots with an earlier run's: refused here, before
  // anything is loaded; with --force they are deleted once the weights or snapshot have loaded.
  const std::vector<std::string> earlier = root && !resuming_here ? run_files(out_dir) : std::vector<std::string>{};
  if (!earlier.empty() && !force)
    input_error("run directory '{}' already holds a run ({} files: {}{}); resume it with --resume {}, choose "
                "another --out, or pass --force to start over there (its metrics and snapshots are deleted)",
                out_dir, earlier.size(), fs::path(earlier[0]).filename().string(), earlier.size() > 1 ? ", ..." : "",
                out_dir);
  if (!weights.empty()) {
    WeightsOptions wo;
    wo.map = merge_weights_maps(run.weights_map, cli_weights_map);
    wo.strict = weights_strict;
    const WeightTransfer t = load_weights(solver.train_net(), weights, wo);
    for (const std::string& line : t.summary()) spdlog::info("weights: {}", line);
    if (t.loaded.empty() && root)
      spdlog::warn("--weights: no parameter of the net is in '{}' (another net's file? --weights-map renames layers)",
                   weights);
  }
  if (!resume.empty()) {
    restore_snapshot(solver, resumed);
    resumed.weights_file.reset();  // the files' bytes are not kept through training
    resumed.state_file.reset();
    spdlog::info("resumed from {} at iteration {}", resume, solver.iter());
    if (solver.iter() >= solver.config().max_iter)
      spdlog::warn("nothing to train: the snapshot is at iteration {} and solver.max_iter is {}; raise it (e.g. "
                   "solver.max_iter={}) to train further",
                   solver.iter(), solver.config().max_iter, solver.iter() + solver.config().max_iter);
  }
  if (!earlier.empty()) {
    spdlog::warn("--force: deleting the {} metrics and snapshot files of the earlier run in '{}'", earlier.size(),
                 out_dir);
    for (const auto& f : earlier) {
      std::error_code ec;
      fs::remove(f, ec);
      if (ec) input_error("--force: cannot delete '{}': {}", f, ec.message());
    }
  }
  // Resumed in its own directory: the metrics past the snapshot are cut (they are written again).
  std::unique_ptr<RunDirectory> rd =
      root ? std::make_unique<RunDirectory>(out_dir, cfg, resuming_here ? solver.iter() : -1) : nullptr;
  // The run's own log (train.log, every line a checked write) and its invocation record (run.jsonl).
  std::shared_ptr<RunLogSink> run_log = rd ? attach_run_log(out_dir) : nullptr;
  // Snapshots carry the resolved config, its source and this invocation (self-describing: --resume
  // and dropnet-test need nothing else).
  const std::string invocation = invocation_record(std::vector<std::string>(argv, argv + argc),
                                                   omp_get_max_threads(), dev.str(), comm->world(), solver.iter());
  const RunDescription description = describe_run(cfg, invocation);
  if (rd) rd->write_invocation(invocation);
  spdlog::info("dropnet-train: {} on {}{}, {} parameters, run directory {}", run.name, dev.str(),
               comm->world() > 1 ? fmt::format(" x {} ranks ({})", comm->world(), comm->kind()) : std::string(),
               with_commas(solver.train_net().num_params()), out_dir);
  std::unique_ptr<Progress> progress;
  if (root) {
    ProgressOptions po;
    po.max_iter = solver.config().max_iter;
    po.start_iter = solver.iter();
    po.caffe_log = caffe_log;
    po.quiet = quiet;
    po.tty = progress_mode == "tty" || (progress_mode == "auto" && stderr_is_tty());
    progress = std::make_unique<Progress>(po);
    progress->attach_to_spdlog();
  }
  // A failed metrics write (disk full, I/O error) stops the run at the next iteration boundary,
  // through should_stop so every rank stops together; a final snapshot is tried, then the run
  // exits non-zero with the write's error. (Thrown from inside the solver, it would skip both.)
  std::string write_error;
  solver.on_record = [&](const TrainRecord& r) {
    if (rd && write_error.empty()) {
      try {
        rd->write_record(r);
      } catch (const Error& e) {
        write_error = e.what();
        spdlog::error("{}: stopping the run", write_error);
      }
    }
    if (progress) progress->on_record(r);
    // The log is written too: stderr redirected to a full disk (or a failing device) is a failed
    // write like a metrics one. stdio keeps the error flag of the failed write.
    if (run_log && write_error.empty() && !run_log->error().empty()) {
      write_error = run_log->error();
      spdlog::error("{}: stopping the run", write_error);
    }
    if (root && write_error.empty() && std::ferror(stderr)) {
      write_error = "writing the log (standard error) failed: the disk may be full";
      std::clearerr(stderr);
      spdlog::error("{}: stopping the run", write_error);
    }
  };
  const SolverConfig& sc = solver.config();
  const std::string prefix = sc.snapshot_prefix.empty() ? run.name : sc.snapshot_prefix;
  auto snapshot = [&](int64_t) {  // every rank: the data positions are gathered; rank 0 writes
    std::string path = save_snapshot(solver, out_dir, prefix, sc.keep_last, &description);
    if (root) spdlog::info("snapshot: {}", path);
  };
  solver.on_snapshot = snapshot;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  dist::set_interrupt_flag(&g_signal);
  solver.should_stop = [&] {
    comm->set_context(fmt::format("iteration {}", solver.iter()));
    double stop = g_signal.load() != 0 || !write_error.empty() ? 1.0 : 0.0;
    if (comm->world() > 1) comm->allreduce_sum_double(&stop, 1);  // every rank stops at the same iteration
    dist::inject_fault_if_requested(comm->rank(), solver.iter());  // tests: the others block in a gradient bucket
    return stop > 0;
  };
  if (progress) {
    solver.should_stop = [&, check = solver.should_stop] {
      progress->tick(solver.iter());
      return check();
    };
    solver.on_test_batch = [&](int64_t done, int64_t total) { progress->testing(done, total); };
    progress->start(run.name);
  }
  try {
    solver.solve();
  } catch (const Error& e) {
    // The last record says how the run ended (a plot shows where a diverged run stopped).
    if (rd && write_error.empty()) {
      try {
        rd->write_status(e.kind() == ErrorKind::Diverged ? "diverged" : "error", solver.iter(), e.what());
      } catch (const Error& w) {
        spdlog::error("{}", w.what());
      }
    }
    throw;
  }
  if (!write_error.empty()) {
    try {
      snapshot(solver.iter());
    } catch (const Error& e) {
      spdlog::error("the final snapshot failed too: {}", e.what());
    }
    input_error("{} (run stopped at iteration {})", write_error, solver.iter());
  }
  // Stopped early = a signal reached some rank; every rank agrees on it (should_stop is all-reduced),
  // which matters because the snapshot is a collective.
  if (solver.iter() < sc.max_iter) {
    spdlog::warn("signal received (here: {}) at iteration {}: writing a snapshot and stopping", g_signal.load(),
                 solver.iter());
    snapshot(solver.iter());
    if (rd) rd->write_status("stopped", solver.iter(), fmt::format("signal {}", g_signal.load()));
    // 128 + the signal, as a shell reports it (130 for SIGINT, 143 for SIGTERM); a rank that was
    // stopped by the others' signal reports SIGINT's code.
    const int sig = g_signal.load();
    return 128 + (sig != 0 ? sig : SIGINT);
  }
  if (sc.snapshot > 0 && solver.iter() % sc.snapshot != 0) snapshot(solver.iter());
  if (rd) rd->write_status("finished", solver.iter(), "");
  if (progress) progress->done(solver.iter());
  spdlog::info("done: {} iterations", solver.iter());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cli::tune_openmp_waiting(argv);
  return cli::run_main("dropnet-train", [&] { return train_main(argc, argv); });
}
