// Strict config parsing: every malformed config is an input error naming file:line, the key
// path and (for layers) the layer.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/sources.h"
#include "core/config.h"
#include "optim/solver.h"
#include "tests/testing/harness.h"
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
    so.net.source_factory = make_batch_source;
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
       {"cfg.yaml:9:", "layers[1](conv1)", "unknown key 'kernal' (did you mean 'kernel'?)"}},
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
      // An override's mistake is located on the command line, not at a position in the file.
      {"override_unknown_key", b, {"layers.conv1.kernal=3"},
       {"override 'layers.conv1.kernal=3': layers[1](conv1).kernal: unknown key 'kernal' (did you mean 'kernel'?)"}},
      {"override_bad_section", b, {"data.test={source: synthetic, shape: [1, 8, 8], batch_size: 4, bogus: 1}"},
       {"override 'data.test={source: synthetic", "data.test.bogus: unknown key 'bogus'"}},
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

// ---- issue 17: bounded loading, finite numbers, names, file types ------------------------------

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// `levels` levels of `fan` aliases each: a1: &a1 [*a, *a, ...], ..., layers: *a<levels>.
std::string alias_bomb(int levels, int fan) {
  std::string t = "name: bomb\na0: &a0 {name: r, type: relu}\n";
  for (int l = 1; l <= levels; ++l) {
    t += fmt::format("a{}: &a{} [", l, l);
    for (int i = 0; i < fan; ++i) t += fmt::format("{}*a{}", i ? ", " : "", l - 1);
    t += "]\n";
  }
  return t + fmt::format("layers: *a{}\n", levels);
}

// A net of `n` layers: data, relu0 and a flat repeat of n - 2 relu layers.
std::string deep_relu_config(int n) {
  return fmt::format(R"(name: deep
seed: 1
data:
  train: {{source: synthetic, shape: [1, 2, 2], num_classes: 4, num_samples: 8, batch_size: 2}}
solver: {{base_lr: 0.1, max_iter: 1}}
layers:
  - {{name: data, type: data, top: [data, label]}}
  - {{name: relu0, type: relu, bottom: data, top: r0}}
  - repeat:
      var: i
      from: 1
      to: {}
      layers:
        - {{name: "relu{{i}}", type: relu, bottom: "r{{i-1}}", top: "r{{i}}"}}
)",
                     n - 2);
}

}  // namespace

