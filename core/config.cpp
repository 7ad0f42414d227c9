#include "core/config.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string_view>
#include <vector>

#include <yaml-cpp/anchor.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include "core/error.h"
#include "core/fileio.h"

namespace dropnet {

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

namespace {

// The name of a list item that is a map with a scalar `name` (a layer), "" otherwise: how messages
// (layers[1](conv1)), overrides (layers.conv1.kernel) and config differences address list items.
std::string item_name(const YAML::Node& n) {
  return n.IsMap() && n["name"].IsDefined() && n["name"].IsScalar() ? n["name"].Scalar() : "";
}

std::string describe(const YAML::Node& v) {
  if (v.IsScalar()) return "'" + clip_text(v.Scalar()) + "'";
  if (v.IsSequence()) return "a list";
  if (v.IsMap()) return "a map";
  return "nothing";
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

// ---- loading: repeat expansion, variables, overrides ------------------------------------------

namespace {

using Vars = std::map<std::string, int64_t>;

[[noreturn]] void fail_at(const std::string& file, const YAML::Node& n, const std::string& msg) {
  YAML::Mark m = n.Mark();
  if (m.is_null()) input_error("{}: {}", file, msg);
  input_error("{}:{}:{}: {}", file, m.line + 1, m.column + 1, msg);
}

// The integer expression inside a {placeholder}: variables, decimal literals, binary + - * / %,
// unary minus (and plus: `{i-+1}` was a valid `{var-k}`), parentheses, whitespace. Recursive
// descent with the usual precedence, left-associative:
//   sum := product (('+' | '-') product)*      product := unary (('*' | '/' | '%') unary)*
//   unary := ('-' | '+') unary | '(' sum ')' | NUMBER | NAME
// / and % truncate toward zero (C++). Every step is checked: a config must not compute a wrapped
// or undefined value (INT64_MIN / -1 included) and use it as a layer's `start` or a repeat bound.
// Nesting is bounded so that a hostile `{((((...` or `{----...1}` cannot exhaust the stack.
class PlaceholderExpr {
 public:
  static constexpr int kMaxDepth = 64;

  PlaceholderExpr(std::string_view expr, const std::string& text, const Vars& vars, const std::string& file,
                  const YAML::Node& where)
      : e_(expr), text_(text), vars_(vars), file_(file), where_(where) {}

  int64_t eval() {
    skip_space();
    if (pos_ == e_.size()) bad("it is empty");
    int64_t v = sum(0);
    if (pos_ != e_.size()) bad(fmt::format("unexpected '{}'", rest()));
    return v;
  }

 private:
  // "'{EXPR}' in 'TEXT'" (just "'{EXPR}'" when that is the whole scalar), both clipped.
  std::string quoted() const {
    std::string q = fmt::format("'{{{}}}'", clip_text(e_, 60));
    if (text_.size() != e_.size() + 2) q += fmt::format(" in '{}'", clip_text(text_));
    return q;
  }
  std::string rest() const { return clip_text(e_.substr(pos_), 20); }
  [[noreturn]] void bad(const std::string& why) const {
    fail_at(file_, where_, fmt::format("bad expression {}: {}", quoted(), why));
  }
  [[noreturn]] void overflow() const {
    fail_at(file_, where_, fmt::format("{} overflows a 64-bit integer", quoted()));
  }

  void skip_space() {
    while (pos_ < e_.size() && std::isspace(static_cast<unsigned char>(e_[pos_]))) ++pos_;
  }
  // The next non-space character, consumed, if it is one of `ops`; else 0.
  char take(std::string_view ops) {
    skip_space();
    if (pos_ < e_.size() && ops.find(e_[pos_]) != std::string_view::npos) return e_[pos_++];
    return 0;
  }

  int64_t sum(int depth) {
    int64_t v = product(depth);
    while (char op = take("+-")) {
      int64_t r = product(depth);
      if (op == '+' ? __builtin_add_overflow(v, r, &v) : __builtin_sub_overflow(v, r, &v)) overflow();
    }
    return v;
  }

  int64_t product(int depth) {
    int64_t v = unary(depth);
    while (char op = take("*/%")) {
      int64_t r = unary(depth);
      if (op == '*') {
        if (__builtin_mul_overflow(v, r, &v)) overflow();
      } else if (r == 0) {
        fail_at(file_, where_, fmt::format("{}: {} by zero", quoted(), op == '/' ? "division" : "modulo"));
      } else if (r == -1) {  // INT64_MIN / -1 overflows; INT64_MIN % -1 is undefined (it traps on x86)
        if (op == '%') v = 0;
        else if (__builtin_sub_overflow(int64_t{0}, v, &v)) overflow();
      } else {
        v = op == '/' ? v / r : v % r;
      }
    }
    return v;
  }

  int64_t unary(int depth) {
    skip_space();
    if (pos_ == e_.size()) bad("it ends where a number, a variable or '(' should follow");
    const char c = e_[pos_];
    if (c == '-' || c == '+' || c == '(') {
      if (depth >= kMaxDepth) bad(fmt::format("nested deeper than {} parentheses and signs", kMaxDepth));
      ++pos_;
      if (c == '(') {
        const int64_t v = sum(depth + 1);
        if (!take(")")) bad(pos_ == e_.size() ? std::string("a '(' is not closed") : fmt::format("expected ')' at '{}'", rest()));
        return v;
      }
      int64_t v = unary(depth + 1);
      if (c == '-' && __builtin_sub_overflow(int64_t{0}, v, &v)) overflow();
      return v;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      int64_t v = 0;
      for (; pos_ < e_.size() && std::isdigit(static_cast<unsigned char>(e_[pos_])); ++pos_)
        if (__builtin_mul_overflow(v, int64_t{10}, &v) || __builtin_add_overflow(v, int64_t{e_[pos_] - '0'}, &v))
          overflow();
      return v;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      const size_t start = pos_;
      while (pos_ < e_.size() && (std::isalnum(static_cast<unsigned char>(e_[pos_])) || e_[pos_] == '_')) ++pos_;
      const std::string name(e_.substr(start, pos_ - start));
      auto it = vars_.find(name);
      if (it == vars_.end()) {
        std::vector<std::string> known;
        for (const auto& kv : vars_) known.push_back(kv.first);
        const std::string list = known.empty() ? std::string("none") : fmt::format("{}", fmt::join(known, ", "));
        fail_at(file_, where_,
                fmt::format("unknown variable '{}' in {} (variables here: {})", clip_text(name), quoted(), clip_text(list)));
      }
      return it->second;
    }
    bad(fmt::format("expected a number, a variable or '(' at '{}'", rest()));
  }

  std::string_view e_;
  const std::string& text_;
  const Vars& vars_;
  const std::string& file_;
  const YAML::Node& where_;
  size_t pos_ = 0;
};

// Replaces every {EXPR} in a scalar by the value of the integer expression EXPR (PlaceholderExpr):
// `{i}`, `{i-1}`, `{(i-2)*S}`. A '{' without a closing '}' is copied through.
std::string substitute(const std::string& s, const Vars& vars, const std::string& file, const YAML::Node& where) {
  if (s.find('{') == std::string::npos) return s;
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '{') {
      out += s[i++];
      continue;
    }
    size_t close = s.find('}', i);
    if (close == std::string::npos) {
      out += s.substr(i);
      break;
    }
    const std::string_view expr = std::string_view(s).substr(i + 1, close - i - 1);
    out += std::to_string(PlaceholderExpr(expr, s, vars, file, where).eval());
    i = close + 1;
  }
  return out;
}

// Repeat expansion in time and memory linear in its output. yaml-cpp merges the node sets of two
// documents whenever a node of one is assigned into the other, and copies the larger set when a
// small fresh node takes a child of the big document: building each layer by YAML::Clone plus
// assignment made expansion quadratic (17 s for 1,000 layers). Here a layer without a placeholder
// is the original node (it keeps its source marks; pushing nodes of the document costs one merge
// in all), and a layer with one is copied bottom-up into fresh nodes, so every merge moves only
// the new subtree. Every node visited and every repeat iteration is counted against
// kMaxConfigNodes, so aliases (a shared node counted at each use) and nested repeats of empty
// lists cannot make it run away.
class LayerExpander {
 public:
  LayerExpander(const std::string& file, MarkTable* marks, YAML::Node* out) : file_(file), marks_(marks), out_(out) {}

