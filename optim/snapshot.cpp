#include "optim/snapshot.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "core/error.h"
#include "core/fileio.h"
#include "core/safetensors.h"

namespace dropnet {

namespace fs = std::filesystem;

namespace {

constexpr const char* kWeightsFormat = "dropnet-weights-v1";
constexpr const char* kStateFormat = "dropnet-solverstate-v1";
constexpr const char* kLatest = "latest";

std::vector<int64_t> param_dims(const Net& net, const ParamRef& r) {
  return net.layer(r.layer).param_specs()[r.index].shape.dims();
}

std::string dims_str(const std::vector<int64_t>& d) { return fmt::format("[{}]", fmt::join(d, ", ")); }

// "conv1.weight[20,1,5,5];conv1.bias[20];..." — names and shapes in arena order.
std::string fingerprint(const Net& net) {
  std::string s;
  for (const ParamRef& r : net.params()) {
    if (!s.empty()) s += ';';
    s += fmt::format("{}[{}]", r.name, fmt::join(param_dims(net, r), ","));
  }
  return s;
}

struct FpEntry {
  std::string name;
  std::string shape;  // "[20,1,5,5]"
};

std::vector<FpEntry> split_fingerprint(const std::string& fp) {
  std::vector<FpEntry> out;
  size_t p = 0;
  while (p < fp.size()) {
    size_t e = fp.find(';', p);
    if (e == std::string::npos) e = fp.size();
    std::string item = fp.substr(p, e - p);
    const size_t b = item.rfind('[');
    if (b == std::string::npos) out.push_back({item, "?"});
    else out.push_back({item.substr(0, b), item.substr(b)});
    p = e + 1;
  }
  return out;
}

std::string pretty_shape(const std::string& s) {  // "[20,1,5,5]" -> "[20, 1, 5, 5]"
  std::string o;
  for (char c : s) {
    o += c;
    if (c == ',') o += ' ';
  }
  return o;
}

void check_fingerprint(const Net& net, const std::string& stored, const std::string& origin) {
  const std::string mine = fingerprint(net);
  if (mine == stored) return;
  const auto a = split_fingerprint(stored), b = split_fingerprint(mine);
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    if (i >= a.size())
      input_error("'{}' was saved from another net: it has {} parameters, the current net has {} (first extra: '{}' {})",
                  origin, a.size(), b.size(), b[i].name, pretty_shape(b[i].shape));
    if (i >= b.size())
      input_error("'{}' was saved from another net: it has {} parameters, the current net has {} (first missing: "
                  "'{}' {})",
                  origin, a.size(), b.size(), a[i].name, pretty_shape(a[i].shape));
    if (a[i].name != b[i].name || a[i].shape != b[i].shape)
      input_error("'{}' was saved from another net: parameter {} is '{}' {} in the snapshot but '{}' {} in the current "
                  "net",
                  origin, i, a[i].name, pretty_shape(a[i].shape), b[i].name, pretty_shape(b[i].shape));
  }
  input_error("'{}' was saved from another net (parameter fingerprint differs)", origin);
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

std::string dir_of(const std::string& path) {
  fs::path p = fs::path(path).parent_path();
  return p.empty() ? std::string(".") : p.string();
}

// A file name stored inside a snapshot (latest, weights): a plain name in the same directory.
void check_plain_name(const std::string& name, const std::string& origin, const std::string& what) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == ".." ||
      name.find('\0') != std::string::npos)
    input_error("'{}': {} '{}' is not a plain file name", origin, what, name);
  if (is_temp_file_name(name)) input_error("'{}': {} '{}' names a temporary file", origin, what, name);
}

std::vector<BatchSource*> test_sources(Solver& solver) {
  return solver.test_net() ? solver.test_net()->sources() : std::vector<BatchSource*>{};
}

// Param values of `net` read from a weights file (validated: names, shapes, dtypes). Returns the
// whole arena on the host with every parameter replaced; extra tensors are listed in `extras`.
std::vector<float> arena_from_weights(Net& net, const SafeTensors& w, std::vector<std::string>* extras) {
  std::vector<std::string> missing;
  std::map<std::string, bool> used;
  for (const ParamRef& r : net.params()) {
    const StTensorInfo* t = w.find(r.name);
    if (!t) {
      missing.push_back(r.name);
      continue;
    }
    used[r.name] = true;
    const std::vector<int64_t> want = param_dims(net, r);
    if (t->shape != want)
      input_error("'{}': parameter '{}' of layer '{}' has shape {} in the file but {} in the net", w.origin(), r.name,
                  net.layer(r.layer).name(), t->shape_str(), dims_str(want));
    if (t->dtype != StDtype::F32)
      input_error("'{}': parameter '{}' has dtype {}, expected F32", w.origin(), r.name, st_dtype_name(t->dtype));
  }
  if (!missing.empty())
    input_error("'{}' lacks {} parameter(s) of the net: {}", w.origin(), missing.size(), fmt::join(missing, ", "));
  if (extras)
    for (const auto& t : w.tensors())
      if (!used.count(t.name)) extras->push_back(t.name);
  std::vector<float> arena = net.param_values().to_host();
  for (const ParamRef& r : net.params()) w.copy_floats(*w.find(r.name), arena.data() + r.offset);
  return arena;
}

