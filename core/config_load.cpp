// Loading a config: the text is parsed (refusing duplicate keys and alias bombs), `base:` files are
// merged in, then the overrides are applied and the layers expanded (core/config_internal.h).
#include <cstdint>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <yaml-cpp/anchor.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include "core/config.h"
#include "core/config_internal.h"
#include "core/error.h"
#include "core/fileio.h"

namespace dropnet {

namespace {

// yaml-cpp keeps the last of two equal keys in a map without a word; a config with a repeated key
// almost always means an edit that did not take. This walks the parser's events and refuses the
// second occurrence, naming both places and the key path.
// It also counts the nodes of the tree with every alias expanded (an alias adds the size of its
// anchor's subtree), in time linear in the text: yaml-cpp shares an aliased node, but every walk
// of the tree visits it at each use, so "billion laughs" (8 levels of 10 aliases) would make every
// later step run for hours. Past kMaxConfigNodes the config is refused before any walk.
class DuplicateKeyFinder : public YAML::EventHandler {
 public:
  explicit DuplicateKeyFinder(std::string name) : name_(std::move(name)) {}

  void OnDocumentStart(const YAML::Mark&) override { anchor_size_.clear(); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t a) override {
    node(m, nullptr);
    count(m, 1);
    if (a != YAML::NullAnchor) anchor_size_[a] = 1;
  }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t a) override {
    node(m, nullptr);
    auto it = anchor_size_.find(a);
    if (it == anchor_size_.end()) {
      // yaml-cpp registers an anchor when its collection starts: an alias inside it makes a cycle
      // that every walk of the tree would follow forever.
      for (const Frame& f : frames_)
        if (f.anchor == a)
          input_error("{}:{}:{}: an alias refers to the collection that contains it (a cycle)", name_, m.line + 1,
                      m.column + 1);
    }
    count(m, it == anchor_size_.end() ? 1 : it->second);
  }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t a, const std::string& value) override {
    node(m, &value);
    count(m, 1);
    if (a != YAML::NullAnchor) anchor_size_[a] = 1;
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t a, YAML::EmitterStyle::value) override {
    node(m, nullptr);
    count(m, 1);
    frames_.emplace_back(false);
    frames_.back().anchor = a;
    frames_.back().nodes_at_start = nodes_;
  }
  void OnSequenceEnd() override { end_frame(); }
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t a, YAML::EmitterStyle::value) override {
    node(m, nullptr);
    count(m, 1);
    frames_.emplace_back(true);
    frames_.back().anchor = a;
    frames_.back().nodes_at_start = nodes_;
  }
  void OnMapEnd() override { end_frame(); }

  int64_t nodes() const { return nodes_; }

 private:
  struct Frame {
    explicit Frame(bool map) : is_map(map) {}
    bool is_map;
    bool expect_key = true;
    std::string key;                      // map: the key whose value comes next
    std::map<std::string, int> key_line;  // map: keys seen, 1-based line
    int64_t index = -1;                   // sequence: index of the current item
    YAML::anchor_t anchor = YAML::NullAnchor;
    int64_t nodes_at_start = 0;           // nodes_ just after this collection's own node
  };

  void count(const YAML::Mark& m, int64_t n) {
    nodes_ += n;  // n <= kMaxConfigNodes + 1 and nodes_ was <= kMaxConfigNodes: no overflow
    if (nodes_ > kMaxConfigNodes)
      input_error("{}:{}:{}: the config has more than {} YAML nodes once aliases are expanded (each use of "
                  "an alias counts its whole subtree); see the limits in README.md",
                  name_, m.line + 1, m.column + 1, kMaxConfigNodes);
  }

  void end_frame() {
    const Frame& f = frames_.back();
    if (f.anchor != YAML::NullAnchor) anchor_size_[f.anchor] = nodes_ - f.nodes_at_start + 1;
    frames_.pop_back();
  }

  // A node starts at mark m (value: its text for a scalar). Within a map, nodes alternate key, value.
  void node(const YAML::Mark& m, const std::string* value) {
    if (frames_.empty()) return;
    Frame& f = frames_.back();
    if (!f.is_map) {
      ++f.index;
      return;
    }
    if (!f.expect_key) {
      f.expect_key = true;
      return;
    }
    f.expect_key = false;
    f.key = value != nullptr ? *value : std::string("?");
    if (value == nullptr) return;  // a complex key: not compared
    auto [it, fresh] = f.key_line.emplace(*value, m.line + 1);
    if (!fresh)
      input_error("{}:{}:{}: duplicate key '{}' (first at line {}) in {}: yaml-cpp would keep only the last one",
                  name_, m.line + 1, m.column + 1, clip_text(*value), it->second, path());
  }

  std::string path() const {
    std::string p;
    for (size_t i = 0; i + 1 < frames_.size(); ++i) {
      const Frame& f = frames_[i];
      if (f.is_map) p += (p.empty() ? "" : ".") + f.key;
      else p += "[" + std::to_string(f.index) + "]";
    }
    return p.empty() ? "the top-level map" : "'" + p + "'";
  }

  std::string name_;
  std::vector<Frame> frames_;
  std::map<YAML::anchor_t, int64_t> anchor_size_;  // nodes in the subtree of each anchor
  int64_t nodes_ = 0;
};