TEST(ConfigLimits, AliasBombIsRefusedQuickly) {
  // 10^8 layers once expanded: counted while parsing, refused before any walk of the tree.
  const auto t0 = std::chrono::steady_clock::now();
  std::string msg;
  try {
    load_config_text(alias_bomb(8, 10), "bomb.yaml");
  } catch (const Error& e) {
    msg = e.what();
  }
  const double s = seconds_since(t0);
  EXPECT_NE(msg.find("more than 1000000 YAML nodes once aliases are expanded"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bomb.yaml:"), std::string::npos) << msg;
  EXPECT_LT(s, 2.0) << "alias bomb took " << s << " s";
  RecordProperty("alias_bomb_seconds", fmt::format("{:.4f}", s));
}

TEST(ConfigLimits, AliasesWithinTheBudgetStillWork) {
  // 3 x 3 uses of one layer: fine (and they expand to 9 layers).
  LoadedConfig cfg = load_config_text(alias_bomb(2, 3), "ok.yaml");
  EXPECT_EQ(cfg.root["layers"].size(), 3u);
  EXPECT_EQ(cfg.root["layers"][2].size(), 3u);
}

TEST(ConfigLimits, AliasCycleIsAnError) {
  std::string msg;
  try {
    load_config_text("name: c\nlayers: &a [*a]\n", "cycle.yaml");
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("cycle"), std::string::npos) << msg;
}

TEST(ConfigLimits, RepeatOfAnAliasBombIsBounded) {
  // Each of 10,000 iterations would copy 5 x 10^4 nodes: the expansion budget stops it.
  std::string t = alias_bomb(4, 10);
  t.replace(t.find("layers: *a4"), std::string::npos, "layers:\n  - repeat: {count: 10000, layers: [{name: \"x{i}\", extra: *a4}]}\n");
  const auto t0 = std::chrono::steady_clock::now();
  std::string msg;
  try {
    load_config_text(t, "r.yaml");
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("repeat blocks expand to more than 1000000 YAML nodes"), std::string::npos) << msg;
  // Copying the budget's million yaml-cpp nodes takes ~6 s here, ~12 s under ASan and 34 s under
  // ASan beside two other test processes on 2 cores (without the budget: 5 x 10^8 nodes).
  EXPECT_LT(seconds_since(t0), dropnet::testing::sanitized() ? 120.0 : 30.0);
}

TEST(ConfigLimits, NestedEmptyRepeatsAreBounded) {
  // 8 levels of 10,000 iterations of nothing: 10^32 iterations without the iteration count.
  std::string inner = "[]";
  for (int d = 0; d < 8; ++d) inner = "[{repeat: {var: v" + std::to_string(d) + ", count: 10000, layers: " + inner + "}}]";
  const auto t0 = std::chrono::steady_clock::now();
  std::string msg;
  try {
    load_config_text("name: n\nlayers: " + inner + "\n", "n.yaml");
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("repeat blocks expand to more than"), std::string::npos) << msg;
  EXPECT_LT(seconds_since(t0), 5.0);
}

TEST(ConfigLimits, RepeatBoundsAndArithmeticCannotOverflow) {
  EXPECT_NE(error_of(replace(kBase, "name: fc1,", "name: 'fc{N+9223372036854775807}',") + "vars: {N: 5}\n")
                .find("overflows"),
            std::string::npos);
  std::string msg;
  try {
    load_config_text("layers: [{repeat: {from: -9223372036854775807, count: 9999, layers: []}}]\n", "o.yaml");
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("must lie within"), std::string::npos) << msg;
}

TEST(ConfigLimits, TenThousandLayersLoadInAboutASecond) {
  // Was worse than quadratic (yaml-cpp merging node sets on every copied layer): 1,000 layers 17.6 s.
  const auto t0 = std::chrono::steady_clock::now();
  LoadedConfig cfg = load_config_text(deep_relu_config(10000), "deep.yaml");
  const double load_s = seconds_since(t0);
  ASSERT_EQ(cfg.root["layers"].size(), 10000u);
  EXPECT_EQ(cfg.root["layers"][9999]["name"].Scalar(), "relu9998");
  EXPECT_EQ(cfg.root["layers"][9999]["bottom"].Scalar(), "r9997");
  // And builds (the net's own checks over 10,000 layers).
  cli::read_run_settings(cfg);
  SolverOptions so;
  so.net.source_factory = make_batch_source;
  Solver s(cfg, so);
  const double build_s = seconds_since(t0);
  RecordProperty("load_seconds", fmt::format("{:.3f}", load_s));
  RecordProperty("load_and_build_seconds", fmt::format("{:.3f}", build_s));
  std::printf("10,000-layer config: load %.3f s, load + build %.3f s\n", load_s, build_s);
  // "About a second"; the bound leaves room for a loaded machine and sanitizer builds.
  EXPECT_LT(load_s, 5.0);
  // A layer override still finds an expanded layer, and the expanded layers are distinct nodes.
  LoadedConfig o = load_config_text(deep_relu_config(50), "deep.yaml", {"layers.relu7.negative_slope=0.5"});
  EXPECT_EQ(o.root["layers"][8]["negative_slope"].Scalar(), "0.5");
  EXPECT_FALSE(o.root["layers"][9]["negative_slope"].IsDefined());
}

TEST(ConfigLimits, NulBytesAreRefusedBeforeParsing) {
  // Found by fuzz_config_loader: 16 bytes with a NUL kept yaml-cpp busy for 2.2 s (ASan build).
  const std::string text("\x2c\xbd\x00\x6d\x20\x3a\x65\x6c\x35\x2c\x20\x23\x35\x30\x7d\x0a", 16);
  const auto t0 = std::chrono::steady_clock::now();
  std::string msg;
  try {
    load_config_text(text, "nul.yaml");
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("nul.yaml: not a text file (contains NUL bytes)"), std::string::npos) << msg;
  EXPECT_LT(seconds_since(t0), 0.5);
}

TEST(ConfigLimits, LayerCountIsBounded) {
  std::string msg;
  try {
    load_config_text(deep_relu_config(10001), "deep.yaml");
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("more than 10000 layers"), std::string::npos) << msg;
}

TEST(ConfigLimits, NonFiniteNumbersAreConfigErrors) {
  const std::string b = kBase;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {replace(b, "base_lr: 0.1", "base_lr: inf"), "solver.base_lr"},
      {replace(b, "base_lr: 0.1", "base_lr: nan"), "solver.base_lr"},
      {replace(b, "base_lr: 0.1", "base_lr: 1e39"), "solver.base_lr"},
      {replace(b, "base_lr: 0.1", "base_lr: 0.1, momentum: -inf"), "solver.momentum"},
      {replace(b, "batch_size: 4}\n  test", "batch_size: 4, scale: nan}\n  test"), "scale"},
      {replace(b, "batch_size: 4}\n  test", "batch_size: 4, mean: [0, nan]}\n  test"), "mean"},
      {replace(b, "kernel: 3}", "kernel: 3, weight_filler: {type: gaussian, std: nan}}"), "weight_filler.std"},
      {replace(b, "kernel: 3}", "kernel: 3, bias_filler: {type: constant, value: inf}}"), "bias_filler.value"},
  };
  for (const auto& [text, key] : cases) {
    std::string msg = error_of(text);
    EXPECT_NE(msg.find(key), std::string::npos) << key << ": " << msg;
    EXPECT_NE(msg.find("expected a finite number"), std::string::npos) << key << ": " << msg;
  }
  // The same through a command-line override.
  EXPECT_NE(error_of(kBase, {"data.test.scale=nan"}).find("expected a finite number"), std::string::npos);
}

TEST(ConfigLimits, ParameterArenaIsBounded) {
  // Each fc weight below the limit, their sum (one arena allocation) above it.
  const std::string text = replace(replace(kBase, "num_output: 4}", "num_output: 4000}"), "  - {name: loss",
                                   "  - {name: fc2, type: fc, bottom: fc1, top: fc2, num_output: 4000}\n"
                                   "  - {name: fc3, type: fc, bottom: fc2, top: fc3, num_output: 4000}\n  - {name: loss");
  LoadedConfig cfg = load_config_text(replace(text, "bottom: [fc1, label]", "bottom: [fc3, label]"), "cfg.yaml");
  SolverOptions so;
  so.net.source_factory = make_batch_source;
  so.net.shapes_only = true;
  so.net.max_param_floats = 20e6;  // each fc weight (16e6 floats) stays below max_blob_floats
  std::string msg;
  try {
    Solver s(cfg, so);
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("the parameters of the net total 32444048 floats"), std::string::npos) << msg;
}

TEST(ConfigLimits, NamesAreCheckedAtLoad) {
  // Refused by --dry-run (what error_of builds), not at the first snapshot after training.
  for (const char* bad : {"../../x", "a/b", "..", "a\\\\b"}) {
    std::string msg = error_of(replace(kBase, "name: t", fmt::format("name: '{}'", bad)));
    EXPECT_NE(msg.find("must be a plain name"), std::string::npos) << bad << ": " << msg;
  }
  EXPECT_NE(error_of(kBase, {"solver.snapshot_prefix=../y"}).find("solver.snapshot_prefix"), std::string::npos);
  // A 10 MB name gives a short message.
  const std::string huge(10 << 20, 'n');
  std::string msg = error_of(replace(kBase, "name: t", "name: " + huge));
  EXPECT_NE(msg.find("longer than 128 bytes"), std::string::npos) << msg.substr(0, 200);
  EXPECT_LT(msg.size(), 400u);
  // Nor does a huge unknown key or a huge wrong value.
  msg = error_of(replace(kBase, "kernel: 3}", "kernel: 3, " + huge.substr(0, 1000) + ": 1}"));  // YAML: keys < 1024
  EXPECT_NE(msg.find("unknown key 'nnnn"), std::string::npos) << msg.substr(0, 300);
  EXPECT_LT(msg.size(), 600u);
  msg = error_of(replace(kBase, "kernel: 3}", "kernel: " + huge.substr(0, 1 << 20) + "}"));
  EXPECT_NE(msg.find("expected an integer or a list of integers, got 'nnnn"), std::string::npos) << msg.substr(0, 200);
  EXPECT_LT(msg.size(), 400u);
  msg = error_of(replace(kBase, "name: fc1", "name: " + huge.substr(0, 1 << 20)));
  EXPECT_NE(msg.find("a layer name has 1 to 128 bytes"), std::string::npos) << msg.substr(0, 200);
  EXPECT_LT(msg.size(), 400u);
}

// ---- issue 18: integer expressions in placeholders, asynchronous DropIn at depth ----------------

namespace {

// A layer with `v: '<scalar>'` in a repeat block at i = 5, with vars N = 7 and S = 100; the
// scalar sits on line 8 of "e.yaml".
std::string expr_config(const std::string& scalar) {
  return "vars: {N: 7, S: 100}\n"
         "layers:\n"
         "  - repeat:\n"
         "      var: i\n"
         "      from: 5\n"
         "      to: 5\n"
         "      layers:\n"
         "        - {name: x, v: '" + scalar + "'}\n";
}

// The scalar `v` after substitution.
std::string expand(const std::string& scalar, const std::vector<std::string>& overrides = {}) {
  LoadedConfig cfg = load_config_text(expr_config(scalar), "e.yaml", overrides);
  return cfg.root["layers"][0]["v"].Scalar();
}

std::string expand_error(const std::string& scalar) {
  return dropnet::testing::input_error_of([&] { load_config_text(expr_config(scalar), "e.yaml"); });
}

}  // namespace

TEST(ConfigExpr, PrecedenceAndAssociativity) {
  EXPECT_EQ(expand("{1+2*3}"), "7");
  EXPECT_EQ(expand("{2*3+1}"), "7");
  EXPECT_EQ(expand("{10-4-3}"), "3");      // (10 - 4) - 3, not 10 - (4 - 3)
  EXPECT_EQ(expand("{100/10/5}"), "2");    // (100 / 10) / 5
  EXPECT_EQ(expand("{2*3%4}"), "2");       // (2 * 3) % 4, not 2 * (3 % 4) = 6
  EXPECT_EQ(expand("{20-6/2*3}"), "11");   // 20 - ((6 / 2) * 3)
  EXPECT_EQ(expand("{1-2+3}"), "2");
}

TEST(ConfigExpr, ParenthesesUnaryMinusAndWhitespace) {
  EXPECT_EQ(expand("{(1+2)*3}"), "9");
  EXPECT_EQ(expand("{((2))*(3+(4-1))}"), "12");
  EXPECT_EQ(expand("{-3+5}"), "2");
  EXPECT_EQ(expand("{--3}"), "3");
  EXPECT_EQ(expand("{-(2+3)*2}"), "-10");
  EXPECT_EQ(expand("{2*-3}"), "-6");
  EXPECT_EQ(expand("{ ( i - 2 ) * S }"), "300");
  EXPECT_EQ(expand("{\ti\t}"), "5");
  // 64 nested parentheses are allowed.
  EXPECT_EQ(expand("{" + std::string(64, '(') + "i" + std::string(64, ')') + "}"), "5");
  EXPECT_EQ(expand("{" + std::string(64, '-') + "i}"), "5");
}

TEST(ConfigExpr, DivisionAndModuloTruncateTowardZero) {
  EXPECT_EQ(expand("{7/2}"), "3");
  EXPECT_EQ(expand("{-7/2}"), "-3");
  EXPECT_EQ(expand("{7/-2}"), "-3");
  EXPECT_EQ(expand("{7%3}"), "1");
  EXPECT_EQ(expand("{-7%3}"), "-1");
  EXPECT_EQ(expand("{7%-3}"), "1");
  EXPECT_EQ(expand("{S/i/i}"), "4");
  EXPECT_EQ(expand("{N%i}"), "2");
  // INT64_MIN % -1 is 0 (in C++ it is undefined behaviour and traps on x86).
  EXPECT_EQ(expand("{(-9223372036854775807-1)%-1}"), "0");
  EXPECT_EQ(expand("{-9223372036854775807-1}"), "-9223372036854775808");
  EXPECT_EQ(expand("{9223372036854775807}"), "9223372036854775807");
}

TEST(ConfigExpr, VariablesFromVarsLoopsAndOverrides) {
  EXPECT_EQ(expand("{(i-2)*S}"), "300");  // the asynchronous DropIn start: i = 5, S = 100
  EXPECT_EQ(expand("{N*N-i}"), "44");
  EXPECT_EQ(expand("{(i-2)*S}", {"vars.S=250"}), "750");
  // Text around placeholders and the old forms are unchanged.
  EXPECT_EQ(expand("a{i}b{N}c{i-1}d{i+1}"), "a5b7c4d6");
  EXPECT_EQ(expand("{i - 1}"), "4");
  EXPECT_EQ(expand("{i-+1}"), "4");
  EXPECT_EQ(expand("x{i}{unclosed"), "x5{unclosed");
  EXPECT_EQ(expand("no placeholder"), "no placeholder");
  // Nested loop variables, and expressions in the repeat bounds.
  LoadedConfig cfg = load_config_text(R"(vars: {N: 6}
layers:
  - repeat:
      var: i
      from: "{N/3}"
      to: "{N/2}"
      layers:
        - repeat:
            var: j
            count: "{i-1}"
            layers:
              - {name: "x{i*10+j}", start: "{(i-2)*100 + (j-1)*10}"}
)",
                                      "n.yaml");
  YAML::Node layers = cfg.root["layers"];
  ASSERT_EQ(layers.size(), 3u);  // i = 2: j = 1; i = 3: j = 1, 2
  EXPECT_EQ(layers[0]["name"].Scalar(), "x21");
  EXPECT_EQ(layers[0]["start"].Scalar(), "0");
  EXPECT_EQ(layers[1]["name"].Scalar(), "x31");
  EXPECT_EQ(layers[1]["start"].Scalar(), "100");
  EXPECT_EQ(layers[2]["name"].Scalar(), "x32");
  EXPECT_EQ(layers[2]["start"].Scalar(), "110");
}