struct SnapshotName {
  int64_t iter;
  std::string stem;  // <prefix>_iter_<N>
};

// <prefix>_iter_<N><ext> -> N, or -1.
int64_t parse_snapshot_iter(const std::string& file, const std::string& prefix, const std::string& ext) {
  const std::string head = prefix + "_iter_";
  if (file.size() <= head.size() + ext.size() || file.compare(0, head.size(), head) != 0 || !ends_with(file, ext))
    return -1;
  const std::string num = file.substr(head.size(), file.size() - head.size() - ext.size());
  if (num.empty() || num.size() > 18) return -1;
  for (char c : num)
    if (c < '0' || c > '9') return -1;
  return std::stoll(num);
}

void prune_snapshots(const std::string& dir, const std::string& prefix, int64_t current, int64_t keep_last) {
  std::vector<int64_t> iters;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    int64_t it = parse_snapshot_iter(name, prefix, ".solverstate");
    if (it < 0) it = parse_snapshot_iter(name, prefix, ".safetensors");
    if (it >= 0 && it != current && std::find(iters.begin(), iters.end(), it) == iters.end()) iters.push_back(it);
  }
  // The snapshot just written always stays; of the others the highest iterations are kept.
  std::sort(iters.rbegin(), iters.rend());
  const size_t keep_others = static_cast<size_t>(std::max<int64_t>(keep_last - 1, 0));
  bool removed = false;
  for (size_t i = keep_others; i < iters.size(); ++i) {
    const std::string stem = (fs::path(dir) / fmt::format("{}_iter_{}", prefix, iters[i])).string();
    // The state first: a weights file without its state is inert, the reverse is not.
    fs::remove(stem + ".solverstate", ec);
    fs::remove(stem + ".safetensors", ec);
    removed = true;
  }
  if (removed) sync_directory(dir);
}

// Every rank's states, gathered through the reducer: rows[source][rank] (world == 1: own only).
std::vector<std::vector<std::vector<int64_t>>> gather_states(Solver& solver,
                                                             const std::vector<std::vector<int64_t>>& mine) {
  GradientReducer* comm = solver.reducer();
  const int world = comm ? comm->world() : 1;
  std::vector<std::vector<std::vector<int64_t>>> rows(mine.size());
  if (world == 1) {
    for (size_t i = 0; i < mine.size(); ++i) rows[i] = {mine[i]};
    return rows;
  }
  for (size_t i = 0; i < mine.size(); ++i) {
    const int64_t len = static_cast<int64_t>(mine[i].size());
    double lens[2] = {static_cast<double>(len), static_cast<double>(len) * static_cast<double>(len)};
    comm->allreduce_sum_double(lens, 2);  // equal lengths on every rank: sum = W L, sum of squares = W L^2
    DN_CHECK(lens[0] == double(world) * double(len) && lens[1] == double(world) * double(len) * double(len),
             "snapshot: data source {} has states of different lengths on different ranks", i);
    // Each rank fills its own row of a zero table; the sum is the table (positions < 2^53: exact).
    std::vector<double> table(static_cast<size_t>(world * len), 0.0);
    for (int64_t k = 0; k < len; ++k) table[static_cast<size_t>(comm->rank() * len + k)] = double(mine[i][k]);
    comm->allreduce_sum_double(table.data(), static_cast<int64_t>(table.size()));
    rows[i].assign(static_cast<size_t>(world), std::vector<int64_t>(static_cast<size_t>(len)));
    for (int r = 0; r < world; ++r)
      for (int64_t k = 0; k < len; ++k) rows[i][r][k] = static_cast<int64_t>(table[static_cast<size_t>(r * len + k)]);
  }
  return rows;
}

}  // namespace

RunDescription describe_run(const LoadedConfig& cfg, const std::string& run_record) {
  RunDescription d;
  d.config = dump_config(cfg);
  d.config_source = cfg.source;
  d.config_overrides = cfg.overrides;
  d.run = run_record;
  return d;
}