  void expand(const YAML::Node& seq, const Vars& vars, int depth);

 private:
  void charge(const YAML::Node& where, int64_t n) {
    work_ += n;
    if (work_ > kMaxConfigNodes)
      fail_at(file_, where,
              fmt::format("repeat blocks expand to more than {} YAML nodes (aliases counted at each use)",
                          kMaxConfigNodes));
  }
  // Whether a scalar below n holds '{'; *visited counts the nodes looked at.
  bool has_placeholder(const YAML::Node& n, int64_t* visited) {
    if (++*visited > kMaxConfigNodes) charge(n, *visited);
    if (n.IsScalar()) return n.Scalar().find('{') != std::string::npos;
    if (n.IsSequence())
      for (const auto& e : n)
        if (has_placeholder(e, visited)) return true;
    if (n.IsMap())
      for (const auto& kv : n)
        if (has_placeholder(kv.second, visited)) return true;
    return false;
  }
  // A deep copy of n in fresh nodes with {var} substituted in every scalar value.
  YAML::Node copy_substituted(const YAML::Node& n, const Vars& vars) {
    charge(n, 1);
    switch (n.Type()) {
      case YAML::NodeType::Scalar:
        return YAML::Node(substitute(n.Scalar(), vars, file_, n));
      case YAML::NodeType::Sequence: {
        YAML::Node out(YAML::NodeType::Sequence);
        for (const auto& e : n) out.push_back(copy_substituted(e, vars));
        return out;
      }
      case YAML::NodeType::Map: {
        YAML::Node out(YAML::NodeType::Map);
        for (const auto& kv : n) {
          if (!kv.first.IsScalar()) fail_at(file_, kv.first, "expected a plain key");
          out[kv.first.Scalar()] = copy_substituted(kv.second, vars);
        }
        return out;
      }
      case YAML::NodeType::Null:
        return YAML::Node(YAML::NodeType::Null);
      default:
        return YAML::Node();
    }
  }