TEST(ConfigExpr, ErrorsNameTheProblemAndTheLine) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"{i/0}", {"'{i/0}': division by zero"}},
      {"a{i/(N-7)}", {"'{i/(N-7)}' in 'a{i/(N-7)}': division by zero"}},
      {"{i%(N-7)}", {"'{i%(N-7)}': modulo by zero"}},
      {"{N+9223372036854775807}", {"'{N+9223372036854775807}' overflows a 64-bit integer"}},
      {"{-N-9223372036854775807}", {"overflows a 64-bit integer"}},
      {"{S*92233720368547759}", {"'{S*92233720368547759}' overflows a 64-bit integer"}},
      {"{9223372036854775808}", {"'{9223372036854775808}' overflows a 64-bit integer"}},
      {"{-(-9223372036854775807-1)}", {"overflows a 64-bit integer"}},
      {"{(-9223372036854775807-1)/-1}", {"overflows a 64-bit integer"}},
      {"x{k+1}", {"unknown variable 'k' in '{k+1}' in 'x{k+1}' (variables here: N, S, i)"}},
      {"{i+}", {"bad expression '{i+}': it ends where a number, a variable or '(' should follow"}},
      {"{}", {"bad expression '{}': it is empty"}},
      {"{ }", {"bad expression '{ }': it is empty"}},
      {"{(i-2}", {"bad expression '{(i-2}': a '(' is not closed"}},
      {"{(i-2 3)}", {"bad expression '{(i-2 3)}': expected ')' at '3)'"}},
      {"{i)}", {"bad expression '{i)}': unexpected ')'"}},
      {"{2 3}", {"bad expression '{2 3}': unexpected '3'"}},
      {"{i*/2}", {"bad expression '{i*/2}': expected a number, a variable or '(' at '/2'"}},
      {"{i.5}", {"bad expression '{i.5}': unexpected '.5'"}},
      {"{" + std::string(65, '(') + "i" + std::string(65, ')') + "}", {"nested deeper than 64 parentheses and signs"}},
      {"{" + std::string(65, '-') + "i}", {"nested deeper than 64 parentheses and signs"}},
  };
  for (const auto& [scalar, expect] : cases) {
    SCOPED_TRACE(scalar);
    const std::string msg = expand_error(scalar);
    EXPECT_EQ(msg.rfind("e.yaml:8:24: ", 0), 0u) << msg;  // file:line:column of the scalar
    for (const auto& e : expect) EXPECT_NE(msg.find(e), std::string::npos) << "'" << e << "' not in: " << msg;
  }
  // A hostile placeholder gives a short message, quickly (no deep recursion).
  const auto t0 = std::chrono::steady_clock::now();
  const std::string msg = expand_error("{" + std::string(1 << 20, '(') + "}");
  EXPECT_LT(seconds_since(t0), 1.0);
  EXPECT_NE(msg.find("nested deeper than 64"), std::string::npos) << msg.substr(0, 300);
  EXPECT_LT(msg.size(), 400u);
}

