#include "tools/run_support.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "core/error.h"
#include "data/source_kinds.h"
#include "kernels/softmax_loss.h"
#include "tools/cli_common.h"

namespace dropnet {

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      o += fmt::format("\\u{:04x}", c);
      continue;
    }
    o += c;
  }
  return o;
}

std::vector<std::string> run_files(const std::string& dir) {
  namespace fs = std::filesystem;
  static const std::regex kSnapshot(R"(.+_iter_[0-9]+\.(safetensors|solverstate))");
  std::vector<std::string> out;
  // A metrics.csv, `latest`, train.log or run.jsonl alone (a run that failed before its first
  // record) is no run; they go with one.
  bool holds_run = false;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code size_ec;
    const bool defining = (name == "metrics.jsonl" && fs::file_size(it->path(), size_ec) > 0 && !size_ec) ||
                          std::regex_match(name, kSnapshot);
    if (defining || name == "metrics.csv" || name == "latest" || name == "train.log" || name == "run.jsonl")
      out.push_back(it->path().string());
    holds_run = holds_run || defining;
  }
  if (!holds_run) return {};
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

// The records of a metrics file before iteration `before`: metrics.jsonl lines carry "iter": N,
// metrics.csv rows kind,iter,name,value (its header stays). A torn last line is dropped.
void cut_back_metrics(const std::string& path, int64_t before, bool csv) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  bool first = true;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline: a torn record
    long long iter = -1;
    if (csv) {
      if (first) {
        first = false;
        kept += line + "\n";
        continue;
      }
      const size_t c = line.find(',');
      if (c != std::string::npos) iter = std::atoll(line.c_str() + c + 1);
    } else {
      const size_t at = line.find("\"iter\": ");
      if (at != std::string::npos) iter = std::atoll(line.c_str() + at + 8);
    }
    if (iter >= 0 && iter < before) kept += line + "\n";
  }
  write_file_atomic(path, kept);
}

}  // namespace

RunDirectory::RunDirectory(const std::string& dir, const LoadedConfig& cfg, int64_t resumed_at) : dir_(dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) input_error("cannot create run directory '{}': {}", dir, ec.message());
  if (resumed_at >= 0) {
    cut_back_metrics(dir + "/metrics.jsonl", resumed_at, false);
    cut_back_metrics(dir + "/metrics.csv", resumed_at, true);
  }
  write_file_checked(dir + "/config.yaml", "# resolved config (repeat blocks expanded, overrides applied) from " +
                                              *cfg.file + "\n" + dump_config(cfg));
  jsonl_ = std::make_unique<AppendFile>(dir + "/metrics.jsonl");
  csv_ = std::make_unique<AppendFile>(dir + "/metrics.csv");
}

void RunDirectory::write_record(const TrainRecord& r) {
  std::string line = fmt::format("{{\"kind\": \"{}\", \"iter\": {}", r.kind, r.iter);
  for (const auto& kv : r.values) {
    if (std::isfinite(kv.second)) line += fmt::format(", \"{}\": {:.9g}", json_escape(kv.first), kv.second);
    else line += fmt::format(", \"{}\": null", json_escape(kv.first));
  }
  jsonl_->append(line + "}\n");
  // CSV: kind, iter, name, value (long format: columns differ between train and test rows).
  std::string rows = csv_->size() == 0 ? "kind,iter,name,value\n" : "";
  for (const auto& kv : r.values) rows += fmt::format("{},{},{},{:.9g}\n", r.kind, r.iter, kv.first, kv.second);
  csv_->append(rows);
}

std::string RunLogSink::error() const {
  std::lock_guard<std::mutex> l(error_mu_);
  return error_;
}

void RunLogSink::sink_it_(const spdlog::details::log_msg& msg) {
  {
    std::lock_guard<std::mutex> l(error_mu_);
    if (!error_.empty()) return;  // the first failure stops the log; the run stops on it
  }
  spdlog::memory_buf_t buf;
  formatter_->format(msg, buf);
  try {
    file_.append(std::string_view(buf.data(), buf.size()));
  } catch (const Error& e) {
    std::lock_guard<std::mutex> l(error_mu_);
    error_ = e.what();
  }
}

