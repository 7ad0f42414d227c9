// ConfigNode, the strict key accessor of core/config.h, and the helpers the other config_*.cpp
// files share (declared in core/config_internal.h).
#include <fmt/format.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/config_internal.h"
#include "core/error.h"

namespace dropnet {

std::string item_name(const YAML::Node& n) {
  return n.IsMap() && n["name"].IsDefined() && n["name"].IsScalar() ? n["name"].Scalar() : "";
}

bool parse_int(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  size_t pos = 0;
  try {
    long long v = std::stoll(s, &pos, 10);
    if (pos != s.size()) return false;
    *out = v;
    return true;
  } catch (...) {
    return false;
  }
}

void fail_at(const std::string& file, const YAML::Node& n, const std::string& msg) {
  YAML::Mark m = n.Mark();
  if (m.is_null()) input_error("{}: {}", file, msg);
  input_error("{}:{}:{}: {}", file, m.line + 1, m.column + 1, msg);
}

namespace {

std::string describe(const YAML::Node& v) {
  if (v.IsScalar()) return "'" + clip_text(v.Scalar()) + "'";
  if (v.IsSequence()) return "a list";
  if (v.IsMap()) return "a map";
  return "nothing";
}

bool parse_double(const std::string& s, double* out) {
  if (s.empty()) return false;
  size_t pos = 0;
  try {
    double v = std::stod(s, &pos);
    if (pos != s.size()) return false;
    *out = v;
    return true;
  } catch (...) {
    return false;
  }
}

// Every number of a config is a float32 parameter or enters float arithmetic: nan, inf and values
// past the float range (1e39 becomes inf) are refused where they are read, not found as a NaN loss.
bool parse_finite(const std::string& s, double* out) {
  return parse_double(s, out) && std::isfinite(*out) && std::fabs(*out) <= 3.4028234663852886e38;
}

}  // namespace

void DefaultsLog::add(const std::string& path, const std::string& value) {
  if (seen.insert(path).second) entries.push_back(path + " = " + value);
}

ConfigNode::ConfigNode(YAML::Node node, std::string path, std::shared_ptr<const std::string> file,
                       std::shared_ptr<DefaultsLog> defaults, std::shared_ptr<const MarkTable> marks)
    : node_(node), path_(std::move(path)), file_(std::move(file)), defaults_(std::move(defaults)),
      marks_(std::move(marks)) {}

std::string ConfigNode::key_path(const std::string& key) const {
  if (key.empty()) return path_.empty() ? "<root>" : path_;
  const std::string k = clip_text(key, 60);  // an unknown key may be anything
  return path_.empty() ? k : path_ + "." + k;
}

YAML::Node ConfigNode::value_node(const std::string& key) const {
  if (!node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  return node_[key];
}

bool ConfigNode::has(const std::string& key) const {
  YAML::Node v = value_node(key);
  return v.IsDefined() && !v.IsNull();
}

const std::string* MarkTable::override_of(const YAML::Node& n) const {
  if (!n.IsDefined()) return nullptr;
  for (const auto& [node, spec] : overrides)
    if (node.is(n)) return &spec;
  return nullptr;
}

std::string ConfigNode::where(const std::string& key) const {
  if (marks_) {
    // Set on the command line: say so, not a position in the file.
    const std::string* spec = key.empty() ? nullptr : marks_->override_of(value_node(key));
    if (spec == nullptr) spec = marks_->override_of(node_);
    if (spec != nullptr) return fmt::format("override '{}': {}", clip_text(*spec, 120), key_path(key));
  }
  YAML::Mark m = node_.Mark();
  if (!key.empty()) {
    YAML::Node v = value_node(key);
    if (v.IsDefined() && !v.Mark().is_null()) m = v.Mark();
  }
  if (m.is_null() && marks_ && path_.rfind("layers[", 0) == 0) {
    // A layer expanded from a repeat block: point at its template.
    auto it = marks_->layers.find(path_.substr(0, path_.find(']') + 1));
    if (it != marks_->layers.end()) m = it->second;
  }
  std::string loc = *file_;
  if (!m.is_null()) loc += fmt::format(":{}:{}", m.line + 1, m.column + 1);
  return fmt::format("{}: {}", loc, key_path(key));
}

void ConfigNode::fail(const std::string& key, const std::string& msg) const {
  throw Error(ErrorKind::Input, fmt::format("{}: {}", where(key), msg));
}

void ConfigNode::mark(const std::string& key) { used_->insert(key); }

void ConfigNode::note_default(const std::string& key, const std::string& value) {
  if (defaults_) defaults_->add(key_path(key), value);
}

YAML::Node ConfigNode::required(const std::string& key) {
  mark(key);
  if (!node_.IsMap()) fail("", "expected a map of keys");
  YAML::Node v = node_[key];
  if (!v.IsDefined() || v.IsNull()) fail("", fmt::format("missing required key '{}'", key));
  return v;
}

#define DN_CONFIG_TYPED(getter, T, conv, what)                                              \
  T ConfigNode::getter(const std::string& key) {                                            \
    YAML::Node v = required(key);                                                           \
    T out{};                                                                                \
    if (!v.IsScalar() || !conv(v.Scalar(), &out))                                           \
      fail(key, fmt::format("expected {}, got {}", what, describe(v)));                     \
    return out;                                                                             \
  }
DN_CONFIG_TYPED(get_int, int64_t, parse_int, "an integer")
DN_CONFIG_TYPED(get_float, double, parse_finite, "a finite number")
#undef DN_CONFIG_TYPED

int64_t ConfigNode::get_int(const std::string& key, int64_t def) {
  mark(key);
  if (!has(key)) {
    note_default(key, std::to_string(def));
    return def;
  }
  return get_int(key);
}

double ConfigNode::get_float(const std::string& key, double def) {
  mark(key);
  if (!has(key)) {
    note_default(key, fmt::format("{}", def));
    return def;
  }
  return get_float(key);
}

std::string ConfigNode::get_string(const std::string& key) {
  YAML::Node v = required(key);
  if (!v.IsScalar()) fail(key, fmt::format("expected a string, got {}", describe(v)));
  return v.Scalar();
}

std::string ConfigNode::get_string(const std::string& key, const std::string& def) {
  mark(key);
  if (!has(key)) {
    note_default(key, def.empty() ? "''" : def);
    return def;
  }
  return get_string(key);
}

bool ConfigNode::get_bool(const std::string& key, bool def) {
  mark(key);
  if (!has(key)) {
    note_default(key, def ? "true" : "false");
    return def;
  }
  YAML::Node v = value_node(key);
  std::string s = v.IsScalar() ? v.Scalar() : "";
  if (s == "true" || s == "True" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "False" || s == "no" || s == "off") return false;
  fail(key, fmt::format("expected true or false, got {}", describe(v)));
}

std::string ConfigNode::get_choice(const std::string& key, const std::vector<std::string>& choices,
                                   const std::string& def) {
  std::string s = def.empty() ? get_string(key) : get_string(key, def);
  for (const auto& c : choices)
    if (s == c) return s;
  fail(key, fmt::format("'{}' is not one of: {}", clip_text(s), fmt::join(choices, ", ")));
}

std::vector<std::string> ConfigNode::get_string_list(const std::string& key) {
  YAML::Node v = required(key);
  std::vector<std::string> out;
  if (v.IsScalar()) return {v.Scalar()};
  if (!v.IsSequence()) fail(key, fmt::format("expected a string or a list of strings, got {}", describe(v)));
  for (const auto& e : v) {
    if (!e.IsScalar()) fail(key, "expected a list of strings");
    out.push_back(e.Scalar());
  }
  return out;
}

// A scalar or a list of scalars, each parsed by `parse`; `what` names the expected type.
template <typename T, typename Parse>
std::vector<T> ConfigNode::get_list(const std::string& key, const std::vector<T>& def, Parse parse,
                                    const char* what) {
  mark(key);
  if (!has(key)) {
    note_default(key, fmt::format("[{}]", fmt::join(def, ", ")));
    return def;
  }
  YAML::Node v = value_node(key);
  std::vector<T> out;
  auto take = [&](const YAML::Node& e) {
    T x;
    if (!e.IsScalar() || !parse(e.Scalar(), &x)) fail(key, fmt::format("expected {}, got {}", what, describe(e)));
    out.push_back(x);
  };
  if (v.IsSequence()) {
    for (const auto& e : v) take(e);
  } else {
    take(v);
  }
  return out;
}

std::vector<int64_t> ConfigNode::get_int_list(const std::string& key, const std::vector<int64_t>& def) {
  return get_list<int64_t>(key, def, parse_int, "an integer or a list of integers");
}

std::vector<double> ConfigNode::get_float_list(const std::string& key, const std::vector<double>& def) {
  return get_list<double>(key, def, parse_finite, "a finite number or a list of finite numbers");
}

std::string ConfigNode::get_file_name(const std::string& key, const std::string& def) {
  std::string s = get_string(key, def);
  if (s == def) return s;
  if (s.size() > kMaxNameLength)
    fail(key, fmt::format("'{}' is longer than {} bytes", clip_text(s, 40), kMaxNameLength));
  if (s.empty() || s == "." || s == ".." || s.find_first_of("/\\") != std::string::npos)
    fail(key, fmt::format("'{}' must be a plain name (it names files: no '/', '\\', '.' or '..')", clip_text(s)));
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) fail(key, fmt::format("'{}' holds a control character", clip_text(s)));
  if (s.rfind(".tmp-", 0) == 0) fail(key, fmt::format("'{}' starts like a temporary file (.tmp-)", s));
  return s;
}

int64_t ConfigNode::get_positive_int(const std::string& key) {
  int64_t v = get_int(key);
  if (v <= 0) fail(key, fmt::format("must be a positive integer, got {}", v));
  return v;
}

int64_t ConfigNode::get_positive_int(const std::string& key, int64_t def) {
  int64_t v = get_int(key, def);
  if (v <= 0) fail(key, fmt::format("must be a positive integer, got {}", v));
  return v;
}

ConfigNode ConfigNode::child(const std::string& key) {
  YAML::Node v = required(key);
  if (!v.IsMap()) fail(key, fmt::format("expected a map, got {}", describe(v)));
  return ConfigNode(v, key_path(key), file_, defaults_, marks_);
}

ConfigNode ConfigNode::optional_child(const std::string& key) {
  mark(key);
  if (!has(key)) return ConfigNode(YAML::Node(YAML::NodeType::Undefined), key_path(key), file_, defaults_, marks_);
  return child(key);
}

std::vector<ConfigNode> ConfigNode::children(const std::string& key) {
  YAML::Node v = required(key);
  if (!v.IsSequence()) fail(key, fmt::format("expected a list, got {}", describe(v)));
  std::vector<ConfigNode> out;
  size_t i = 0;
  for (const auto& e : v) {
    std::string p = fmt::format("{}[{}]", key_path(key), i);
    if (const std::string name = item_name(e); !name.empty()) p += "(" + clip_text(name, 40) + ")";
    if (!e.IsMap()) {
      ConfigNode(e, p, file_, defaults_, marks_).fail("", fmt::format("expected a map, got {}", describe(e)));
    }
    out.emplace_back(e, p, file_, defaults_, marks_);
    ++i;
  }
  return out;
}

void ConfigNode::finish() const {
  if (!node_.IsDefined() || node_.IsNull()) return;
  if (!node_.IsMap()) fail("", "expected a map of keys");
  for (const auto& kv : node_) {
    std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    if (!used_->count(k)) {
      std::vector<std::string> known(used_->begin(), used_->end());
      const std::string guess = closest_match(k, known);
      fail(k, fmt::format("unknown key '{}'{} (known keys here: {})", clip_text(k),
                          guess.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", guess),
                          known.empty() ? std::string("none") : fmt::format("{}", fmt::join(known, ", "))));
    }
  }
}

}  // namespace dropnet
