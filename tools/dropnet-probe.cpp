// dropnet-probe: the paper's Section 5 probes of depth and width.
//
// dropnet-probe depth CONFIG [key.path=value ...] [--iterations N] [--seeds K] [--length L]
//   Trains the config with its DropIn layers (gradual mode) next to the shallow net (every DropIn
//   held at p = 0: gradual layers get `start` beyond the run, regularizing ones p = 0), for the
//   same N iterations with K seeds each, and reports the mean test accuracy of both, the std
//   over seeds as the noise estimate, and whether the added depth helps (difference > 2 x the
//   pooled std). --length sets every gradual DropIn's length (short CI schedules).
//
// dropnet-probe width CONFIG LAYER [key.path=value ...] [--iterations N] [--points P]
//                     [--from 0.9] [--to 0.1]
//   Puts a dropout on LAYER's output (or drives LAYER itself if it is a dropout) whose ratio goes
//   linearly from 0.9 to 0.1 over the run, tests at P points, and reports accuracy vs ratio; the
//   ratio where accuracy stops improving (within the test noise) gives the units needed: the kept
//   fraction (1 - ratio) x the layer's width.
//
// Common: [--test-iter B] [--batch N] [--device D] [--threads N] [--json FILE] [--verbose]
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <numeric>

#include "core/error.h"
#include "data/sources.h"
#include "optim/solver.h"
#include "tools/cli_common.h"
#include "tools/run_support.h"

using namespace dropnet;