std::shared_ptr<RunLogSink> attach_run_log(const std::string& dir) {
  auto sink = std::make_shared<RunLogSink>(dir + "/train.log");
  sink->set_pattern("%Y-%m-%d %H:%M:%S.%e %L %v");
  spdlog::default_logger()->sinks().push_back(sink);
  return sink;
}

namespace {

std::string listed(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "\n  " + l;
  return out;
}

}  // namespace

LoadedConfig resume_config(const SnapshotInfo& snapshot, const std::string& config_path,
                           const std::vector<std::string>& overrides) {
  if (!snapshot.has_config()) {
    if (config_path.empty())
      input_error("'{}' does not carry the config it was trained with (a snapshot of an older dropnet): give the "
                  "CONFIG file as well",
                  snapshot.weights_path);
    spdlog::warn("resume: '{}' does not carry its config (an older dropnet); trusting that '{}' is the one it was "
                 "trained with",
                 snapshot.weights_path, config_path);
    return load_config_file(config_path, overrides);
  }
  LoadedConfig own = snapshot_config(snapshot, overrides);
  if (!config_path.empty()) {
    LoadedConfig given = load_config_file(config_path, overrides);
    const std::vector<std::string> diff = config_differences(own, given);
    if (!diff.empty())
      input_error("--resume: '{}' is not the config the run was trained with (it is stored in '{}'); they differ "
                  "in (the run's value vs the file's):{}\nleave CONFIG out to resume with the run's own config, and "
                  "change a setting explicitly with key.path=value (e.g. solver.max_iter=20000)",
                  config_path, snapshot.weights_path, listed(diff));
    return given;  // the same config; its file:line in messages
  }
  if (!overrides.empty()) {
    const std::vector<std::string> changed = config_differences(snapshot_config(snapshot), own, 20);
    if (changed.empty())
      spdlog::info("resume: the command line's overrides change nothing in the run's config");
    else
      spdlog::info("resume: the command line changes the run's config (the run's value vs the new one):{}",
                   listed(changed));
  }
  return own;
}

LoadedConfig evaluation_config(const SnapshotInfo& snapshot, const std::string& config_path,
                               const std::vector<std::string>& overrides) {
  if (config_path.empty()) return snapshot_config(snapshot, overrides);
  LoadedConfig given = load_config_file(config_path, overrides);
  if (snapshot.has_config()) {
    const std::vector<std::string> diff =
        config_differences(snapshot_config(snapshot, overrides), given, 12, "layers");
    if (!diff.empty())
      input_error("'{}' describes another net than the one '{}' was trained with (the run's value vs the file's):{}"
                  "\nevaluate with the run's own config: give the snapshot or run directory instead of CONFIG "
                  "(overrides such as data.test.images=... still apply)",
                  config_path, snapshot.weights_path, listed(diff));
  }
  return given;
}

std::string invocation_record(const std::vector<std::string>& argv, int threads, const std::string& device, int world,
                              int64_t start_iter) {
  std::string cmd = "[";
  for (size_t i = 0; i < argv.size(); ++i) cmd += fmt::format("{}\"{}\"", i ? ", " : "", json_escape(argv[i]));
  cmd += "]";
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return fmt::format("{{\"started\": \"{}\", \"host\": \"{}\", \"command\": {}, \"threads\": {}, \"version\": \"{}\", "
                     "\"commit\": \"{}\", \"device\": \"{}\", \"ranks\": {}, \"start_iter\": {}}}",
                     when, json_escape(host), cmd, threads, json_escape(cli::version()), json_escape(cli::commit()),
                     json_escape(device), world, start_iter);
}

void RunDirectory::write_invocation(const std::string& record) {
  AppendFile runs(dir_ + "/run.jsonl");
  runs.append(record + "\n");
}

void RunDirectory::write_status(const std::string& status, int64_t iter, const std::string& message) {
  jsonl_->append(fmt::format("{{\"kind\": \"status\", \"iter\": {}, \"status\": \"{}\", \"message\": \"{}\"}}\n", iter,
                             json_escape(status), json_escape(clip_text(message, 1000))));
}

