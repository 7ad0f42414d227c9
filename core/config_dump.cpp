// Writing a resolved config out (dump_config) and comparing two (config_differences).
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/config_internal.h"
#include "core/error.h"

namespace dropnet {

namespace {

// A tree with the same content where no node is shared: yaml-cpp writes a node reached twice (a
// YAML alias, or a layer a repeat block copied) as an anchor and aliases, which a reader of a
// resolved config should not have to follow. The loaded tree is bounded (kMaxConfigNodes counts
// every alias use in full), so the copy is too.
YAML::Node unshared_copy(const YAML::Node& n) {
  YAML::Node out;
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      out = YAML::Node(n.Scalar());
      break;
    case YAML::NodeType::Sequence:
      out = YAML::Node(YAML::NodeType::Sequence);
      for (const auto& item : n) out.push_back(unshared_copy(item));
      break;
    case YAML::NodeType::Map:
      out = YAML::Node(YAML::NodeType::Map);
      for (const auto& kv : n) out.force_insert(unshared_copy(kv.first), unshared_copy(kv.second));
      break;
    default:
      out = YAML::Node(YAML::NodeType::Null);
  }
  out.SetStyle(n.Style());
  return out;
}

std::string brief(const YAML::Node& n) {
  if (!n.IsDefined()) return "(absent)";
  if (n.IsScalar()) return clip_text(n.Scalar(), 60);
  if (n.IsSequence()) return fmt::format("(a list of {})", n.size());
  if (n.IsMap()) return fmt::format("(a map of {} key{})", n.size(), n.size() == 1 ? "" : "s");
  return "(null)";
}

bool all_named(const YAML::Node& seq) {
  std::set<std::string> seen;
  for (const auto& item : seq)
    if (const std::string name = item_name(item); name.empty() || !seen.insert(name).second) return false;
  return true;
}

// A node that is not there (what looking up a missing key gives): YAML::Node() is a null node.
YAML::Node absent() {
  static const YAML::Node none(YAML::NodeType::Map);
  return none["absent"];
}

struct Differ {
  explicit Differ(size_t max) : max_lines(max) {}
  size_t max_lines;
  size_t found = 0;
  std::vector<std::string> lines;

  void add(const std::string& path, const YAML::Node& a, const YAML::Node& b) {
    if (++found <= max_lines) lines.push_back(fmt::format("{}: {} vs {}", path.empty() ? "(the config)" : path,
                                                           brief(a), brief(b)));
  }
  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }
  void walk(const YAML::Node& a, const YAML::Node& b, const std::string& path) {
    if (!a.IsDefined() || !b.IsDefined() || a.Type() != b.Type()) {
      if (a.IsDefined() != b.IsDefined() || a.Type() != b.Type()) add(path, a, b);
      return;
    }
    if (a.IsScalar()) {
      if (a.Scalar() != b.Scalar()) add(path, a, b);
    } else if (a.IsMap()) {
      std::set<std::string> keys;
      for (const auto& kv : a) {
        keys.insert(kv.first.Scalar());
        walk(kv.second, b[kv.first.Scalar()], join(path, kv.first.Scalar()));
      }
      for (const auto& kv : b)
        if (!keys.count(kv.first.Scalar())) walk(absent(), kv.second, join(path, kv.first.Scalar()));
    } else if (a.IsSequence() && all_named(a) && all_named(b)) {
      // Layers by name, as overrides address them; then the order, if the same layers moved.
      std::map<std::string, YAML::Node> in_b;
      for (const auto& item : b) in_b.emplace(item_name(item), item);
      std::set<std::string> names;
      for (const auto& item : a) {
        const std::string name = item_name(item);
        names.insert(name);
        auto it = in_b.find(name);
        walk(item, it == in_b.end() ? absent() : it->second, join(path, name));
      }
      for (const auto& item : b)
        if (const std::string name = item_name(item); !names.count(name)) walk(absent(), item, join(path, name));
      if (a.size() == b.size() && names.size() == in_b.size()) {
        for (size_t i = 0; i < a.size(); ++i)
          if (item_name(a[i]) != item_name(b[i])) {
            add(fmt::format("{} (order, item {})", path, i), a[i]["name"], b[i]["name"]);
            break;
          }
      }
    } else if (a.IsSequence()) {
      for (size_t i = 0; i < std::max(a.size(), b.size()); ++i)
        walk(i < a.size() ? a[i] : absent(), i < b.size() ? b[i] : absent(), join(path, std::to_string(i)));
    }
  }
};

}  // namespace

std::string dump_config(const LoadedConfig& cfg) {
  YAML::Emitter e;
  e << unshared_copy(cfg.root);
  return std::string(e.c_str()) + "\n";
}

std::vector<std::string> config_differences(const LoadedConfig& a, const LoadedConfig& b, size_t max_lines,
                                            const std::string& key) {
  Differ d(max_lines);
  const YAML::Node& ra = a.root;  // const: looking a key up does not add it
  const YAML::Node& rb = b.root;
  if (key.empty()) d.walk(ra, rb, "");
  else d.walk(ra[key], rb[key], key);
  if (d.found > max_lines) d.lines.push_back(fmt::format("... and {} more", d.found - max_lines));
  return d.lines;
}

}  // namespace dropnet
