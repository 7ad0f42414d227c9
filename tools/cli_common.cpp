#include "tools/cli_common.h"

#include <omp.h>
#include <unistd.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

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
  no.precision = run.precision;
  no.batch_override = batch_override;
  return no;
}

namespace {

Precision config_precision(ConfigNode& root) {
  Precision p = Precision::FP32;
  parse_precision(root.get_choice("precision", {"fp32", "tf32", "bf16"}, "fp32"), &p);
  return p;
}

}  // namespace

RunSettings read_run_settings(const LoadedConfig& cfg) {
  ConfigNode root = cfg.node();
  RunSettings s;
  s.name = root.get_file_name("name", "net");
  int64_t seed = root.get_int("seed", 1);
  if (seed < 0) root.fail("seed", "must be >= 0");
  s.seed = static_cast<uint64_t>(seed);
  s.device = root.get_string("device", "auto");
  s.engine = root.get_choice("engine", {"native", "cublas", "cudnn"}, "native");
  s.precision = config_precision(root);
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

namespace {

// Words of `text` in lines of at most `width` columns, each indented by `indent`.
std::string wrap(const std::string& text, size_t width, const std::string& indent = "") {
  std::string out, line;
  size_t i = 0;
  while (i < text.size()) {
    const size_t j = std::min(text.find(' ', i), text.size());
    const std::string word = text.substr(i, j - i);
    if (!line.empty() && indent.size() + line.size() + 1 + word.size() > width) {
      out += indent + line + "\n";
      line.clear();
    }
    if (!word.empty()) line += (line.empty() ? "" : " ") + word;
    i = j + 1;
  }
  if (!line.empty()) out += indent + line + "\n";
  return out;
}

// Help text: the tool's synopsis, then what it does and its arguments, then CLI11's option list.
class UsageFormatter : public CLI::Formatter {
 public:
  UsageFormatter(std::string usage, std::string about, std::string arguments)
      : usage_(std::move(usage)), about_(std::move(about)), arguments_(std::move(arguments)) {}
  std::string make_description(const CLI::App*) const override { return ""; }
  std::string make_option_desc(const CLI::Option* opt) const override {
    std::string d = wrap(CLI::Formatter::make_option_desc(opt), 100 - kColumn);
    if (!d.empty()) d.pop_back();  // the last newline
    return d;
  }
  static constexpr size_t kColumn = 28;
  std::string make_usage(const CLI::App*, std::string) const override {
    std::string out = "usage: " + usage_ + "\n\n" + wrap(about_, 100);
    if (!arguments_.empty()) out += "\nArguments:\n" + arguments_ + "\n";
    return out;
  }

 private:
  std::string usage_, about_, arguments_;
};

std::string with_default(const std::string& help, const std::string& def) {
  if (def.empty() || help.find("default") != std::string::npos) return help;
  return help + " (default: " + def + ")";
}

}  // namespace

struct Parser::Impl {
  std::string tool, usage;
  CLI::App app;
  std::vector<std::string> positional;
  std::vector<std::string> names;       // every option's --name
  std::vector<std::string> valued;      // the options that take a value
  bool version_flag = false;
  Impl(std::string t, std::string u) : tool(std::move(t)), usage(std::move(u)), app("", tool) {}
};

Parser::Parser(std::string tool, std::string usage, std::string about, std::string arguments)
    : impl_(std::make_unique<Impl>(std::move(tool), std::move(usage))) {
  CLI::App& app = impl_->app;
  app.formatter(std::make_shared<UsageFormatter>(impl_->usage, std::move(about), std::move(arguments)));
  app.get_formatter()->column_width(UsageFormatter::kColumn);
  app.set_help_flag("-h,--help", "print this help and exit");
  // --version is answered before CLI11 parses (it wins over every other argument); registered
  // here so that --help lists it.
  app.add_flag("--version", impl_->version_flag, "print the version and the git commit, and exit");
  app.add_option("args", impl_->positional)->group("");  // documented in "Arguments"
  impl_->names = {"--help", "--version"};
}

Parser::~Parser() = default;

namespace {

template <class T>
void add_valued(Parser::Impl& m, const std::string& name, T& value, const std::string& value_name,
                const std::string& help, const std::string& default_text) {
  m.app.add_option(name, value, with_default(help, default_text))->type_name(value_name);
  m.names.push_back(name);
  m.valued.push_back(name);
}

}  // namespace

void Parser::option(const std::string& name, std::string& value, const std::string& value_name,
                    const std::string& help) {
  add_valued(*impl_, name, value, value_name, help, value);
}

void Parser::option(const std::string& name, int64_t& value, const std::string& value_name,
                    const std::string& help) {
  add_valued(*impl_, name, value, value_name, help, std::to_string(value));
}

void Parser::option(const std::string& name, double& value, const std::string& value_name,
                    const std::string& help) {
  add_valued(*impl_, name, value, value_name, help, fmt::format("{:g}", value));
}

void Parser::flag(const std::string& name, bool& value, const std::string& help) {
  impl_->app.add_flag(name, value, help);
  impl_->names.push_back(name);
}

void Parser::threads(int64_t& value) {
  option("--threads", value, "N", "CPU threads (default: 0, OpenMP's choice: every core)");
}

void Parser::device(std::string& value) {
  option("--device", value, "D", "cpu, cuda, cuda:N or auto (default: the config's `device`, else auto)");
}

std::string Parser::usage() const { return "usage: " + impl_->usage; }

std::vector<std::string> Parser::parse(int argc, char** argv) {
  Impl& m = *impl_;
  // First pass: --help and --version win over everything; an unknown option is named with the
  // closest one this tool takes.
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") break;
    if (a == "-h" || a == "--help") {
      std::printf("%s", m.app.help().c_str());
      std::exit(0);
    }
    if (a == "--version") {
      std::printf("%s (dropnet %s, commit %s)\n", m.tool.c_str(), version().c_str(), commit().c_str());
      std::exit(0);
    }
  }
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") break;
    if (a.size() < 2 || a[0] != '-') continue;
    const std::string name = a.substr(0, a.find('='));
    if (std::find(m.names.begin(), m.names.end(), name) == m.names.end()) {
      const std::string best = closest_match(name, m.names);
      input_error("unknown option '{}'{}\n{}\n(--help lists the options)", clip_text(a),
                  best.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", best), usage());
    }
    // An option's value is not an option, whatever it looks like.
    if (a.find('=') == std::string::npos && std::find(m.valued.begin(), m.valued.end(), name) != m.valued.end())
      ++i;
  }
  try {
    m.app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    input_error("{}\n{}", e.what(), usage());
  }
  return m.positional;
}

std::string version() { return DROPNET_VERSION; }
std::string commit() { return DROPNET_COMMIT; }

void set_threads(int64_t threads) {
  if (threads < 0 || threads > 1024) input_error("--threads must be between 1 and 1024, got {}", threads);
  if (threads > 0) omp_set_num_threads(static_cast<int>(threads));
}

}  // namespace dropnet::cli