namespace {

struct AsyncConfig {
  const char* file;
  int n;             // LeNet(2N)
  bool dropin;       // false: the plain baseline
  int64_t max_iter;
  int64_t spacing;   // vars.S
  int64_t length;    // vars.L
};

}  // namespace

TEST(ConfigAsync, ShippedAsyncConfigsLoadAndBuildQuickly) {
  const std::vector<AsyncConfig> configs = {
      {"lenet100_async.yaml", 50, true, 20000, 240, 200},
      {"lenet200_async.yaml", 100, true, 30000, 180, 150},
      {"lenet100_async_plain.yaml", 50, false, 20000, 0, 0},
      {"lenet200_async_plain.yaml", 100, false, 30000, 0, 0},
  };
  for (const AsyncConfig& c : configs) {
    SCOPED_TRACE(c.file);
    const auto t0 = std::chrono::steady_clock::now();
    // Synthetic data of Fashion-MNIST's sample shape: neither the data files nor their decoding.
    const std::string synthetic = "{source: synthetic, shape: [1, 28, 28], num_classes: 10, num_samples: 8, batch_size: 2}";
    LoadedConfig cfg = load_config_file(std::string(DROPNET_SOURCE_DIR) + "/configs/" + c.file,
                                        {"data.train=" + synthetic, "data.test=" + synthetic});
    SolverOptions so;
    so.net.source_factory = make_batch_source;
    so.net.shapes_only = true;
    so.quiet = true;
    Solver s(cfg, so);
    const double secs = seconds_since(t0);
    RecordProperty(std::string(c.file) + "_load_and_build_seconds", fmt::format("{:.3f}", secs));
    std::printf("%s: load + build (shapes only) %.3f s\n", c.file, secs);

    EXPECT_EQ(cfg.root["solver"]["max_iter"].as<int64_t>(), c.max_iter);
    const Net& net = s.train_net();
    int convs = 0, dropins = 0;
    for (int i = 0; i < net.num_layers(); ++i) {
      convs += net.layer(i).type() == "conv";
      dropins += net.layer(i).type() == "dropin";
    }
    EXPECT_EQ(convs, 2 * c.n);  // LeNet(2N): N convs per stage
    EXPECT_EQ(dropins, c.dropin ? 2 * (c.n - 1) : 0);
    // data, 2N convs, 2 (N - 1) DropIns, pool1, pool2, ip1, relu1, ip2, loss (accuracy: TEST only).
    EXPECT_EQ(net.num_layers(), 2 * c.n + (c.dropin ? 2 * (c.n - 1) : 0) + 7);

    if (c.dropin) {
      // Per stage: DropIn i starts at (i - 2) * S, strictly after DropIn i - 1; the last one is fully
      // in by max_iter.
      for (const char* stage : {"dropin1_", "dropin2_"}) {
        std::vector<int64_t> starts;
        for (const auto& l : cfg.root["layers"]) {
          if (l["name"].Scalar().rfind(stage, 0) != 0) continue;
          EXPECT_EQ(l["length"].as<int64_t>(), c.length);
          starts.push_back(l["start"].as<int64_t>());
        }
        ASSERT_EQ(starts.size(), static_cast<size_t>(c.n - 1)) << stage;
        EXPECT_EQ(starts.front(), 0);
        for (size_t k = 1; k < starts.size(); ++k) {
          EXPECT_GT(starts[k], starts[k - 1]) << stage << k + 2;
          EXPECT_EQ(starts[k] - starts[k - 1], c.spacing) << stage << k + 2;
        }
        EXPECT_EQ(starts.back(), (c.n - 2) * c.spacing);
        EXPECT_LE(starts.back() + c.length, c.max_iter) << stage << ": the last DropIn ends after max_iter";
        // Added one after another: a DropIn is fully in before the next one starts.
        EXPECT_LE(c.length, c.spacing);
      }
    }
    // A sanity bound, not a benchmark; sanitizer builds are several times slower.
    if (!dropnet::testing::sanitized()) {
      EXPECT_LT(secs, 1.0) << c.file;
    }
  }
}