std::string save_snapshot(Solver& solver, const std::string& dir, const std::string& prefix, int64_t keep_last,
                          const RunDescription* run) {
  // Data positions first: the gather is the collective part; only rank 0 writes.
  const auto train_src = solver.train_net().sources();
  const auto test_src = test_sources(solver);
  std::vector<std::vector<int64_t>> states;
  for (BatchSource* s : train_src) states.push_back(s->state());
  for (BatchSource* s : test_src) states.push_back(s->state());
  const auto ranks = gather_states(solver, states);
  if (solver.reducer() != nullptr && solver.reducer()->rank() != 0) return "";

  if (prefix.empty() || prefix.find('/') != std::string::npos || is_temp_file_name(prefix))
    input_error("snapshot prefix '{}' must be a non-empty plain name", prefix);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir)) input_error("cannot create snapshot directory '{}': {}", dir, ec.message());
  remove_stale_temp_files(dir);

  Net& net = solver.train_net();
  const int64_t iter = solver.iter();
  const std::string stem = fmt::format("{}_iter_{}", prefix, iter);
  const std::string weights_name = stem + ".safetensors";
  const std::string state_name = stem + ".solverstate";
  const std::string weights_path = (fs::path(dir) / weights_name).string();
  const std::string state_path = (fs::path(dir) / state_name).string();

  // Weights: one tensor per parameter, its real shape, named like the ParamRef.
  const std::vector<float> arena = net.param_values().to_host();
  std::vector<StTensorOut> wt;
  for (const ParamRef& r : net.params())
    wt.push_back({r.name, StDtype::F32, param_dims(net, r), arena.data() + r.offset});
  std::map<std::string, std::string> wmeta{{"format", kWeightsFormat},
                                           {"iteration", std::to_string(iter)},
                                           {"net", net.name()}};
  if (run != nullptr) {
    wmeta["config"] = run->config;
    wmeta["config_source"] = run->config_source;
    for (size_t i = 0; i < run->config_overrides.size(); ++i)
      wmeta[fmt::format("config_override.{}", i)] = run->config_overrides[i];
    if (!run->run.empty()) wmeta["run"] = run->run;
  }
  const std::string wbytes = write_safetensors(weights_path, wt, wmeta);

  // Solver state.
  const std::vector<float> history = solver.history().to_host();
  const std::vector<float> losses = solver.loss_window();
  std::vector<StTensorOut> st;
  st.push_back({"history", StDtype::F32, {static_cast<int64_t>(history.size())}, history.data()});
  st.push_back({"loss_window", StDtype::F32, {static_cast<int64_t>(losses.size())}, losses.data()});
  // source.<phase>.<i>: rank 0's position (what a resume with another world size uses);
  // source.<phase>.<i>.ranks: (world, len), every rank's, when data parallel.
  std::vector<std::vector<int64_t>> flat(ranks.size());
  for (size_t i = 0; i < states.size(); ++i) {
    const bool train = i < train_src.size();
    const std::string name = fmt::format("source.{}.{}", train ? "train" : "test", train ? i : i - train_src.size());
    st.push_back({name, StDtype::I64, {static_cast<int64_t>(states[i].size())}, ranks[i][0].data()});
    if (ranks[i].size() > 1) {
      for (const auto& row : ranks[i]) flat[i].insert(flat[i].end(), row.begin(), row.end());
      st.push_back({name + ".ranks", StDtype::I64,
                    {static_cast<int64_t>(ranks[i].size()), static_cast<int64_t>(states[i].size())}, flat[i].data()});
    }
  }
  std::map<std::string, std::string> smeta{
      {"format", kStateFormat},
      {"iteration", std::to_string(iter)},
      {"seed", std::to_string(solver.seed())},
      {"params", fingerprint(net)},
      {"arena_floats", std::to_string(net.num_param_floats())},
      {"train_sources", std::to_string(train_src.size())},
      {"test_sources", std::to_string(test_src.size())},
      {"weights", weights_name},
      {"weights_bytes", std::to_string(wbytes.size())},
      {"weights_crc32", crc32_hex(crc32_bytes(wbytes))},
  };
  write_safetensors(state_path, st, smeta);
  // Written last: `latest` never names a state whose files are not complete on disk.
  write_file_atomic((fs::path(dir) / kLatest).string(), state_name + "\n");
  if (keep_last > 0) prune_snapshots(dir, prefix, iter, keep_last);
  return weights_path;
}

namespace {

void restore_state_file(Solver& solver, const std::string& state_path);

// The solver states in `dir`, newest first: "<prefix>_iter_<N>.solverstate" (prefix: any).
std::vector<std::pair<int64_t, std::string>> states_in(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (is_temp_file_name(name) || !ends_with(name, ".solverstate")) continue;
    const size_t at = name.rfind("_iter_");
    if (at == std::string::npos || at == 0) continue;
    const int64_t it = parse_snapshot_iter(name, name.substr(0, at), ".solverstate");
    if (it >= 0) out.emplace_back(it, e.path().string());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

}  // namespace

namespace {

// attempt(dir) reads the directory's latest snapshot; when that is refused (an input error: corrupt,
// missing files), attempt(state) for the newest older states in `dir`, with a warning naming the
// refused one ("<tag>: ... <done> the older intact snapshot ..."). Attempts validate before they
// change anything, so a refused one leaves no trace.
template <typename Attempt>
void newest_intact(const std::string& dir, const char* tag, const char* done, Attempt&& attempt) {
  try {
    attempt(dir);
    return;
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Input) throw;
    const std::string first_error = e.what();
    int tried = 0;  // a few: a cause shared by all (another seed, another net) need not read them all
    for (const auto& [iter, state] : states_in(dir)) {
      if (first_error.find("'" + state + "'") != std::string::npos) continue;  // the one just refused
      if (++tried > 3) break;
      try {
        attempt(state);
      } catch (const Error& older) {
        if (older.kind() != ErrorKind::Input) throw;
        spdlog::warn("{}: '{}' is not usable either: {}", tag, state, older.what());
        continue;
      }
      spdlog::warn("{}: the newest snapshot in '{}' is refused ({}); {} the older intact snapshot '{}' (iteration {})",
                   tag, dir, first_error, done, state, iter);
      return;
    }
    input_error("{} (and no older snapshot in '{}' is intact{})", first_error, dir,
                tried > 3 ? ": the 3 newest were tried" : "");
  }
}

}  // namespace

