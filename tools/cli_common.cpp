#include "tools/cli_common.h"

#include <omp.h>
#include <unistd.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <string>

#include "core/error.h"
#include "data/sources.h"
#include "dropnet_version.h"  // generated (cmake/version.cmake); included here only

namespace dropnet::cli {

int run_main(const char* tool, const std::function<int()>& body) {
  try {
    const int rc = body();
    // A report on stdout that did not reach its file (full disk, I/O error) is a failure.
    errno = 0;
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
      std::fprintf(stderr, "%s: error: writing standard output failed: %s\n", tool,
                   errno != 0 ? std::strerror(errno) : "an earlier write failed (disk full or I/O error)");
      return rc != 0 ? rc : 1;
    }
    return rc;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return e.kind() == ErrorKind::Input ? 2 : e.kind() == ErrorKind::Diverged ? 3 : 1;
  } catch (const YAML::Exception& e) {
    std::fprintf(stderr, "%s: error: config: %s\n", tool, e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: error: out of memory\n", tool);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return 1;
  }
}

void tune_openmp_waiting(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) return;
  if (::setenv("GOMP_SPINCOUNT", "10000", 1) != 0) return;
  ::execv("/proc/self/exe", argv);
  ::unsetenv("GOMP_SPINCOUNT");  // no re-exec: the running libgomp kept its defaults
}

std::string openmp_waiting() {
  if (const char* v = std::getenv("GOMP_SPINCOUNT")) return std::string("GOMP_SPINCOUNT ") + v;
  if (const char* v = std::getenv("OMP_WAIT_POLICY")) return std::string("OMP_WAIT_POLICY ") + v;
  return "OpenMP defaults";
}

void init_logging(int rank) {
  auto logger = spdlog::get("dropnet");
  if (!logger) logger = spdlog::stderr_color_mt("dropnet");
  logger->set_pattern(rank == 0 ? "%H:%M:%S.%e %^%L%$ %v"
                                : "%H:%M:%S.%e %^%L%$ [rank " + std::to_string(rank) + "] %v");
  spdlog::set_default_logger(logger);
}

NetOptions net_options(const RunSettings& run, Device dev, Phase phase, int64_t batch_override) {
  NetOptions no;
  no.phase = phase;
  no.device = dev;
  no.seed = run.seed;
  no.source_factory = make_batch_source;
  no.default_engine = run.engine;
  no.batch_override = batch_override;
  return no;
}

RunSettings read_run_settings(const LoadedConfig& cfg) {
  ConfigNode root = cfg.node();
  RunSettings s;
  s.name = root.get_file_name("name", "net");
  int64_t seed = root.get_int("seed", 1);
  if (seed < 0) root.fail("seed", "must be >= 0");
  s.seed = static_cast<uint64_t>(seed);
  s.device = root.get_string("device", "auto");
  s.engine = root.get_choice("engine", {"native", "cublas", "cudnn"}, "native");
  root.optional_child("vars");  // consumed by the loader
  ConfigNode data = root.optional_child("data");
  if (data.valid()) {
    data.optional_child("train");
    data.optional_child("test");
    data.finish();
  }
  root.child("solver");
  root.children("layers");
  ConfigNode wmap = root.optional_child("weights_map");
  if (wmap.valid()) {
    // Layer names are the keys: all of them are read here, so finish() has nothing to refuse.
    std::map<std::string, std::string> target_of;  // net layer -> the key mapping it
    for (const auto& kv : wmap.raw()) {
      if (!kv.first.IsScalar() || kv.first.Scalar().empty())
        wmap.fail("", "the keys are the weights file's layer names (FILE_LAYER: NET_LAYER)");
      const std::string from = kv.first.Scalar();
      if (kv.second.IsNull()) wmap.fail(from, "expected the name of a layer of the net, got nothing");
      const std::string to = wmap.get_string(from);
      if (to.empty()) wmap.fail(from, "expected the name of a layer of the net, got an empty string");
      auto [it, first] = target_of.emplace(to, from);
      if (!first)
        wmap.fail(from, fmt::format("the net's layer '{}' is already mapped by '{}' (a layer takes its parameters "
                                    "from one file layer)",
                                    clip_text(to, 60), clip_text(it->second, 60)));
      s.weights_map.push_back({from, to, wmap.where(from)});
    }
    wmap.finish();
  }
  root.finish();
  return s;
}

Args::Args(int argc, char** argv)
    : prog_(argc > 0 ? std::filesystem::path(argv[0]).filename().string() : "dropnet"),
      args_(argv + 1, argv + argc),
      used_(args_.size(), false) {}

std::string Args::take(const std::string& name, const std::string& def) {
  const std::string flag = "--" + name;
  known_.push_back(flag);
  for (size_t i = 0; i < args_.size(); ++i) {
    if (used_[i]) continue;
    if (args_[i] == flag) {
      if (i + 1 >= args_.size()) input_error("option {} needs a value", flag);
      used_[i] = used_[i + 1] = true;
      return args_[i + 1];
    }
    if (args_[i].rfind(flag + "=", 0) == 0) {
      used_[i] = true;
      return args_[i].substr(flag.size() + 1);
    }
  }
  return def;
}

int64_t Args::take_int(const std::string& name, int64_t def) {
  std::string v = take(name, "");
  if (v.empty()) return def;
  try {
    size_t pos = 0;
    long long x = std::stoll(v, &pos);
    if (pos != v.size()) throw std::invalid_argument(v);
    return x;
  } catch (...) {
    input_error("option --{}: expected an integer, got '{}'", name, v);
  }
}

bool Args::take_flag(const std::string& name) {
  const std::string flag = "--" + name;
  known_.push_back(flag);
  for (size_t i = 0; i < args_.size(); ++i)
    if (!used_[i] && args_[i] == flag) {
      used_[i] = true;
      return true;
    }
  return false;
}

std::vector<std::string> Args::positional(const char* usage) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args_.size(); ++i) {
    if (used_[i]) continue;
    if (args_[i] == "-h" || args_[i] == "--help") {
      std::printf("%s\n", usage);
      std::exit(0);
    }
    if (args_[i] == "--version") {
      std::printf("%s (dropnet %s, commit %s)\n", prog_.c_str(), version().c_str(), commit().c_str());
      std::exit(0);
    }
    if (args_[i].rfind("--", 0) == 0) {
      const std::string best = closest_match(args_[i].substr(0, args_[i].find('=')), known_);
      input_error("unknown option '{}'{}\n{}", clip_text(args_[i]),
                  best.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", best), usage);
    }
    out.push_back(args_[i]);
  }
  return out;
}

std::string version() { return DROPNET_VERSION; }
std::string commit() { return DROPNET_COMMIT; }

void set_threads(int64_t threads) {
  if (threads < 0 || threads > 1024) input_error("--threads must be between 1 and 1024, got {}", threads);
  if (threads > 0) omp_set_num_threads(static_cast<int>(threads));
}

}  // namespace dropnet::cli