  const std::string& file_;
  MarkTable* marks_;
  YAML::Node* out_;
  int64_t work_ = 0;
  size_t layers_ = 0;
};

int64_t scalar_int(const YAML::Node& n, const Vars& vars, const std::string& file, const std::string& what) {
  if (!n.IsDefined() || !n.IsScalar()) fail_at(file, n, fmt::format("repeat: '{}' must be an integer", what));
  int64_t v;
  if (!parse_int(substitute(n.Scalar(), vars, file, n), &v))
    fail_at(file, n, fmt::format("repeat: '{}' must be an integer, got '{}'", what, n.Scalar()));
  return v;
}

// Expands `- repeat: {var: i, from: 2, to: 5, layers: [...]}` items (nested repeats allowed).
void LayerExpander::expand(const YAML::Node& seq, const Vars& vars, int depth) {
  if (depth > kMaxRepeatDepth) fail_at(file_, seq, fmt::format("repeat blocks nested deeper than {}", kMaxRepeatDepth));
  for (const auto& item : seq) {
    charge(item, 1);
    if (item.IsMap() && item["repeat"].IsDefined()) {
      if (item.size() != 1) fail_at(file_, item, "a repeat item has only the key 'repeat'");
      YAML::Node r = item["repeat"];
      if (!r.IsMap()) fail_at(file_, r, "repeat: expected a map {var, from, to|count, layers}");
      for (const auto& kv : r) {
        std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
        if (k != "var" && k != "from" && k != "to" && k != "count" && k != "layers")
          fail_at(file_, kv.first, fmt::format("repeat: unknown key '{}' (known: var, from, to, count, layers)", k));
      }
      if (r["var"].IsDefined() && !r["var"].IsScalar()) fail_at(file_, r["var"], "repeat: 'var' must be a name");
      std::string var = r["var"].IsDefined() ? r["var"].Scalar() : "i";
      int64_t from = r["from"].IsDefined() ? scalar_int(r["from"], vars, file_, "from") : 1;
      if (from > kMaxRepeatIndex || from < -kMaxRepeatIndex)
        fail_at(file_, r, fmt::format("repeat: 'from' must lie within +-{}", kMaxRepeatIndex));
      int64_t to;
      if (r["to"].IsDefined() && r["count"].IsDefined()) fail_at(file_, r, "repeat: give 'to' or 'count', not both");
      if (r["to"].IsDefined()) {
        to = scalar_int(r["to"], vars, file_, "to");
      } else if (r["count"].IsDefined()) {
        int64_t count = scalar_int(r["count"], vars, file_, "count");
        if (count > kMaxLayers || count < -kMaxLayers)
          fail_at(file_, r, fmt::format("repeat: more than {} iterations", kMaxLayers));
        to = from + count - 1;
      } else {
        fail_at(file_, r, "repeat: missing 'to' or 'count'");
      }
      if (to > kMaxRepeatIndex || to < -kMaxRepeatIndex)
        fail_at(file_, r, fmt::format("repeat: 'to' must lie within +-{}", kMaxRepeatIndex));
      if (to - from >= kMaxLayers) fail_at(file_, r, fmt::format("repeat: more than {} iterations", kMaxLayers));
      if (!r["layers"].IsSequence()) fail_at(file_, r, "repeat: 'layers' must be a list");
      Vars inner = vars;
      for (int64_t i = from; i <= to; ++i) {
        charge(r, 1);
        inner[var] = i;
        expand(r["layers"], inner, depth + 1);
      }
    } else {
      if (layers_ >= static_cast<size_t>(kMaxLayers))
        fail_at(file_, item, fmt::format("more than {} layers after expanding repeat blocks", kMaxLayers));
      marks_->layers[fmt::format("layers[{}]", layers_)] = item.Mark();
      int64_t visited = 0;
      if (has_placeholder(item, &visited)) {
        out_->push_back(copy_substituted(item, vars));
      } else {
        charge(item, visited);
        out_->push_back(item);  // keep the original node (and its source marks)
      }
      ++layers_;
    }
  }
}

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
  Vars vars;
  if (root["vars"].IsDefined()) {
    if (!root["vars"].IsMap()) fail_at(name, root["vars"], "vars: expected a map of integer variables");
    for (const auto& kv : root["vars"]) {
      int64_t v;
      if (!kv.second.IsScalar() || !parse_int(kv.second.Scalar(), &v))
        fail_at(name, kv.second, fmt::format("vars.{}: expected an integer", kv.first.Scalar()));
      vars[kv.first.Scalar()] = v;
    }
  }
  if (root["layers"].IsDefined()) {
    if (!root["layers"].IsSequence()) fail_at(name, root["layers"], "layers: expected a list of layers");
    YAML::Node expanded(YAML::NodeType::Sequence);
    LayerExpander(name, cfg.marks.get(), &expanded).expand(root["layers"], vars, 0);
    root["layers"] = expanded;
  }
  for (const auto& o : overrides)
    if (is_layer_override(o)) apply_override(root, o, cfg.marks.get());
  cfg.root = root;
  return cfg;
}

}  // namespace

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
    frames_.push_back(Frame{false});
    frames_.back().anchor = a;
    frames_.back().nodes_at_start = nodes_;
  }
  void OnSequenceEnd() override { end_frame(); }
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t a, YAML::EmitterStyle::value) override {
    node(m, nullptr);
    count(m, 1);
    frames_.push_back(Frame{true});
    frames_.back().anchor = a;
    frames_.back().nodes_at_start = nodes_;
  }
  void OnMapEnd() override { end_frame(); }

  int64_t nodes() const { return nodes_; }

 private:
  struct Frame {
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