void restore_snapshot(Solver& solver, const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    // An explicit file: exactly that snapshot (no silent substitution).
    try {
      restore_state_file(solver, path);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::Input) throw;
      input_error("{} (pass the run directory to --resume to fall back to its newest intact snapshot)", e.what());
    }
    return;
  }
  // A run directory: its `latest`, or, when that is corrupt or missing its files, the newest intact
  // older snapshot. Restores validate everything before touching the solver.
  newest_intact(path, "resume", "resumed from", [&](const std::string& p) { restore_state_file(solver, p); });
}

namespace {

// The solver-state file of a run directory (its `latest`), a weights file (the state beside it) or
// a state file.
std::string state_file_of(const std::string& path) {
  std::string state_path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const std::string latest_path = (fs::path(path) / kLatest).string();
    if (!fs::exists(latest_path, ec))
      input_error("snapshot directory '{}' has no '{}' file (no snapshot was completed there)", path, kLatest);
    std::string name = read_file(latest_path, "snapshot pointer");
    while (!name.empty() && (name.back() == '\n' || name.back() == '\r' || name.back() == ' ')) name.pop_back();
    check_plain_name(name, latest_path, "the snapshot");
    if (!ends_with(name, ".solverstate"))
      input_error("'{}' names '{}', which is not a .solverstate file", latest_path, name);
    state_path = (fs::path(path) / name).string();
  } else if (ends_with(path, ".safetensors")) {
    state_path = path.substr(0, path.size() - std::string(".safetensors").size()) + ".solverstate";
    if (!fs::exists(state_path, ec))
      input_error("'{}' is a weights file; resuming needs its solver state '{}' beside it, which does not exist "
                  "(use --weights to only initialize the parameters)",
                  path, state_path);
  } else {
    state_path = path;
  }
  if (!fs::exists(state_path, ec)) input_error("snapshot '{}' does not exist", state_path);
  return state_path;
}

// A solver state read and validated as a state (format, checksums).
SafeTensors read_state_file(const std::string& state_path) {
  SafeTensors s = SafeTensors::read(state_path);
  auto fmt_it = s.metadata().find("format");
  if (fmt_it != s.metadata().end() && fmt_it->second == kWeightsFormat)
    input_error("'{}' is a weights file (format {}), not a solver state: resume from the .solverstate file or the "
                "run directory, or load it with --weights",
                state_path, kWeightsFormat);
  s.verify_checksums(true);
  if (fmt_it == s.metadata().end() || fmt_it->second != kStateFormat)
    input_error("'{}' is not a dropnet solver state (format '{}', expected '{}')", state_path,
                fmt_it == s.metadata().end() ? "" : fmt_it->second, kStateFormat);
  return s;
}

// The weights file a solver state was written with: the exact file (size and crc32 as the state
// recorded them), checksums verified, a dropnet weights file.
SafeTensors read_state_weights(const SafeTensors& s, const std::string& state_path) {
  std::error_code ec;
  const std::string wname = s.meta("weights");
  check_plain_name(wname, state_path, "the weights file");
  const std::string wpath = (fs::path(dir_of(state_path)) / wname).string();
  if (!fs::exists(wpath, ec))
    input_error("'{}': its weights file '{}' does not exist", state_path, wpath);
  std::string wbytes = read_file(wpath, "weights file");
  if (static_cast<int64_t>(wbytes.size()) != s.meta_int("weights_bytes") ||
      crc32_hex(crc32_bytes(wbytes)) != s.meta("weights_crc32"))
    input_error("weights file '{}' does not match the solver state '{}' ({} bytes, crc32 {}; the state expects {} "
                "bytes, crc32 {}): corrupt or from another snapshot",
                wpath, state_path, wbytes.size(), crc32_hex(crc32_bytes(wbytes)), s.meta_int("weights_bytes"),
                s.meta("weights_crc32"));
  SafeTensors w = SafeTensors::parse(std::move(wbytes), wpath);
  w.verify_checksums(true);
  auto wf = w.metadata().find("format");
  if (wf == w.metadata().end() || wf->second != kWeightsFormat)
    input_error("'{}' is not a dropnet weights file (format '{}')", wpath, wf == w.metadata().end() ? "" : wf->second);
  return w;
}