// ---- issue 16: a resolved config without anchors; configs compared; loaded again from its source

namespace {

TEST(ConfigDump, SharedNodesAreWrittenOutWithoutAnchors) {
  // A YAML alias (the same fillers twice) and a repeat block (the same layer map per iteration).
  const char* text = R"(name: t
filler: &xavier {type: xavier}
layers:
  - {name: a1, type: x, weight_filler: *xavier}
  - repeat:
      var: i
      from: 2
      to: 4
      layers:
        - {name: "a{i}", bottom: "a{i-1}", type: x, weight_filler: *xavier}
)";
  LoadedConfig cfg = load_config_text(text, "a.yaml");
  const std::string dumped = dump_config(cfg);
  EXPECT_EQ(dumped.find('&'), std::string::npos) << dumped;
  EXPECT_EQ(dumped.find('*'), std::string::npos) << dumped;
  // Read back, it is the same config.
  LoadedConfig again = load_config_text(dumped, "dumped.yaml");
  EXPECT_EQ(config_differences(cfg, again), std::vector<std::string>{}) << dumped;
  EXPECT_EQ(again.root["layers"][3]["weight_filler"]["type"].Scalar(), "xavier");
}

TEST(ConfigDump, EveryShippedConfigReadsBackAsItself) {
  for (const char* name : {"lenet.yaml", "lenet10.yaml", "lenet10_grow.yaml", "lenet100_async.yaml",
                           "cifar10_11.yaml", "alexnet13.yaml", "vgg16.yaml"}) {
    LoadedConfig cfg = load_config_file(std::string(DROPNET_SOURCE_DIR) + "/configs/" + name);
    const std::string dumped = dump_config(cfg);
    EXPECT_EQ(dumped.find("&1"), std::string::npos) << name;
    EXPECT_EQ(config_differences(cfg, load_config_text(dumped, name)), std::vector<std::string>{}) << name;
  }
}