namespace {

std::string human(double v, const char* unit) {
  const char* p[] = {"", "K", "M", "G", "T", "P"};
  int i = 0;
  while (std::fabs(v) >= 1000 && i < 5) {
    v /= 1000;
    ++i;
  }
  return fmt::format("{:.3g}{}{}", v, p[i], unit);
}

std::string human_bytes(double v) {
  const char* p[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (std::fabs(v) >= 1024 && i < 4) {
    v /= 1024;
    ++i;
  }
  return i == 0 ? fmt::format("{:.0f}B", v) : fmt::format("{:.3g}{}", v, p[i]);
}

std::string format_one(const NetSummary& s, bool markdown) {
  std::string o;
  std::string title = fmt::format("{} net '{}' (batch {}): {} parameters, {} forward FLOPs per image", s.phase, s.name,
                                  s.batch, with_commas(s.total.params), human(s.total.flops_per_image, ""));
  const bool used = s.at_iter >= 0;
  const std::string used_head = used ? fmt::format("@{}", s.at_iter) : "";
  if (used)
    title += fmt::format(", {} at iteration {} ({:.0f}%: DropIn compute skipping)", human(s.total.used_per_image, ""),
                         s.at_iter, 100.0 * s.total.used_per_image / std::max(s.total.flops_per_image, 1e-30));
  auto used_cell = [&](const LayerSummary& l) {
    if (!used) return std::string();
    const std::string v = l.used_per_image == 0 && l.flops_per_image > 0 ? "skipped" : human(l.used_per_image, "");
    return markdown ? fmt::format(" {} |", v) : fmt::format(" {:>10}", v);
  };
  auto row = [&](const LayerSummary& l) {
    const std::string params = with_commas(l.params);
    if (markdown)
      return fmt::format("| {} | {} | {} | {} | {} |{} {} | {} | {} |\n", l.name, l.type, l.top_shape, params,
                         human(l.flops_per_image, ""), used_cell(l), human(l.flops, ""), human_bytes(l.act_bytes),
                         human_bytes(l.param_bytes));
    return fmt::format("  {:<18} {:<13} {:<22} {:>11} {:>10}{} {:>10} {:>10} {:>10}\n", l.name, l.type, l.top_shape,
                       params, human(l.flops_per_image, ""), used_cell(l), human(l.flops, ""),
                       human_bytes(l.act_bytes), human_bytes(l.param_bytes));
  };
  if (markdown) {
    o += "**" + title + "**\n\n";
    o += fmt::format("| layer | type | top shape | params | FLOPs/image |{} FLOPs/batch | act mem | param mem |\n",
                     used ? " FLOPs/image " + used_head + " |" : "");
    o += fmt::format("|---|---|---|--:|--:|{}--:|--:|--:|\n", used ? "--:|" : "");
  } else {
    o += title + "\n";
    o += fmt::format("  {:<18} {:<13} {:<22} {:>11} {:>10}{} {:>10} {:>10} {:>10}\n", "layer", "type", "top shape",
                     "params", "FLOPs/img", used ? fmt::format(" {:>10}", used_head) : "", "FLOPs", "act mem",
                     "param mem");
  }
  for (const auto& l : s.layers) o += row(l);
  LayerSummary t = s.total;
  if (markdown) t.name = "**total**";
  o += row(t);
  const std::string note =
      "  (FLOPs: forward, multiply-add = 2; act mem: top values + gradients; param mem: values, training adds as "
      "much again for gradients and again for momentum)\n";
  if (s.phase == "TRAIN") o += markdown ? "\n" + note.substr(2) : note;
  return o;
}

}  // namespace

std::string with_commas(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v);
  std::string o;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) o += ',';
    o += digits[i];
  }
  return v < 0 ? "-" + o : o;
}