// Restores from a state and its weights, read and verified (read_state_file, read_state_weights).
// Everything is validated before the solver is touched.
void restore_parsed(Solver& solver, const SafeTensors& s, const std::string& state_path, const SafeTensors& w) {
  Net& net = solver.train_net();
  check_fingerprint(net, s.meta("params"), state_path);
  const int64_t seed = s.meta_int("seed");
  if (static_cast<uint64_t>(seed) != solver.seed())
    input_error("'{}' was trained with seed {} but the current run uses seed {}: dropout/dropin masks and data order "
                "would differ; set the same seed to resume",
                state_path, static_cast<uint64_t>(seed), solver.seed());
  const int64_t iter = s.meta_int("iteration");
  if (iter < 0) input_error("'{}': negative iteration {}", state_path, iter);
  if (s.meta_int("arena_floats") != net.num_param_floats())
    input_error("'{}': parameter arena of {} floats, the current net has {}", state_path, s.meta_int("arena_floats"),
                net.num_param_floats());

  const StTensorInfo* hist = s.find("history");
  if (!hist || hist->dtype != StDtype::F32 || hist->shape.size() != 1 || hist->shape[0] != solver.history().count())
    input_error("'{}': the momentum history is missing or has the wrong size (expected F32 [{}])", state_path,
                solver.history().count());
  const StTensorInfo* lw = s.find("loss_window");
  if (!lw || lw->dtype != StDtype::F32 || lw->shape.size() != 1)
    input_error("'{}': the loss window is missing or malformed", state_path);
  std::vector<float> losses = s.floats(*lw);
  const int64_t avg = solver.config().average_loss;
  if (static_cast<int64_t>(losses.size()) > avg) losses.erase(losses.begin(), losses.end() - avg);

  const auto train_src = net.sources();
  const auto test_src = test_sources(solver);
  if (s.meta_int("train_sources") != static_cast<int64_t>(train_src.size()) ||
      s.meta_int("test_sources") != static_cast<int64_t>(test_src.size()))
    input_error("'{}' holds {} TRAIN and {} TEST data sources, the current nets have {} and {}", state_path,
                s.meta_int("train_sources"), s.meta_int("test_sources"), train_src.size(), test_src.size());
  const int rank = solver.reducer() ? solver.reducer()->rank() : 0;
  const int world = solver.reducer() ? solver.reducer()->world() : 1;
  std::vector<std::pair<BatchSource*, std::vector<int64_t>>> src_states;
  for (size_t i = 0; i < train_src.size() + test_src.size(); ++i) {
    const bool train = i < train_src.size();
    const std::string name =
        fmt::format("source.{}.{}", train ? "train" : "test", train ? i : i - train_src.size());
    const StTensorInfo* t = s.find(name);
    if (!t || t->dtype != StDtype::I64 || t->shape.size() != 1)
      input_error("'{}': data source state '{}' is missing or malformed", state_path, name);
    std::vector<int64_t> state = s.int64s(*t);
    // This rank's own position when the snapshot was written by as many ranks.
    const StTensorInfo* per_rank = s.find(name + ".ranks");
    if (per_rank != nullptr && (per_rank->dtype != StDtype::I64 || per_rank->shape.size() != 2 ||
                                per_rank->shape[1] != static_cast<int64_t>(state.size())))
      input_error("'{}': '{}.ranks' is malformed (expected I64 [world, {}])", state_path, name, state.size());
    if (per_rank != nullptr && per_rank->shape[0] == world) {
      const std::vector<int64_t> all = s.int64s(*per_rank);
      state.assign(all.begin() + rank * static_cast<int64_t>(state.size()),
                   all.begin() + (rank + 1) * static_cast<int64_t>(state.size()));
    }
    src_states.emplace_back(train ? train_src[i] : test_src[i - train_src.size()], std::move(state));
  }

  // The weights: the exact file the state was written with.
  const std::string& wpath = w.origin();
  std::vector<std::string> extras;
  std::vector<float> arena = arena_from_weights(net, w, &extras);
  if (!extras.empty())
    input_error("'{}' holds tensors the net does not have: {}", wpath, fmt::join(extras, ", "));
  std::vector<float> history = s.floats(*hist);

  // Commit. Source restores are the only step that may still refuse (their own validation); undo
  // them all if one does, so the solver is never half-restored.
  std::vector<std::vector<int64_t>> backup;
  for (auto& [src, st] : src_states) backup.push_back(src->state());
  size_t done = 0;
  try {
    for (; done < src_states.size(); ++done) src_states[done].first->restore(src_states[done].second);
  } catch (...) {
    for (size_t i = 0; i < done; ++i) src_states[i].first->restore(backup[i]);
    throw;
  }
  net.param_values().from_host(arena);
  solver.history().from_host(history);
  solver.set_iter(iter);
  solver.restore_loss_window(losses);
}

void restore_state_file(Solver& solver, const std::string& path) {
  const std::string state_path = state_file_of(path);
  const SafeTensors s = read_state_file(state_path);
  restore_parsed(solver, s, state_path, read_state_weights(s, state_path));
}

}  // namespace

