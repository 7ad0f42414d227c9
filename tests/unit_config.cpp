// Strict config parsing: every malformed config is an input error naming file:line, the key
// path and (for layers) the layer.
#include <gtest/gtest.h>

#include "core/error.h"
#include "data/sources.h"
#include "layers/config.h"
#include "optim/solver.h"
#include "tools/cli_common.h"

using namespace dropnet;

namespace {

const char* kBase = R"(name: t
seed: 3
data:
  train: {source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 32, batch_size: 4}
  test: {source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 32, batch_size: 4}
solver: {base_lr: 0.1, max_iter: 2, test_interval: 1, test_iter: 1}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 3, kernel: 3}
  - {name: fc1, type: fc, bottom: conv1, top: fc1, num_output: 4}
  - {name: loss, type: softmax_loss, bottom: [fc1, label], top: loss}
)";

// Builds everything a training run builds; returns the error message ("" if none).
std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    LoadedConfig cfg = load_config_text(text, "cfg.yaml", overrides);
    cli::read_run_settings(cfg);
    SolverOptions so;
    so.source_factory = make_batch_source;
    Solver s(cfg, so);
    s.step(1);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Input) << e.what();
    return e.what();
  }
  return "";
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  size_t p = s.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  if (p != std::string::npos) s.replace(p, from.size(), to);
  return s;
}

TEST(Config, BaseIsValid) { EXPECT_EQ(error_of(kBase), ""); }

struct BadCase {
  const char* name;
  std::string text;
  std::vector<std::string> overrides;
  std::vector<std::string> expect;  // substrings of the message
};

std::vector<BadCase> bad_cases() {
  std::string b = kBase;
  return {
      {"syntax", "name: [unclosed\nseed: 1\n", {}, {"cfg.yaml:", "YAML syntax error"}},
      {"empty", "", {}, {"cfg.yaml", "empty"}},
      {"not_a_map", "- 1\n- 2\n", {}, {"cfg.yaml:1:1", "must be a map"}},
      {"unknown_top_key", b + "extra: 1\n", {}, {"cfg.yaml:12:", "unknown key 'extra'"}},
      {"unknown_layer_key", replace(b, "kernel: 3}", "kernel: 3, kernal: 5}"), {},
       {"cfg.yaml:9:", "layers[1](conv1)", "unknown key 'kernal'"}},
      {"wrong_type", replace(b, "num_output: 3", "num_output: abc"), {},
       {"cfg.yaml:9:", "layers[1](conv1).num_output", "expected an integer, got 'abc'"}},
      {"missing_key", replace(b, "num_output: 3, ", ""), {}, {"layers[1](conv1)", "missing required key 'num_output'"}},
      {"unknown_type", replace(b, "type: conv", "type: convv"), {},
       {"layers[1](conv1).type", "unknown layer type 'convv'", "known types: data, conv"}},
      {"undefined_bottom", replace(b, "bottom: conv1", "bottom: nope"), {},
       {"layers[2](fc1).bottom", "bottom 'nope' is not a top of an earlier layer"}},
      {"duplicate_name", replace(b, "name: fc1", "name: conv1"), {}, {"duplicate layer name 'conv1'"}},
      {"duplicate_top", replace(b, "top: fc1", "top: conv1"), {}, {"top 'conv1' is already defined"}},
      {"negative_kernel", replace(b, "kernel: 3", "kernel: -1"), {}, {"layers[1](conv1).kernel", "out of range"}},
      {"kernel_too_big", replace(b, "kernel: 3", "kernel: 9"), {}, {"layers[1](conv1)", "does not fit the input"}},
      {"arity", replace(b, "bottom: conv1", "bottom: [conv1, data]"), {}, {"layers[2](fc1)", "takes 1 bottom(s), got 2"}},
      {"label_shape", replace(b, "bottom: [fc1, label]", "bottom: [fc1, data]"), {}, {"layers[3](loss)", "labels for scores"}},
      {"solver_missing", replace(b, "max_iter: 2, ", ""), {}, {"solver", "missing required key 'max_iter'"}},
      {"bad_policy", replace(b, "base_lr: 0.1", "base_lr: 0.1, lr_policy: cosine"), {},
       {"solver.lr_policy", "'cosine' is not one of"}},
      {"policy_needs_gamma", replace(b, "base_lr: 0.1", "base_lr: 0.1, lr_policy: step, stepsize: 2"), {},
       {"solver", "missing required key 'gamma'"}},
      {"repeat_missing_to", replace(b, "  - {name: fc1", "  - repeat: {var: i, from: 1, layers: []}\n  - {name: fc1"), {},
       {"cfg.yaml:", "repeat: missing 'to' or 'count'"}},
      {"repeat_unknown_var", replace(b, "name: fc1,", "name: 'fc{j}',"), {}, {"unknown variable 'j'"}},
      {"override_syntax", b, {"solver.max_iter"}, {"override 'solver.max_iter'", "key.path=value"}},
      {"override_unknown_layer", b, {"layers.nope.kernel=3"}, {"no element named 'nope'"}},
      {"override_wrong_type", b, {"solver.max_iter=many"}, {"solver.max_iter", "expected an integer, got 'many'"}},
      {"override_unknown_key", b, {"layers.conv1.kernal=3"}, {"unknown key 'kernal'"}},
      {"data_missing", replace(b, "  train: {source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 32, batch_size: 4}\n", ""),
       {}, {"missing 'train' source"}},
      {"group_mismatch", replace(b, "kernel: 3}", "kernel: 3, group: 2}"), {}, {"layers[1](conv1)", "not divisible by group 2"}},
      {"bad_filler", replace(b, "kernel: 3}", "kernel: 3, weight_filler: {type: xaviar}}"), {},
       {"weight_filler.type", "'xaviar' is not one of"}},
      {"engine_on_cpu", replace(b, "kernel: 3}", "kernel: 3, engine: cudnn}"), {}, {"engine 'cudnn' needs a CUDA device"}},
      {"duplicate_layer_key", replace(b, "kernel: 3}", "kernel: 3, kernel: 5}"), {},
       {"duplicate key 'kernel' (first at line", "in 'layers[1]'"}},
      {"duplicate_section", b + "solver: {max_iter: 3}\n", {}, {"duplicate key 'solver'", "the top-level map"}},
      {"bad_conv_algo", replace(b, "kernel: 3}", "kernel: 3, algo: winograd}"), {}, {"algo", "'winograd' is not one of"}},
  };
}