NetSummary summarize_net(const Net& net, int64_t at_iter) {
  NetSummary s;
  s.at_iter = at_iter;
  const RunContext ctx{net.phase(), at_iter, 1, 0};
  if (at_iter >= 0) s.total.used_per_image = 0;
  s.phase = phase_name(net.phase());
  s.name = net.name();
  s.batch = net.batch_size();
  s.total.name = "total";
  const double per = static_cast<double>(std::max<int64_t>(s.batch, 1));
  for (int i = 0; i < net.num_layers(); ++i) {
    const Layer& l = net.layer(i);
    LayerSummary r;
    r.name = l.name();
    r.type = l.type();
    for (const auto& p : l.param_specs()) r.params += p.shape.count();
    for (Blob* t : net.tops(i)) {
      r.act_bytes += static_cast<double>(t->value.count()) * 4.0 + static_cast<double>(t->grad.count()) * 4.0;
      if (!r.top_shape.empty()) r.top_shape += ' ';
      r.top_shape += t->shape().str();
    }
    r.flops = l.forward_flops();
    r.flops_per_image = r.flops / per;
    if (at_iter >= 0) {
      r.used_per_image = net.layer_forward_flops(i, ctx) / per;
      s.total.used_per_image += r.used_per_image;
    }
    r.param_bytes = static_cast<double>(r.params) * 4.0;
    s.total.params += r.params;
    s.total.flops += r.flops;
    s.total.flops_per_image += r.flops_per_image;
    s.total.act_bytes += r.act_bytes;
    s.total.param_bytes += r.param_bytes;
    s.layers.push_back(std::move(r));
  }
  return s;
}

std::vector<std::string> compact_defaults(const DefaultsLog& defaults) {
  // "layers[12](conv1_3).pad = [1]" -> key "pad = [1]", layer "conv1_3".
  std::vector<std::string> out;
  std::vector<std::pair<std::string, std::vector<std::string>>> groups;  // first-seen order
  for (const auto& e : defaults.entries) {
    const size_t open = e.find('('), close = e.find(").");
    if (e.rfind("layers[", 0) != 0 || open == std::string::npos || close == std::string::npos || close < open) {
      out.push_back(e);
      continue;
    }
    const std::string layer = e.substr(open + 1, close - open - 1);
    const std::string key = e.substr(close + 2);
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == key; });
    if (it == groups.end()) groups.push_back({key, {layer}});
    else it->second.push_back(layer);
  }
  for (const auto& g : groups) {
    std::string line = "layers." + g.first + ": ";
    for (size_t i = 0; i < g.second.size(); ++i) line += (i ? ", " : "") + g.second[i];
    out.push_back(line);
  }
  return out;
}

std::string format_net_summary(const Net& train, const Net* test, const DefaultsLog& defaults,
                               const SummaryOptions& opts) {
  std::string o = format_one(summarize_net(train, opts.at_iter), opts.markdown);
  if (test) o += "\n" + format_one(summarize_net(*test, opts.at_iter), opts.markdown);
  if (opts.defaults && !defaults.entries.empty()) {
    o += opts.markdown ? "\n**defaults filled in**\n\n" : "\ndefaults filled in:\n";
    for (const auto& d : compact_defaults(defaults)) o += (opts.markdown ? "- `" + d + "`" : "  " + d) + "\n";
  }
  return o;
}