TEST(ConfigDiff, NamesEachDifferenceByItsOverridePath) {
  LoadedConfig a = load_config_text(kBase, "a.yaml");
  EXPECT_TRUE(config_differences(a, load_config_text(kBase, "b.yaml")).empty());
  LoadedConfig b = load_config_text(kBase, "b.yaml",
                                    {"solver.base_lr=0.2", "layers.conv1.kernel=5", "layers.fc1.bias_term=false",
                                     "seed=4"});
  const std::vector<std::string> want = {"seed: 3 vs 4", "solver.base_lr: 0.1 vs 0.2", "layers.conv1.kernel: 3 vs 5",
                                         "layers.fc1.bias_term: (absent) vs false"};
  EXPECT_EQ(config_differences(a, b), want);
  // One part only; a cap with the count of the rest.
  EXPECT_EQ(config_differences(a, b, 12, "layers"),
            (std::vector<std::string>{"layers.conv1.kernel: 3 vs 5", "layers.fc1.bias_term: (absent) vs false"}));
  EXPECT_EQ(config_differences(a, b, 1), (std::vector<std::string>{"seed: 3 vs 4", "... and 3 more"}));
  // A layer added, a list item changed, a map replaced by a scalar.
  LoadedConfig c = load_config_text(replace(replace(kBase, "top: fc1, num_output: 4}",
                                                    "top: fc1, num_output: 4}\n  - {name: r, type: relu, bottom: fc1, "
                                                    "top: fc1}"),
                                            "shape: [1, 8, 8], num_classes: 4, num_samples: 32, batch_size: 4}\n  test",
                                            "shape: [1, 9, 8], num_classes: 4, num_samples: 32, batch_size: 4}\n  test"),
                                    "c.yaml", {"data.test=none"});
  const std::vector<std::string> d = config_differences(a, c);
  const std::vector<std::string> want_c = {"data.train.shape.1: 8 vs 9", "data.test: (a map of 5 keys) vs none",
                                           "layers.r: (absent) vs (a map of 4 keys)"};
  EXPECT_EQ(d, want_c);
}