YAML::Node parse_yaml(const std::string& text, const std::string& name) {
  // Checked for every config text, not only files: yaml-cpp takes seconds on some short inputs
  // with a NUL byte (2.2 s for 16 bytes in the sanitizer build).
  if (text.find('\0') != std::string::npos) input_error("{}: not a text file (contains NUL bytes)", name);
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    DuplicateKeyFinder finder(name);
    while (parser.HandleNextDocument(finder)) {
    }
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    input_error("{}:{}:{}: YAML syntax error: {}", name, e.mark.line + 1, e.mark.column + 1, e.msg);
  } catch (const YAML::Exception& e) {
    input_error("{}: YAML error: {}", name, e.what());
  }
}

std::string read_text(const std::string& path) {
  return read_file(path, "config", kMaxConfigBytes);
}

// Deep merge: maps merge key by key, anything else in `over` replaces `base`.
YAML::Node merge(YAML::Node base, const YAML::Node& over) {
  if (!base.IsMap() || !over.IsMap()) return over;
  for (const auto& kv : over) {
    const std::string k = kv.first.Scalar();
    if (base[k].IsDefined() && base[k].IsMap() && kv.second.IsMap()) base[k] = merge(base[k], kv.second);
    else base[k] = kv.second;
  }
  return base;
}

// `base: other.yaml` (relative to this file): this file's keys are merged over the base's.
YAML::Node load_with_base(const std::string& path, int depth, std::string* chain) {
  if (depth > 8) input_error("{}: 'base' chain deeper than 8 (a cycle?)", path);
  YAML::Node root = parse_yaml(read_text(path), path);
  if (!root.IsMap() || !root["base"].IsDefined()) return root;
  if (!root["base"].IsScalar()) fail_at(path, root["base"], "base: expected a file name");
  std::filesystem::path base = root["base"].Scalar();
  if (base.is_relative()) base = std::filesystem::path(path).parent_path() / base;
  *chain += " (base " + base.string() + ")";
  YAML::Node merged = load_with_base(base.string(), depth + 1, chain);
  root.remove("base");
  return merge(merged, root);
}

LoadedConfig finish_load(YAML::Node root, const std::string& name, const std::vector<std::string>& overrides) {
  LoadedConfig cfg;
  cfg.file = std::make_shared<const std::string>(name);
  if (!root.IsDefined() || root.IsNull()) input_error("{}: the config is empty", name);
  if (!root.IsMap()) fail_at(name, root, "the config must be a map with keys name, seed, data, solver, layers");
  {
    YAML::Emitter e;  // before the overrides change the tree in place
    e << root;
    cfg.source = std::string(e.c_str()) + "\n";
    cfg.overrides = overrides;
  }
  for (const auto& o : overrides)
    if (!is_layer_override(o)) apply_override(root, o, cfg.marks.get());
  expand_layers(root, name, cfg.marks.get());
  for (const auto& o : overrides)
    if (is_layer_override(o)) apply_override(root, o, cfg.marks.get());
  cfg.root = root;
  return cfg;
}

}  // namespace

LoadedConfig load_config_text(const std::string& text, const std::string& name,
                              const std::vector<std::string>& overrides) {
  if (static_cast<int64_t>(text.size()) > kMaxConfigBytes)
    input_error("{}: the config is {} bytes, more than the limit of {}", name, text.size(), kMaxConfigBytes);
  return finish_load(parse_yaml(text, name), name, overrides);
}

LoadedConfig load_config_file(const std::string& path, const std::vector<std::string>& overrides) {
  std::string chain = path;
  YAML::Node root = load_with_base(path, 0, &chain);
  return finish_load(root, chain, overrides);
}

}  // namespace dropnet