namespace {

// A weights file to initialize from: any safetensors file (PyTorch's too), checksums verified
// where present, a solver state refused with the way out.
SafeTensors read_weights_file(const std::string& path) {
  SafeTensors w = SafeTensors::read(path);
  auto f = w.metadata().find("format");
  if (f != w.metadata().end() && f->second == kStateFormat)
    input_error("'{}' is a solver state, not a weights file: pass the .safetensors file beside it (or use --resume)",
                path);
  w.verify_checksums(false);
  return w;
}

// The run description in a weights file's metadata (empty fields where it has none).
RunDescription run_description(const SafeTensors& w) {
  RunDescription d;
  const auto& m = w.metadata();
  auto get = [&](const std::string& k) {
    auto it = m.find(k);
    return it == m.end() ? std::string() : it->second;
  };
  d.config = get("config");
  d.config_source = get("config_source");
  d.run = get("run");
  for (size_t i = 0;; ++i) {
    auto it = m.find(fmt::format("config_override.{}", i));
    if (it == m.end()) break;
    d.config_overrides.push_back(it->second);
  }
  return d;
}

SnapshotInfo info_of_weights(const SafeTensors& w, const std::string& state_path) {
  SnapshotInfo info;
  info.weights_path = w.origin();
  info.state_path = state_path;
  info.iteration = w.metadata().count("iteration") ? w.meta_int("iteration") : 0;
  if (info.iteration < 0) input_error("'{}': negative iteration {}", w.origin(), info.iteration);
  info.run = run_description(w);
  return info;
}

SnapshotInfo info_of_state(const std::string& path) {
  const std::string state_path = state_file_of(path);
  auto s = std::make_shared<SafeTensors>(read_state_file(state_path));
  auto w = std::make_shared<SafeTensors>(read_state_weights(*s, state_path));
  SnapshotInfo info = info_of_weights(*w, state_path);
  info.weights_file = std::move(w);
  info.state_file = std::move(s);
  return info;
}

}  // namespace

SnapshotInfo read_snapshot_info(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    SnapshotInfo info;
    newest_intact(path, "snapshot", "using", [&](const std::string& p) { info = info_of_state(p); });
    return info;
  }
  if (ends_with(path, ".solverstate")) return info_of_state(path);
  if (!fs::exists(path, ec)) input_error("snapshot '{}' does not exist", path);
  auto w = std::make_shared<SafeTensors>(read_weights_file(path));  // a state is refused with the way out
  std::string state_path = path.substr(0, path.size() - (ends_with(path, ".safetensors") ? 12 : 0)) + ".solverstate";
  if (!ends_with(path, ".safetensors") || !fs::exists(state_path, ec)) state_path.clear();
  SnapshotInfo info = info_of_weights(*w, state_path);
  info.weights_file = std::move(w);
  return info;
}

void restore_snapshot(Solver& solver, const SnapshotInfo& info) {
  // A weights file named directly: its state (and the weights it names) are read by the restore.
  if (!info.state_file || !info.weights_file) return restore_snapshot(solver, info.weights_path);
  restore_parsed(solver, *info.state_file, info.state_path, *info.weights_file);
}

LoadedConfig snapshot_config(const SnapshotInfo& info, const std::vector<std::string>& overrides) {
  if (!info.has_config())
    input_error("'{}' does not carry the config it was trained with (written by an older dropnet or another tool): "
                "give the config file",
                info.weights_path);
  std::vector<std::string> all = info.run.config_overrides;
  all.insert(all.end(), overrides.begin(), overrides.end());
  return load_config_text(info.run.config_source, info.weights_path + " (its config)", all);
}

void load_weights(Net& net, const std::string& path) { load_weights(net, read_weights_file(path)); }

void load_weights(Net& net, const SafeTensors& w) {
  const std::string& path = w.origin();
  std::vector<std::string> extras;
  std::vector<float> arena = arena_from_weights(net, w, &extras);
  if (!extras.empty())
    spdlog::warn("load_weights: '{}' has {} tensor(s) the net does not use (ignored): {}", path, extras.size(),
                 fmt::join(extras, ", "));
  net.param_values().from_host(arena);
  spdlog::info("loaded {} parameters from '{}'", net.params().size(), path);
}

