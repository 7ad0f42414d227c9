// Command-line overrides: `a.b.c=value` sets that key to the YAML value; a list item is addressed
// by its name (layers.conv1.kernel=3) or its index.
#include <sstream>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/config_internal.h"
#include "core/error.h"

namespace dropnet {

namespace {

// Finds or creates the node at a dotted path; list elements are addressed by `name` or index.
YAML::Node resolve_path(YAML::Node root, const std::vector<std::string>& parts, const std::string& spec) {
  YAML::Node cur = root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const std::string& p = parts[i];
    if (cur.IsSequence()) {
      YAML::Node found(YAML::NodeType::Undefined);
      for (size_t j = 0; j < cur.size(); ++j)
        if (item_name(cur[j]) == p) found = cur[j];
      int64_t idx;
      if (!found.IsDefined() && parse_int(p, &idx) && idx >= 0 && static_cast<size_t>(idx) < cur.size()) found = cur[idx];
      if (!found.IsDefined()) input_error("override '{}': no element named '{}'", spec, p);
      cur.reset(found);
    } else {
      if (!cur[p].IsDefined() || cur[p].IsNull()) cur[p] = YAML::Node(YAML::NodeType::Map);
      if (!cur[p].IsMap() && !cur[p].IsSequence())
        input_error("override '{}': '{}' is a value, not a section", spec, p);
      YAML::Node next = cur[p];
      cur.reset(next);
    }
  }
  return cur;
}

void note_override(MarkTable* marks, const YAML::Node& n, const std::string& spec) {
  marks->overrides.emplace_back(n, spec);
  if (n.IsSequence())
    for (const auto& item : n) note_override(marks, item, spec);
  if (n.IsMap())
    for (const auto& kv : n) {
      note_override(marks, kv.first, spec);
      note_override(marks, kv.second, spec);
    }
}

}  // namespace

void apply_override(YAML::Node root, const std::string& spec, MarkTable* marks) {
  size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0) input_error("override '{}': expected key.path=value", spec);
  std::string key = spec.substr(0, eq), value = spec.substr(eq + 1);
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string p; std::getline(ss, p, '.');) {
    if (p.empty()) input_error("override '{}': empty path component", spec);
    parts.push_back(p);
  }
  YAML::Node parsed;
  try {
    parsed = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    input_error("override '{}': value is not valid YAML: {}", spec, e.msg);
  }
  YAML::Node parent = resolve_path(root, parts, spec);
  if (parent.IsSequence()) input_error("override '{}': cannot set a key on a list", spec);
  parent[parts.back()] = parsed;
  note_override(marks, parsed, spec);
}

bool is_layer_override(const std::string& spec) { return spec.rfind("layers.", 0) == 0; }

}  // namespace dropnet