namespace {

bool is_scalar(const YAML::Node& n) { return n.IsDefined() && n.IsScalar(); }
bool is_scalar_eq(const YAML::Node& n, const std::string& v) { return is_scalar(n) && n.Scalar() == v; }

// 10^12 iterations: a DropIn that starts there stays at p = 0 for any real run.
constexpr int64_t kNever = 1000000000000;

struct Common {
  std::string config;
  std::vector<std::string> overrides;
  int64_t iterations = 0, test_iter = 0, batch = 0;
  Device device;
  std::string engine;
  Precision precision = Precision::FP32;
  uint64_t seed = 1;
  std::string json;
};

double parse_double(const std::string& name, const std::string& v) {
  try {
    size_t pos = 0;
    double x = std::stod(v, &pos);
    if (pos != v.size()) throw std::invalid_argument(v);
    return x;
  } catch (...) {
    input_error("option --{}: expected a number, got '{}'", name, v);
  }
}

struct RunResult {
  double accuracy = 0, loss = 0, seconds = 0;
  double p_min = -1, p_max = -1;  // DropIn p at the end (-1: no DropIn layer)
};

double accuracy_of(const EvalResult& r) {
  if (std::isfinite(r.top1)) return r.top1;
  const double a = r.output("accuracy");
  if (std::isfinite(a)) return a;
  input_error("the TEST net has neither a softmax_loss layer nor an 'accuracy' output to score");
}

std::vector<std::string> probe_overrides(const Common& c) {
  std::vector<std::string> o = c.overrides;
  o.push_back(fmt::format("solver.max_iter={}", c.iterations));
  o.push_back("solver.test_interval=0");
  o.push_back(fmt::format("solver.test_iter={}", c.test_iter));
  o.push_back("solver.display=0");
  o.push_back("solver.snapshot=0");
  return o;
}

// A quiet solver of the probe's settings with `seed`.
SolverOptions solver_options(const Common& c, uint64_t seed) {
  SolverOptions so;
  so.net.device = c.device;
  so.net.seed = seed;
  so.net.source_factory = make_batch_source;
  so.net.default_engine = c.engine;
  so.net.precision = c.precision;
  so.net.batch_override = c.batch;
  so.quiet = true;
  return so;
}

// Trains `cfg` for c.iterations from scratch with `seed`, then tests on c.test_iter batches.
RunResult train_once(const LoadedConfig& cfg, const Common& c, uint64_t seed) {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Solver> s;
  {
    SolverOptions so = solver_options(c, seed);
    so.check_schedule_starts = false;  // the shallow arm starts its DropIns at kNever
    s = std::make_unique<Solver>(cfg, so);
  }
  s->step(c.iterations);
  EvalResult e = evaluate_net(*s->test_net(), c.test_iter, s->iter(), seed);
  RunResult r;
  r.accuracy = accuracy_of(e);
  r.loss = e.loss;
  RunContext ctx{Phase::Train, s->iter(), seed, 0};
  for (const auto& m : s->train_net().layer_metrics(ctx)) {
    if (m.first.size() < 2 || m.first.compare(m.first.size() - 2, 2, ".p") != 0) continue;
    r.p_min = r.p_min < 0 ? m.second : std::min(r.p_min, m.second);
    r.p_max = r.p_max < 0 ? m.second : std::max(r.p_max, m.second);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

double mean_of(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}
// Sample standard deviation (K - 1); 0 for fewer than 2 values.
double std_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

std::string p_range(const RunResult& r) {
  if (r.p_min < 0) return "no DropIn layer";
  return r.p_min == r.p_max ? fmt::format("p = {:.3g}", r.p_min) : fmt::format("p = {:.3g}..{:.3g}", r.p_min, r.p_max);
}

int depth_main(const Common& c, int64_t seeds, int64_t length) {
  if (seeds <= 0) input_error("--seeds must be > 0, got {}", seeds);
  std::vector<std::string> base = probe_overrides(c);
  // Find the DropIn layers of the expanded config.
  LoadedConfig probe = load_config_file(c.config, base);
  std::vector<std::string> deep = base, shallow = base;
  int gradual = 0, regularize = 0;
  for (const YAML::Node& l : probe.root["layers"]) {
    if (!l.IsMap() || !is_scalar_eq(l["type"], "dropin") || !is_scalar(l["name"])) continue;
    const std::string name = l["name"].Scalar();
    const bool is_reg = is_scalar_eq(l["mode"], "regularize");
    if (is_reg) {
      ++regularize;
      shallow.push_back(fmt::format("layers.{}.p=0", name));
    } else {
      ++gradual;
      if (length > 0) {
        deep.push_back(fmt::format("layers.{}.length={}", name, length));
        shallow.push_back(fmt::format("layers.{}.length={}", name, length));
      }
      shallow.push_back(fmt::format("layers.{}.start={}", name, kNever));
    }
  }
  if (gradual + regularize == 0)
    input_error("{}: the config has no dropin layer; the depth probe compares a DropIn net with its shallow net",
                c.config);
  LoadedConfig deep_cfg = load_config_file(c.config, deep);
  LoadedConfig shallow_cfg = load_config_file(c.config, shallow);
  std::fprintf(stderr, "depth probe: %s, %d DropIn layer(s), %lld iterations, %lld seed(s), test on %lld batches\n",
               c.config.c_str(), gradual + regularize, static_cast<long long>(c.iterations),
               static_cast<long long>(seeds), static_cast<long long>(c.test_iter));
  std::vector<double> acc_deep, acc_shallow;
  RunResult last_deep, last_shallow;
  for (int64_t k = 0; k < seeds; ++k) {
    const uint64_t seed = c.seed + static_cast<uint64_t>(k);
    last_deep = train_once(deep_cfg, c, seed);
    std::fprintf(stderr, "  seed %llu  deep:    accuracy %.4f  loss %.4f  (%s, %.1f s)\n",
                 static_cast<unsigned long long>(seed), last_deep.accuracy, last_deep.loss, p_range(last_deep).c_str(),
                 last_deep.seconds);
    last_shallow = train_once(shallow_cfg, c, seed);
    std::fprintf(stderr, "  seed %llu  shallow: accuracy %.4f  loss %.4f  (%s, %.1f s)\n",
                 static_cast<unsigned long long>(seed), last_shallow.accuracy, last_shallow.loss,
                 p_range(last_shallow).c_str(), last_shallow.seconds);
    acc_deep.push_back(last_deep.accuracy);
    acc_shallow.push_back(last_shallow.accuracy);
  }
  const double md = mean_of(acc_deep), ms = mean_of(acc_shallow);
  const double sd = std_of(acc_deep), ss = std_of(acc_shallow);
  const double pooled = std::sqrt((sd * sd + ss * ss) / 2.0);
  const double diff = md - ms;
  const bool have_noise = seeds >= 2;
  const bool helps = have_noise && diff > 2.0 * pooled;
  std::fflush(stderr);
  std::printf("depth probe: %s, %lld iterations, %lld seed(s)\n", c.config.c_str(),
              static_cast<long long>(c.iterations), static_cast<long long>(seeds));
  std::printf("  deep (DropIn, %s at the end): mean accuracy %.4f, std %.4f\n", p_range(last_deep).c_str(), md, sd);
  std::printf("  shallow (every DropIn at p = 0): mean accuracy %.4f, std %.4f\n", ms, ss);
  if (have_noise) {
    std::printf("  difference %+.4f, pooled std %.4f, threshold 2 x pooled std = %.4f\n", diff, pooled, 2 * pooled);
    std::printf("  verdict: %s\n", helps ? "the added depth helps (difference > 2 x pooled std)"
                                         : "no evidence that the added depth helps (difference <= 2 x pooled std)");
  } else {
    std::printf("  difference %+.4f; one seed gives no noise estimate: use --seeds 2 or more for a verdict\n", diff);
  }
  if (last_deep.p_max >= 0 && last_deep.p_min < 1.0)
    std::printf("  note: the DropIn layers had not fully grown (p < 1) at the end; try --length or a longer run\n");
  std::fflush(stdout);
  if (!c.json.empty()) {
    auto list = [](const std::vector<double>& v) {
      std::string s = "[";
      for (size_t i = 0; i < v.size(); ++i) s += fmt::format("{}{:.9g}", i ? ", " : "", v[i]);
      return s + "]";
    };
    write_file_checked(c.json, fmt::format(
        "{{\"probe\": \"depth\", \"config\": \"{}\", \"iterations\": {}, \"seeds\": {}, \"deep\": {}, \"shallow\": {}, "
        "\"deep_mean\": {:.9g}, \"shallow_mean\": {:.9g}, \"deep_std\": {:.9g}, \"shallow_std\": {:.9g}, "
        "\"pooled_std\": {:.9g}, \"difference\": {:.9g}, \"helps\": {}, \"deep_p_min\": {:.9g}, "
        "\"shallow_p_max\": {:.9g}}}\n",
        json_escape(c.config), c.iterations, seeds, list(acc_deep), list(acc_shallow), md, ms, sd, ss, pooled, diff,
        have_noise ? (helps ? "true" : "false") : "null", last_deep.p_min, last_shallow.p_max));
  }
  return 0;
}

// Finds the layer `name` in the expanded config; inserts a scheduled dropout after it (or
// schedules it if it is a dropout). Returns the name of the dropout layer and LAYER's top.
std::pair<std::string, std::string> insert_probe_dropout(LoadedConfig& cfg, const std::string& name, double from,
                                                         double to, int64_t length) {
  YAML::Node layers = cfg.root["layers"];
  YAML::Node out(YAML::NodeType::Sequence);
  std::string drop_name, top, new_top;
  bool found = false;
  std::vector<std::string> known;
  auto schedule = [&] {
    YAML::Node s(YAML::NodeType::Map);
    s["from"] = from;
    s["to"] = to;
    s["length"] = length;
    return s;
  };
  for (YAML::Node l : layers) {
    YAML::Node layer = YAML::Clone(l);
    if (found && !new_top.empty() && layer["bottom"].IsDefined()) {
      // Rewire the later consumers of LAYER's top to the dropout's output.
      YAML::Node b = layer["bottom"];
      if (is_scalar_eq(b, top)) layer["bottom"] = new_top;
      if (b.IsSequence())
        for (size_t i = 0; i < b.size(); ++i)
          if (is_scalar_eq(b[i], top)) b[i] = new_top;
    }
    const std::string lname = is_scalar(layer["name"]) ? layer["name"].Scalar() : "";
    known.push_back(lname);
    if (lname != name) {
      out.push_back(layer);
      continue;
    }
    found = true;
    YAML::Node t = layer["top"];
    top = is_scalar(t) ? t.Scalar() : (t.IsDefined() && t.IsSequence() && t.size() == 1 && is_scalar(t[0]) ? t[0].Scalar() : "");
    if (top.empty()) input_error("layer '{}' must have exactly one top for the width probe", name);
    if (is_scalar_eq(layer["type"], "dropout")) {
      layer.remove("ratio");
      layer["ratio_schedule"] = schedule();
      drop_name = name;
      out.push_back(layer);
      continue;
    }
    out.push_back(layer);
    drop_name = name + "_probe_drop";
    new_top = top + "_probe_drop";
    YAML::Node d(YAML::NodeType::Map);
    d["name"] = drop_name;
    d["type"] = "dropout";
    d["bottom"] = top;
    d["top"] = new_top;
    d["ratio_schedule"] = schedule();
    out.push_back(d);
  }
  if (!found) input_error("no layer named '{}' in {} (layers: {})", name, *cfg.file, fmt::join(known, ", "));
  cfg.root["layers"] = out;
  return {drop_name, top};
}

int width_main(const Common& c, const std::string& layer, int64_t points, double from, double to, double tol_arg) {
  if (points < 2) input_error("--points must be >= 2, got {}", points);
  if (points > c.iterations) input_error("--points {} exceeds --iterations {}", points, c.iterations);
  for (auto [key, v] : {std::pair<const char*, double>{"from", from}, {"to", to}})
    if (!(v >= 0.0 && v < 1.0)) input_error("--{} must be in [0, 1), got {}", key, v);
  LoadedConfig cfg = load_config_file(c.config, probe_overrides(c));
  const auto [drop, top] = insert_probe_dropout(cfg, layer, from, to, c.iterations);
  Solver s(cfg, solver_options(c, c.seed));
  const Shape shape = s.train_net().blob(top)->shape();
  const int64_t width = shape.ndim() >= 2 ? shape[1] : shape.count();
  std::fprintf(stderr, "width probe: %s, layer %s (%lld units), dropout ratio %.2f -> %.2f over %lld iterations\n",
               c.config.c_str(), layer.c_str(), static_cast<long long>(width), from, to,
               static_cast<long long>(c.iterations));
  struct Point {
    int64_t iter;
    double ratio, accuracy;
  };
  std::vector<Point> pts;
  int64_t samples = 0;
  for (int64_t k = 1; k <= points; ++k) {
    const int64_t target = (k * c.iterations + points / 2) / points;
    s.step(target - s.iter());
    RunContext ctx{Phase::Train, s.iter(), c.seed, 0};
    double ratio = -1;
    for (const auto& m : s.train_net().layer_metrics(ctx))
      if (m.first == drop + ".ratio") ratio = m.second;
    DN_CHECK(ratio >= 0, "the probe dropout '{}' reports no ratio", drop);
    EvalResult e = evaluate_net(*s.test_net(), c.test_iter, s.iter(), c.seed);
    samples = e.samples;
    pts.push_back({s.iter(), ratio, accuracy_of(e)});
    std::fprintf(stderr, "  iteration %lld: ratio %.3f, accuracy %.4f\n", static_cast<long long>(s.iter()), ratio,
                 pts.back().accuracy);
  }
  // Where accuracy stops improving: the first point within `tol` of every later accuracy. The
  // default tolerance is 2 x the binomial std of an accuracy measured on `samples` test images.
  double best = 0;
  for (const auto& p : pts) best = std::max(best, p.accuracy);
  const double tol = tol_arg > 0 ? tol_arg
                                 : 2.0 * std::sqrt(std::max(best * (1 - best), 1e-12) / static_cast<double>(samples));
  size_t plateau = pts.size() - 1;
  for (size_t i = 0; i < pts.size(); ++i) {
    double later = 0;
    for (size_t j = i; j < pts.size(); ++j) later = std::max(later, pts[j].accuracy);
    if (pts[i].accuracy >= later - tol) {
      plateau = i;
      break;
    }
  }
  const double ratio = pts[plateau].ratio;
  const auto units = static_cast<int64_t>(std::ceil((1.0 - ratio) * static_cast<double>(width) - 1e-9));
  std::fflush(stderr);
  std::printf("width probe: %s, layer %s (%lld units), dropout on top '%s', ratio %.2f -> %.2f over %lld iterations\n",
              c.config.c_str(), layer.c_str(), static_cast<long long>(width), top.c_str(), from, to,
              static_cast<long long>(c.iterations));
  std::printf("  %10s %8s %11s %9s\n", "iteration", "ratio", "kept units", "accuracy");
  for (const auto& p : pts)
    std::printf("  %10lld %8.3f %11.0f %9.4f\n", static_cast<long long>(p.iter), p.ratio,
                std::round((1.0 - p.ratio) * static_cast<double>(width)), p.accuracy);
  std::printf("  accuracy stops improving at ratio %.3f (every later point within %.4f%s)\n", ratio, tol,
              tol_arg > 0 ? "" : fmt::format(", 2 x the binomial std over {} test samples", samples).c_str());
  std::printf("  estimated units needed: (1 - %.3f) x %lld = %lld of %lld\n", ratio, static_cast<long long>(width),
              static_cast<long long>(units), static_cast<long long>(width));
  std::printf("  (accuracy also grows with training time: the estimate is an upper bound that tightens with longer "
              "runs)\n");
  std::fflush(stdout);
  if (!c.json.empty()) {
    std::string out = fmt::format("{{\"probe\": \"width\", \"config\": \"{}\", \"layer\": \"{}\", \"width\": {}, \"iterations\": {}, "
                     "\"tol\": {:.9g}, \"plateau_ratio\": {:.9g}, \"units_needed\": {}, \"points\": [",
                                  json_escape(c.config), json_escape(layer), width, c.iterations, tol, ratio, units);
    for (size_t i = 0; i < pts.size(); ++i)
      out += fmt::format("{}{{\"iter\": {}, \"ratio\": {:.9g}, \"accuracy\": {:.9g}}}", i ? ", " : "", pts[i].iter,
                         pts[i].ratio, pts[i].accuracy);
    out += "]}\n";
    write_file_checked(c.json, out);
  }
  return 0;
}

int probe_main(int argc, char** argv) {
  cli::Parser args("dropnet-probe",
                   "dropnet-probe depth CONFIG [key.path=value ...] [options]\n"
                   "       dropnet-probe width CONFIG LAYER [key.path=value ...] [options]",
                   "Measures what a net needs. depth: the DropIn net against its shallow self (every DropIn held at "
                   "p = 0), --seeds K runs each, final TEST accuracy (a divergence is reported, not fatal). width: "
                   "dropout on LAYER's output with its ratio going from --from to --to over the run; accuracy against "
                   "the ratio, and the units the layer needs within --tol of its best.",
                   "  depth|width     the probe\n"
                   "  CONFIG          the net description (YAML)\n"
                   "  LAYER           (width) the layer whose output is thinned\n"
                   "  key.path=value  changes a setting of CONFIG");
  Common c;
  int64_t seeds = 3, length = 0, points = 10, threads = 0;
  std::string from_arg = "0.9", to_arg = "0.1", tol_arg = "0", device_arg;
  bool verbose = false;
  args.option("--iterations", c.iterations, "N", "training iterations per run (default: 0, the solver's max_iter)");
  args.option("--seeds", seeds, "K", "depth: runs per arm, seeds 1..K");
  args.option("--length", length, "L", "depth: every DropIn's ramp length (default: 0, as configured)");
  args.option("--points", points, "P", "width: accuracy measurements along the ratio ramp");
  args.option("--from", from_arg, "R", "width: the dropout ratio at the start");
  args.option("--to", to_arg, "R", "width: the dropout ratio at the end");
  args.option("--tol", tol_arg, "T", "width: accuracy tolerance below the best for the units needed");
  args.option("--test-iter", c.test_iter, "B", "TEST batches per measurement (default: 0, the solver's test_iter, else 50)");
  args.option("--batch", c.batch, "N", "batch size (default: 0, as configured)");
  args.device(device_arg);
  args.threads(threads);
  args.option("--json", c.json, "FILE", "also write the results as JSON");
  args.flag("--verbose", verbose, "log the training runs");
  std::vector<std::string> pos = args.parse(argc, argv);
  const std::string usage = args.usage();
  const double from = parse_double("from", from_arg), to = parse_double("to", to_arg), tol = parse_double("tol", tol_arg);
  if (pos.size() < 2) input_error("missing arguments\n{}", usage);
  const std::string mode = pos[0];
  if (mode != "depth" && mode != "width") input_error("unknown probe '{}' (depth or width)\n{}", mode, usage);
  c.config = pos[1];
  size_t first_override = 2;
  std::string layer;
  if (mode == "width") {
    if (pos.size() < 3 || pos[2].find('=') != std::string::npos) input_error("width: missing LAYER\n{}", usage);
    layer = pos[2];
    first_override = 3;
  }
  c.overrides.assign(pos.begin() + static_cast<std::ptrdiff_t>(first_override), pos.end());
  for (const auto& o : c.overrides)
    if (o.find('=') == std::string::npos) input_error("unexpected argument '{}' (overrides are key.path=value)", o);
  if (c.iterations < 0 || c.test_iter < 0 || c.batch < 0 || length < 0)
    input_error("--iterations, --test-iter, --batch and --length must be > 0");

  cli::set_threads(threads);
  cli::init_logging();
  if (!verbose) spdlog::set_level(spdlog::level::warn);
  LoadedConfig cfg = load_config_file(c.config, c.overrides);
  cli::RunSettings run = cli::read_run_settings(cfg);
  const SolverConfig sc = SolverConfig::parse(cfg.node().child("solver"));
  if (c.iterations == 0) c.iterations = sc.max_iter;
  if (c.test_iter == 0) c.test_iter = sc.test_iter > 0 ? sc.test_iter : 50;
  c.device = parse_device(device_arg.empty() ? run.device : device_arg);
  if (c.device.is_cuda()) cuda_set_device(c.device.index);
  c.engine = run.engine;
  c.precision = run.precision;
  c.seed = run.seed;
  return mode == "depth" ? depth_main(c, seeds, length) : width_main(c, layer, points, from, to, tol);
}

}  // namespace

int main(int argc, char** argv) {
  cli::tune_openmp_waiting(argv);
  return cli::run_main("dropnet-probe", [&] { return probe_main(argc, argv); });
}