TEST(ConfigSource, LoadsAgainWithMoreOverrides) {
  const char* text = R"(name: t
vars: {N: 3}
layers:
  - {name: a1, type: x}
  - repeat:
      var: i
      from: 2
      to: "{N}"
      layers:
        - {name: "a{i}", bottom: "a{i-1}", type: x, k: "{i*N}"}
)";
  LoadedConfig first = load_config_text(text, "s.yaml", {"vars.N=4", "layers.a2.k=1"});
  ASSERT_EQ(first.root["layers"].size(), 4u);
  EXPECT_EQ(first.overrides, (std::vector<std::string>{"vars.N=4", "layers.a2.k=1"}));
  // Its source and overrides give it back.
  LoadedConfig again = load_config_text(first.source, "again.yaml", first.overrides);
  EXPECT_TRUE(config_differences(first, again).empty());
  // More overrides act as they would have the first time: N re-expands the layers.
  std::vector<std::string> more = first.overrides;
  more.push_back("vars.N=5");
  LoadedConfig deeper = load_config_text(first.source, "again.yaml", more);
  ASSERT_EQ(deeper.root["layers"].size(), 5u);
  EXPECT_EQ(deeper.root["layers"][2]["k"].Scalar(), "15");
  EXPECT_EQ(deeper.root["layers"][1]["k"].Scalar(), "1");
}

}  // namespace