TEST(Config, BadInputTable) {
  for (const BadCase& c : bad_cases()) {
    SCOPED_TRACE(c.name);
    std::string msg = error_of(c.text, c.overrides);
    ASSERT_FALSE(msg.empty()) << c.name << ": no error";
    for (const auto& e : c.expect) EXPECT_NE(msg.find(e), std::string::npos) << c.name << ": '" << e << "' not in: " << msg;
  }
}

TEST(Config, RepeatExpandsWithArithmetic) {
  const char* text = R"(layers:
  - {name: a1, type: x}
  - repeat:
      var: i
      from: 2
      to: "{N}"
      layers:
        - {name: "a{i}", bottom: "a{i-1}", type: x}
vars: {N: 4}
)";
  LoadedConfig cfg = load_config_text(text, "r.yaml");
  YAML::Node layers = cfg.root["layers"];
  ASSERT_EQ(layers.size(), 4u);
  EXPECT_EQ(layers[3]["name"].as<std::string>(), "a4");
  EXPECT_EQ(layers[3]["bottom"].as<std::string>(), "a3");
  // vars can be overridden from the command line.
  LoadedConfig deeper = load_config_text(text, "r.yaml", {"vars.N=6"});
  EXPECT_EQ(deeper.root["layers"].size(), 6u);
}

TEST(Config, LayerOverrideAfterExpansion) {
  LoadedConfig cfg = load_config_text(kBase, "cfg.yaml", {"layers.conv1.num_output=7", "solver.max_iter=9"});
  EXPECT_EQ(cfg.root["layers"][1]["num_output"].as<int>(), 7);
  EXPECT_EQ(cfg.root["solver"]["max_iter"].as<int>(), 9);
}

}  // namespace
