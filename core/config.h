// Strict YAML access: every key read is marked; finish() rejects the rest. Every error names the
// file:line:column and the key path (e.g. "lenet.yaml:23:7: layers[3] (conv2).kernel: ...").
// Implemented in core/config_*.cpp, one file per concern (core/config_internal.h lists them).
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace dropnet {

// Defaults filled in while reading a config, listed once in the run summary.
struct DefaultsLog {
  std::vector<std::string> entries;  // "layers.conv1.stride = 1"
  std::set<std::string> seen;
  void add(const std::string& path, const std::string& value);
};

// Where config nodes came from, beyond yaml-cpp's own marks: layers expanded from `repeat:` blocks
// (yaml-cpp loses marks on copies: "layers[i]" -> the template's mark) and the nodes a command-line
// override set (their marks are positions in the override's value, not in the file).
struct MarkTable {
  std::map<std::string, YAML::Mark> layers;
  std::vector<std::pair<YAML::Node, std::string>> overrides;  // every node of an override's value -> the override
  const std::string* override_of(const YAML::Node& n) const;
};

class ConfigNode {
 public:
  ConfigNode() = default;
  ConfigNode(YAML::Node node, std::string path, std::shared_ptr<const std::string> file,
             std::shared_ptr<DefaultsLog> defaults = nullptr, std::shared_ptr<const MarkTable> marks = nullptr);

  bool valid() const { return node_.IsDefined() && !node_.IsNull(); }
  bool has(const std::string& key) const;
  const std::string& path() const { return path_; }
  const std::string& file() const { return *file_; }
  YAML::Node raw() const { return node_; }

  int64_t get_int(const std::string& key);
  int64_t get_int(const std::string& key, int64_t def);
  // A finite number within the float range: nan and inf are config errors.
  double get_float(const std::string& key);
  double get_float(const std::string& key, double def);
  std::string get_string(const std::string& key);
  std::string get_string(const std::string& key, const std::string& def);
  bool get_bool(const std::string& key, bool def);
  // One of `choices`; the error lists them.
  std::string get_choice(const std::string& key, const std::vector<std::string>& choices,
                         const std::string& def);
  // A scalar or a list of scalars.
  std::vector<std::string> get_string_list(const std::string& key);
  std::vector<int64_t> get_int_list(const std::string& key, const std::vector<int64_t>& def);
  std::vector<double> get_float_list(const std::string& key, const std::vector<double>& def);

  ConfigNode child(const std::string& key);            // required map
  ConfigNode optional_child(const std::string& key);   // invalid() when absent
  std::vector<ConfigNode> children(const std::string& key);  // required sequence of maps

  // Rejects keys never read, listing the known ones.
  void finish() const;
  // "file:line:col: path.key" for messages.
  std::string where(const std::string& key = "") const;
  [[noreturn]] void fail(const std::string& key, const std::string& msg) const;

  // A name that becomes part of a file name (the run `name`, `snapshot_prefix`): at most
  // kMaxNameLength bytes, no '/' or '\\', not "." or "..", no control characters, not a
  // temporary file's prefix. Checked at load, so --dry-run refuses what a snapshot would.
  std::string get_file_name(const std::string& key, const std::string& def);
  // A positive/non-negative/range check with a message that names the key.
  int64_t get_positive_int(const std::string& key);
  int64_t get_positive_int(const std::string& key, int64_t def);

 private:
  template <typename T, typename Parse>
  std::vector<T> get_list(const std::string& key, const std::vector<T>& def, Parse parse, const char* what);
  YAML::Node value_node(const std::string& key) const;
  YAML::Node required(const std::string& key);
  void mark(const std::string& key);
  void note_default(const std::string& key, const std::string& value);
  std::string key_path(const std::string& key) const;

  YAML::Node node_;
  std::string path_;
  std::shared_ptr<const std::string> file_ = std::make_shared<const std::string>("<config>");
  std::shared_ptr<DefaultsLog> defaults_;
  std::shared_ptr<const MarkTable> marks_;
  std::shared_ptr<std::set<std::string>> used_ = std::make_shared<std::set<std::string>>();
};

// Limits that keep loading a hostile config bounded in time and memory (README "Limits").
// A config file is at most kMaxConfigBytes; its YAML tree, counting an alias in full at each of its
// uses, is at most kMaxConfigNodes nodes, and so is the work of expanding `repeat:` blocks (nodes
// produced plus iterations); at most kMaxLayers layers; repeat blocks nest at most
// kMaxRepeatDepth deep; repeat bounds lie within +-kMaxRepeatIndex.
inline constexpr int64_t kMaxConfigBytes = int64_t{16} << 20;
inline constexpr int64_t kMaxConfigNodes = 1'000'000;
inline constexpr int64_t kMaxLayers = 10'000;
inline constexpr int kMaxRepeatDepth = 8;
inline constexpr int64_t kMaxRepeatIndex = 1'000'000'000;
inline constexpr size_t kMaxNameLength = 128;  // run, snapshot and layer names

// Loads a YAML file (or text), expands `repeat:` blocks in `layers`, applies `a.b.c=value`
// overrides (a layer is addressed by its name: layers.conv1.kernel=3). Parse errors carry
// file:line. The returned node keeps the marks for error messages.
struct LoadedConfig {
  YAML::Node root;
  std::shared_ptr<const std::string> file;
  std::shared_ptr<DefaultsLog> defaults = std::make_shared<DefaultsLog>();
  std::shared_ptr<MarkTable> marks = std::make_shared<MarkTable>();
  // What the config was loaded from, so it can be loaded again elsewhere (a snapshot carries
  // them): the YAML before overrides and repeat expansion (`base:` files merged in) and the
  // overrides in the order they were applied. load_config_text(source, name, overrides) gives
  // this config back; more overrides appended change it as they would have the first time
  // (vars.L=100 re-expands the layers).
  std::string source;
  std::vector<std::string> overrides;
  ConfigNode node() const { return ConfigNode(root, "", file, defaults, marks); }
};
LoadedConfig load_config_file(const std::string& path, const std::vector<std::string>& overrides = {});
LoadedConfig load_config_text(const std::string& text, const std::string& name = "<string>",
                              const std::vector<std::string>& overrides = {});
// Emits the resolved config (after repeat expansion and overrides) as YAML text, every node
// written out where it is used (no anchors or aliases, even where a node is shared).
std::string dump_config(const LoadedConfig& cfg);

// Where two resolved configs differ, one line each ("solver.base_lr: 0.01 vs 0.02"), at most
// `max_lines` (then one "... and N more"). Paths are written as overrides address them: map keys
// joined by '.', a layer by its name (layers.conv1.kernel), other list items by index
// (solver.stepvalue.1). Empty when the configs are the same. `key` (a top-level key, e.g.
// "layers") compares that part only.
std::vector<std::string> config_differences(const LoadedConfig& a, const LoadedConfig& b, size_t max_lines = 12,
                                            const std::string& key = "");

}  // namespace dropnet
