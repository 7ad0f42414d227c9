// `vars` and `repeat:` blocks: a layer list with `- repeat: {var: i, from: 1, to: 3, layers: [...]}`
// items and `{EXPR}` placeholders in its values is expanded into plain layers.
#include <fmt/format.h>

#include <cctype>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/config_internal.h"
#include "core/error.h"

namespace dropnet {

namespace {

using Vars = std::map<std::string, int64_t>;

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

}  // namespace

void expand_layers(YAML::Node root, const std::string& file, MarkTable* marks) {
  Vars vars;
  if (root["vars"].IsDefined()) {
    if (!root["vars"].IsMap()) fail_at(file, root["vars"], "vars: expected a map of integer variables");
    for (const auto& kv : root["vars"]) {
      int64_t v;
      if (!kv.second.IsScalar() || !parse_int(kv.second.Scalar(), &v))
        fail_at(file, kv.second, fmt::format("vars.{}: expected an integer", kv.first.Scalar()));
      vars[kv.first.Scalar()] = v;
    }
  }
  if (root["layers"].IsDefined()) {
    if (!root["layers"].IsSequence()) fail_at(file, root["layers"], "layers: expected a list of layers");
    YAML::Node expanded(YAML::NodeType::Sequence);
    LayerExpander(file, marks, &expanded).expand(root["layers"], vars, 0);
    root["layers"] = expanded;
  }
}

}  // namespace dropnet