void print_net_summary(const Net& train, const Net* test, const DefaultsLog& defaults, const SummaryOptions& opts) {
  std::fflush(stderr);
  const std::string s = format_net_summary(train, test, defaults, opts);
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

// ---- synthetic data ----------------------------------------------------------------------------

void use_synthetic_data(LoadedConfig& cfg, const std::string& shape) {
  std::vector<int64_t> forced;
  if (!shape.empty()) {
    std::stringstream ss(shape);
    for (std::string p; std::getline(ss, p, ',');) {
      try {
        size_t pos = 0;
        long long v = std::stoll(p, &pos);
        if (pos != p.size() || v <= 0) throw std::invalid_argument(p);
        forced.push_back(v);
      } catch (...) {
        input_error("synthetic shape '{}': expected C,H,W with positive integers", shape);
      }
    }
    if (forced.size() != 3) input_error("synthetic shape '{}': expected C,H,W", shape);
  }
  YAML::Node data = cfg.root["data"];
  if (!data.IsDefined() || !data.IsMap()) return;
  for (const char* phase : {"train", "test"}) {
    YAML::Node sec = data[phase];
    if (!sec.IsDefined() || !sec.IsMap()) continue;
    const std::string where = fmt::format("data.{}", phase);
    auto scalar = [](const YAML::Node& n) { return n.IsDefined() && n.IsScalar(); };
    const std::string kind = scalar(sec["source"]) ? sec["source"].Scalar() : "";
    std::vector<int64_t> dims = forced;
    if (dims.empty()) {
      if (kind == "synthetic") continue;  // already what it would become
      const data::SourceKind* k = data::find_source_kind(kind);
      if (k != nullptr && k->declared_shape != nullptr) dims = k->declared_shape(sec);
      const int64_t crop = scalar(sec["crop"]) ? sec["crop"].as<int64_t>() : 0;
      if (dims.size() == 3 && dims[1] == 0 && dims[2] == 0 && crop > 0) dims[1] = dims[2] = crop;  // the crop decides
      if (dims.size() != 3 || dims[1] <= 0 || dims[2] <= 0)
        input_error("{}: cannot tell the sample shape of a '{}' source without reading it; give --synthetic-shape C,H,W",
                    where, kind);
    }
    YAML::Node out(YAML::NodeType::Map);
    out["source"] = "synthetic";
    YAML::Node sh(YAML::NodeType::Sequence);
    for (int64_t d : dims) sh.push_back(d);
    sh.SetStyle(YAML::EmitterStyle::Flow);
    out["shape"] = sh;
    out["num_classes"] = scalar(sec["num_classes"]) ? sec["num_classes"].as<int64_t>() : 10;
    for (const char* k : {"batch_size", "scale", "crop", "pad", "mirror", "shuffle", "prefetch", "limit"})
      if (sec[k].IsDefined()) out[k] = sec[k];
    if (sec["mean"].IsDefined()) out["mean"] = sec["mean"];
    const int64_t batch = scalar(sec["batch_size"]) ? sec["batch_size"].as<int64_t>() : 1;
    out["num_samples"] = std::max<int64_t>(256, 2 * batch);
    data[phase] = out;
  }
}

// ---- timing ------------------------------------------------------------------------------------

NetTiming time_net(Net& net, int64_t iterations, int64_t at_iter, uint64_t seed) {
  using clock = std::chrono::steady_clock;
  if (iterations <= 0) input_error("--iterations must be > 0, got {}", iterations);
  DN_CHECK(net.phase() == Phase::Train, "time_net needs a TRAIN net");
  const Device dev = net.device();
  NetTiming t;
  t.name = net.name();
  t.device = dev.str();
  t.batch = net.batch_size();
  t.iterations = iterations;
  t.at_iter = at_iter;
  const int n = net.num_layers();
  t.layers.resize(static_cast<size_t>(n));
  RunContext ctx{Phase::Train, at_iter, seed, 0};
  for (int i = 0; i < n; ++i) {
    LayerTiming& l = t.layers[i];
    l.name = net.layer(i).name();
    l.type = net.layer(i).type();
    l.skipped = !net.layer_active(i, ctx);
    const ChannelRange use = net.layer_top_use(i, ctx);
    l.flops = net.layer_forward_flops(i, ctx);
    const int64_t channels = num_channels(net.tops(i)[0]->shape());
    if (!l.skipped && l.flops < net.layer(i).forward_flops() && use.size() < channels)
      l.computed = fmt::format("{}/{} ch", use.size(), channels);
    l.has_backward = net.layer_needs_backward(i);
    l.forward_fused = net.forward_fused(i);
  }
  // Untimed warm-up: first-touch allocations, caches, cuBLAS/cuDNN handles, prefetch threads.
  net.forward(ctx);
  net.backward(ctx);
  device_synchronize(dev);
  std::vector<double> fwd(static_cast<size_t>(n), 0.0), bwd(static_cast<size_t>(n), 0.0);
  for (int64_t it = 0; it < iterations; ++it) {
    ctx.rng_step = static_cast<uint32_t>(it + 1);
    for (int i = 0; i < n; ++i) {
      const auto t0 = clock::now();
      net.forward_layer(i, ctx);
      device_synchronize(dev);
      fwd[i] += std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    }
    for (int i = n; i-- > 0;) {
      const auto t0 = clock::now();
      net.backward_layer(i, ctx);
      device_synchronize(dev);
      bwd[i] += std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    }
  }
  // Gradients were accumulated without an update; leave the arena clean.
  net.zero_param_grads();
  const double inv = 1.0 / static_cast<double>(iterations);
  for (int i = 0; i < n; ++i) {
    t.layers[i].forward_ms = fwd[i] * inv;
    t.layers[i].backward_ms = bwd[i] * inv;
    t.forward_ms += t.layers[i].forward_ms;
    t.backward_ms += t.layers[i].backward_ms;
  }
  return t;
}

std::string format_timing(const NetTiming& t, bool markdown) {
  std::string o = fmt::format("{} on {}: batch {}, {} iterations (after 1 untimed warm-up), layers at iteration {}\n",
                              t.name, t.device, t.batch, t.iterations, t.at_iter);
  auto gflops = [](double flops, double ms) { return ms > 0 ? fmt::format("{:.2f}", flops / ms / 1e6) : "-"; };
  if (markdown) {
    o += "\n| layer | type | forward ms | backward ms | forward GFLOP/s |\n|---|---|--:|--:|--:|\n";
  } else {
    o += fmt::format("  {:<18} {:<13} {:>11} {:>12} {:>10}\n", "layer", "type", "forward ms", "backward ms",
                     "fwd GFLOP/s");
  }
  int skipped = 0;
  for (const auto& l : t.layers) {
    skipped += l.skipped;
    std::string b = l.has_backward ? fmt::format("{:.4f}", l.backward_ms) : "-";
    std::string f = l.forward_fused ? "fused" : fmt::format("{:.4f}", l.forward_ms);
    if (l.skipped) f = b = "skipped";
    if (!l.computed.empty()) f += " (" + l.computed + ")";
    if (markdown)
      o += fmt::format("| {} | {} | {} | {} | {} |\n", l.name, l.type, f, b,
                       l.flops > 0 ? gflops(l.flops, l.forward_ms) : "-");
    else
      o += fmt::format("  {:<18} {:<13} {:>11} {:>12} {:>10}\n", l.name, l.type, f, b,
                       l.flops > 0 ? gflops(l.flops, l.forward_ms) : "-");
  }
  if (skipped > 0)
    o += fmt::format("{}{} layer(s) skipped at iteration {}: no later layer reads them (DropIn compute skipping)\n",
                     markdown ? "\n" : "", skipped, t.at_iter);
  o += fmt::format("{}Average Forward pass: {:.4f} ms.\n", markdown ? "\n" : "", t.forward_ms);
  o += fmt::format("Average Backward pass: {:.4f} ms.\n", t.backward_ms);
  o += fmt::format("Average Forward-Backward: {:.4f} ms per iteration, {:.1f} images/s.\n", t.total_ms(),
                   t.images_per_s());
  return o;
}

// ---- evaluation --------------------------------------------------------------------------------

double EvalResult::output(const std::string& name) const {
  for (const auto& kv : outputs)
    if (kv.first == name) return kv.second;
  return std::numeric_limits<double>::quiet_NaN();
}

std::vector<double> EvalResult::per_class_accuracy() const {
  std::vector<double> acc;
  for (size_t c = 0; c < confusion.size(); ++c) {
    int64_t total = c < unscored.size() ? unscored[c] : 0;
    for (int64_t v : confusion[c]) total += v;
    acc.push_back(total > 0 ? static_cast<double>(confusion[c][c]) / static_cast<double>(total)
                            : std::numeric_limits<double>::quiet_NaN());
  }
  return acc;
}

EvalResult evaluate_net(Net& net, int64_t batches, int64_t iter, uint64_t seed, int64_t count,
                        const SampleScores& on_sample) {
  if (batches <= 0) input_error("--iterations must be > 0, got {}", batches);
  EvalResult r;
  r.batches = batches;
  if (count <= 0 || count > batches * net.batch_size()) count = batches * net.batch_size();
  int loss_layer = -1;
  for (int i = 0; i < net.num_layers() && loss_layer < 0; ++i)
    if (net.layer(i).type() == "softmax_loss") loss_layer = i;
  Blob* scores = nullptr;
  Blob* labels = nullptr;
  if (loss_layer >= 0) {
    scores = net.bottoms(loss_layer)[0];
    labels = net.bottoms(loss_layer)[1];
    r.scores_blob = scores->name;
  }
  SoftmaxParams sp{};
  if (scores) {
    const Shape& s = scores->shape();
    sp = SoftmaxParams{s.n(), s.ndim() >= 2 ? s[1] : 1, s.ndim() >= 2 ? s.count_from(2) : 1, 0, false};
    r.classes = sp.classes;
    if (sp.inner == 1) {
      r.confusion.assign(static_cast<size_t>(sp.classes), std::vector<int64_t>(static_cast<size_t>(sp.classes), 0));
      r.unscored.assign(static_cast<size_t>(sp.classes), 0);
    }
  }
  const auto& outs = net.outputs();
  std::vector<double> sums(outs.size(), 0.0);
  double hits1 = 0, hits5 = 0, positions = 0;
  RunContext ctx{Phase::Test, iter, seed, 0};
  for (int64_t b = 0; b < batches; ++b) {
    ctx.rng_step = static_cast<uint32_t>(b);
    net.forward(ctx);
    const std::vector<double> m = net.output_means();
    for (size_t o = 0; o < outs.size(); ++o) sums[o] += m[o];
    // The samples of this batch that count (the first ones: a wrapped-around tail does not).
    const int64_t take = std::min<int64_t>(net.batch_size(), count - r.samples);
    r.samples += net.batch_size();
    if (scores && take > 0) {
      const std::vector<float> x = scores->value.to_host();
      const std::vector<float> y = labels->value.to_host();
      SoftmaxParams head = sp;
      head.outer = take;  // N x C x inner: the first `take` samples are contiguous
      const double n = static_cast<double>(head.outer * head.inner);
      float acc = 0.f;
      accuracy_forward_cpu(head, 1, x.data(), y.data(), &acc);
      hits1 += acc * n;
      if (sp.classes >= 5) {
        accuracy_forward_cpu(head, 5, x.data(), y.data(), &acc);
        hits5 += acc * n;
      }
      positions += n;
      if (on_sample && sp.inner == 1)
        for (int64_t i = 0; i < take; ++i) on_sample(r.counted + i, x.data() + i * sp.classes, sp.classes);
      for (int64_t i = 0; i < take && !r.confusion.empty(); ++i) {
        const float* row = x.data() + i * sp.classes;
        const auto label = static_cast<int64_t>(y[static_cast<size_t>(i)]);
        if (label < 0 || label >= sp.classes) continue;  // an ignored label
        int64_t best = 0;
        bool finite = true;
        for (int64_t c = 0; c < sp.classes; ++c) {
          finite = finite && std::isfinite(row[c]);
          if (row[c] > row[best]) best = c;
        }
        if (finite)
          ++r.confusion[static_cast<size_t>(label)][static_cast<size_t>(best)];
        else
          ++r.unscored[static_cast<size_t>(label)];
      }
    }
    r.counted += std::max<int64_t>(take, 0);
  }
  for (size_t o = 0; o < outs.size(); ++o) r.outputs.emplace_back(outs[o]->name, sums[o] / static_cast<double>(batches));
  if (loss_layer >= 0) r.loss = r.output(net.tops(loss_layer)[0]->name);
  if (positions > 0) {
    r.top1 = hits1 / positions;
    if (sp.classes >= 5) r.top5 = hits5 / positions;
  }
  return r;
}

}  // namespace dropnet