namespace {

// "conv1_1.weight" -> {"conv1_1", "weight"}: a parameter's own name ("weight", "bias") has no '.',
// a layer name may. A foreign tensor name without '.' is a layer of its own.
std::pair<std::string, std::string> split_param(const std::string& name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return {name, ""};
  return {name.substr(0, dot), name.substr(dot + 1)};
}

std::string count_of(size_t n, const char* one, const char* many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

// "a, b, c, ... (+7 more)": the first `max` items.
std::string clipped_list(const std::vector<std::string>& items, size_t max) {
  if (items.empty()) return "none";
  std::string s;
  for (size_t i = 0; i < items.size() && i < max; ++i) s += (i > 0 ? ", " : "") + clip_text(items[i], 80);
  if (items.size() > max) s += fmt::format(", ... (+{} more)", items.size() - max);
  return s;
}

// Indices grouped by a key, the keys in order of first appearance.
struct Groups {
  std::vector<std::string> keys;
  std::map<std::string, std::vector<size_t>> items;
  void add(const std::string& key, size_t i) {
    auto [it, first] = items.try_emplace(key);
    if (first) keys.push_back(key);
    it->second.push_back(i);
  }
};

}  // namespace

WeightTransfer load_weights(Net& net, const std::string& path, const WeightsOptions& opts) {
  SafeTensors w = read_weights_file(path);
  WeightTransfer out;
  out.path = path;

  std::vector<std::string> file_layers;  // in file order
  std::set<std::string> in_file;
  for (const StTensorInfo& t : w.tensors()) {
    const std::string layer = split_param(t.name).first;
    if (in_file.insert(layer).second) file_layers.push_back(layer);
  }
  std::vector<std::string> net_layers;  // those with parameters, in net order
  for (const ParamRef& r : net.params())
    if (net_layers.empty() || net_layers.back() != net.layer(r.layer).name())
      net_layers.push_back(net.layer(r.layer).name());

  // The map, checked whole before anything is read: a misspelt name is an error, never a layer
  // silently left at its filler init.
  std::map<std::string, const WeightsMapEntry*> source_of;  // net layer -> its entry
  for (const WeightsMapEntry& e : opts.map) {
    const int li = net.find_layer(e.net_layer);
    const bool net_has = li >= 0 && !net.layer(li).param_specs().empty();
    if (!net_has || !in_file.count(e.file_layer)) {
      // The usual slip: the names the other way round (an entry is FILE_LAYER=NET_LAYER).
      const int rev = net.find_layer(e.file_layer);
      const bool reversed = in_file.count(e.net_layer) && rev >= 0 && !net.layer(rev).param_specs().empty();
      const std::string hint =
          reversed ? fmt::format("; the file has '{}' and the net has '{}': the file's layer comes first "
                                 "(FILE_LAYER=NET_LAYER), reversed?",
                                 clip_text(e.net_layer, 60), clip_text(e.file_layer, 60))
                   : "";
      if (li >= 0 && !net_has)
        input_error("{}: the net's layer '{}' has no parameters to load{}", e.origin, clip_text(e.net_layer, 60), hint);
      if (li < 0)
        input_error("{}: the net has no layer '{}' (its layers with parameters: {}){}", e.origin,
                    clip_text(e.net_layer, 60), clipped_list(net_layers, 12), hint);
      input_error("{}: the weights file '{}' has no layer '{}' (its layers: {}){}", e.origin, path,
                  clip_text(e.file_layer, 60), clipped_list(file_layers, 12), hint);
    }
    auto [it, first] = source_of.emplace(e.net_layer, &e);
    if (!first)
      input_error("{}: the net's layer '{}' is already mapped by {} (a layer takes its parameters from one file "
                  "layer)",
                  e.origin, clip_text(e.net_layer, 60), it->second->origin);
  }

  // Each net parameter reads the tensor <source layer>.<its own name>, the source layer being
  // its layer's own name unless the map says otherwise. Validated whole before any is copied.
  std::set<std::string> used;
  std::vector<std::pair<const ParamRef*, const StTensorInfo*>> takes;
  for (const ParamRef& r : net.params()) {
    const Layer& l = net.layer(r.layer);
    const auto m = source_of.find(l.name());
    const std::string src =
        (m == source_of.end() ? l.name() : m->second->file_layer) + "." + l.param_specs()[r.index].name;
    const StTensorInfo* t = w.find(src);
    if (t == nullptr) {
      out.fresh.push_back(r.name);
      continue;
    }
    const std::vector<int64_t> want = param_dims(net, r);
    if (t->shape != want)
      input_error("'{}': the file's '{}' has shape {} but the net's '{}' has shape {}{}", path, src, t->shape_str(),
                  r.name, dims_str(want),
                  m != source_of.end()
                      ? fmt::format(" (mapped by {})", m->second->origin)
                      : fmt::format(" (to start layer '{}' from its filler instead, give it another name in the net)",
                                    l.name()));
    if (t->dtype != StDtype::F32)
      input_error("'{}': tensor '{}' has dtype {}, expected F32", path, src, st_dtype_name(t->dtype));
    used.insert(src);
    out.loaded.push_back(r.name);
    out.sources.push_back(src);
    takes.emplace_back(&r, t);
  }
  for (const StTensorInfo& t : w.tensors())
    if (!used.count(t.name)) out.unused.push_back(t.name);

  if (opts.strict && !out.fresh.empty())
    input_error("'{}' lacks {} of the net (strict loading: every parameter of the net comes from the file): {}", path,
                count_of(out.fresh.size(), "parameter", "parameters"), clipped_list(out.fresh, 20));
  if (opts.strict && !out.unused.empty())
    input_error("'{}' holds {} the net does not take (strict loading: every tensor of the file is used): {}", path,
                count_of(out.unused.size(), "tensor", "tensors"), clipped_list(out.unused, 20));

  std::vector<float> arena = net.param_values().to_host();
  for (const auto& [r, t] : takes) w.copy_floats(*t, arena.data() + r->offset);
  net.param_values().from_host(arena);
  return out;
}

std::vector<std::string> WeightTransfer::summary(size_t max_groups) const {
  // A layer whose parameters all fall in one list is named once; one split across lists (a file
  // without the biases) is named by parameter.
  std::set<std::string> loaded_layers, fresh_layers, source_layers;
  for (const auto& n : loaded) loaded_layers.insert(split_param(n).first);
  for (const auto& n : fresh) fresh_layers.insert(split_param(n).first);
  for (const auto& n : sources) source_layers.insert(split_param(n).first);

  Groups lg, fg, ug;
  for (size_t i = 0; i < loaded.size(); ++i)
    lg.add(split_param(loaded[i]).first + '\n' + split_param(sources[i]).first, i);
  for (size_t i = 0; i < fresh.size(); ++i) fg.add(split_param(fresh[i]).first, i);
  for (size_t i = 0; i < unused.size(); ++i) ug.add(split_param(unused[i]).first, i);

  std::vector<std::string> li;
  for (const std::string& key : lg.keys) {
    const std::string layer = key.substr(0, key.find('\n')), from = key.substr(key.find('\n') + 1);
    if (!fresh_layers.count(layer)) {
      li.push_back(from == layer ? layer : layer + " <- " + from);
      continue;
    }
    std::vector<std::string> ps;
    for (size_t i : lg.items.at(key)) ps.push_back(from == layer ? loaded[i] : loaded[i] + " <- " + sources[i]);
    li.push_back(fmt::format("{}", fmt::join(ps, ", ")));
  }
  auto grouped = [](const Groups& g, const std::vector<std::string>& names, const std::set<std::string>& split) {
    std::vector<std::string> out;
    for (const std::string& layer : g.keys) {
      if (!split.count(layer)) {
        out.push_back(layer);
        continue;
      }
      std::vector<std::string> ps;
      for (size_t i : g.items.at(layer)) ps.push_back(names[i]);
      out.push_back(fmt::format("{}", fmt::join(ps, ", ")));
    }
    return out;
  };
  // "3 parameters of 2 layers: a, b"; "none".
  auto counted = [&](size_t n, const char* one, const char* many, size_t layers,
                     const std::vector<std::string>& items) {
    if (n == 0) return std::string("none");
    return fmt::format("{} of {}: {}", count_of(n, one, many), count_of(layers, "layer", "layers"),
                       clipped_list(items, max_groups));
  };
  return {
      fmt::format("loaded from '{}': {}", path,
                  counted(loaded.size(), "parameter", "parameters", loaded_layers.size(), li)),
      "new (left at their filler init): " +
          counted(fresh.size(), "parameter", "parameters", fg.keys.size(), grouped(fg, fresh, loaded_layers)),
      "unused in the file: " +
          counted(unused.size(), "tensor", "tensors", ug.keys.size(), grouped(ug, unused, source_layers)),
  };
}

std::vector<WeightsMapEntry> parse_weights_map(const std::string& text, const std::string& option) {
  constexpr const char* kForm = "expected FILE_LAYER=NET_LAYER[,FILE_LAYER=NET_LAYER...], e.g. conv1=conv1_1";
  if (trim(text, " \t").empty()) input_error("{}: empty map ({})", option, kForm);
  std::vector<WeightsMapEntry> out;
  size_t p = 0;
  while (true) {
    size_t e = text.find(',', p);
    if (e == std::string::npos) e = text.size();
    const std::string item = trim(text.substr(p, e - p), " \t");
    if (item.empty()) input_error("{} '{}': an empty entry ({})", option, clip_text(text), kForm);
    const size_t eq = item.find('=');
    if (eq == std::string::npos) input_error("{}: entry '{}' has no '=' ({})", option, clip_text(item), kForm);
    const std::string from = trim(item.substr(0, eq), " \t"), to = trim(item.substr(eq + 1), " \t");
    if (to.find('=') != std::string::npos)
      input_error("{}: entry '{}' has more than one '=' ({})", option, clip_text(item), kForm);
    if (from.empty() || to.empty())
      input_error("{}: entry '{}' has an empty {} name ({})", option, clip_text(item),
                  from.empty() ? "file layer" : "net layer", kForm);
    for (const WeightsMapEntry& prev : out)
      if (prev.net_layer == to)
        input_error("{}: the net's layer '{}' is the target of two entries, '{}={}' and '{}' (a layer takes its "
                    "parameters from one file layer)",
                    option, clip_text(to, 60), clip_text(prev.file_layer, 60), clip_text(to, 60), clip_text(item));
    out.push_back({from, to, fmt::format("{} '{}={}'", option, clip_text(from, 60), clip_text(to, 60))});
    if (e == text.size()) break;
    p = e + 1;
  }
  return out;
}

std::vector<WeightsMapEntry> merge_weights_maps(const std::vector<WeightsMapEntry>& base,
                                                const std::vector<WeightsMapEntry>& over) {
  std::vector<WeightsMapEntry> out;
  for (const WeightsMapEntry& b : base) {
    const bool replaced = std::any_of(over.begin(), over.end(), [&](const WeightsMapEntry& o) {
      return o.file_layer == b.file_layer || o.net_layer == b.net_layer;
    });
    if (!replaced) out.push_back(b);
  }
  out.insert(out.end(), over.begin(), over.end());
  return out;
}

}  // namespace dropnet
