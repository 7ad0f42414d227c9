// Config fuzz: mutations of every shipped config (deleted keys, wrong types, huge and negative
// numbers, unknown layer types, cycles, duplicate names, truncation, byte flips, empty files,
// binary garbage) go through what `dropnet-train --dry-run` does. Each must either build or fail
// with a dropnet input error (exit code 2 in the CLI); never another exception, a crash or a hang.
// A sample also runs through the real CLI to check the exit code.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sys/wait.h>

#include "core/error.h"
#include "core/rng.h"
#include "data/sources.h"
#include "core/config.h"
#include "optim/solver.h"
#include "tests/testing/configs.h"
#include "tools/cli_common.h"

using namespace dropnet;

namespace {

// Shipped configs with small synthetic data and one iteration.
std::vector<std::pair<std::string, std::string>> shipped_texts() {
  auto texts = dropnet::testing::shipped_configs_synthetic();
  for (auto& [name, text] : texts) text += "\n";
  return texts;
}

enum class Outcome { Built, InputError, OtherError };

Outcome dry_run(const std::string& text, std::string* msg) {
  try {
    LoadedConfig cfg = load_config_text(text, "fuzz.yaml");
    cli::read_run_settings(cfg);
    SolverOptions so;
    so.net.source_factory = make_batch_source;
    so.net.max_blob_floats = 1 << 27;  // keep the fuzz small (VGG's fc6 is 1.03e8 floats)
    Solver s(cfg, so);
    return Outcome::Built;
  } catch (const Error& e) {
    *msg = e.what();
    return e.kind() == ErrorKind::Input ? Outcome::InputError : Outcome::OtherError;
  } catch (const std::exception& e) {
    *msg = std::string("non-dropnet exception: ") + e.what();
    return Outcome::OtherError;
  }
}

// Collects pointers to every node of a tree (maps' values and sequences' items).
void collect(YAML::Node n, std::vector<YAML::Node>* out) {
  out->push_back(n);
  if (n.IsMap())
    for (auto kv : n) collect(kv.second, out);
  if (n.IsSequence())
    for (auto e : n) collect(e, out);
}

std::string mutate(const std::string& text, HostRng& rng, std::string* kind) {
  const char* bad_values[] = {"abc", "[1, 2]", "{a: 1}", "-1", "0", "1e30", "99999999999", "-99999999999999999999",
                              ".nan", "true", "''", "2147483648", "3.5", "~"};
  int m = static_cast<int>(rng.below(9));
  YAML::Node root = YAML::Load(text);
  std::vector<YAML::Node> nodes;
  collect(root, &nodes);
  switch (m) {
    case 0: {  // delete a key
      *kind = "delete_key";
      std::vector<YAML::Node> maps;
      for (auto& n : nodes)
        if (n.IsMap() && n.size() > 0) maps.push_back(n);
      YAML::Node mp = maps[rng.below(maps.size())];
      size_t k = rng.below(mp.size()), i = 0;
      std::string key;
      for (auto kv : mp)
        if (i++ == k) key = kv.first.Scalar();
      mp.remove(key);
      break;
    }
    case 1: {  // wrong type / huge / negative scalar
      *kind = "bad_value";
      std::vector<YAML::Node> scalars;
      for (auto& n : nodes)
        if (n.IsScalar()) scalars.push_back(n);
      YAML::Node s = scalars[rng.below(scalars.size())];
      s = YAML::Load(bad_values[rng.below(sizeof(bad_values) / sizeof(bad_values[0]))]);
      break;
    }
    case 2: {  // unknown layer type
      *kind = "unknown_type";
      YAML::Node layers = root["layers"];
      layers[rng.below(layers.size())]["type"] = "convolution3d";
      break;
    }
    case 3: {  // duplicate a layer (duplicate names and tops)
      *kind = "duplicate_layer";
      YAML::Node layers = root["layers"];
      layers.push_back(YAML::Clone(layers[rng.below(layers.size())]));
      break;
    }
    case 4: {  // cycle: a bottom that names a later top
      *kind = "cycle";
      YAML::Node layers = root["layers"];
      size_t i = rng.below(layers.size() - 1);
      layers[i]["bottom"] = layers[layers.size() - 1]["top"];
      break;
    }
    case 5:
      *kind = "empty";
      return rng.below(2) ? "" : "\n# nothing\n";
    case 6: {
      *kind = "garbage";
      std::string g(static_cast<size_t>(1 + rng.below(400)), ' ');
      for (auto& c : g) c = static_cast<char>(rng.below(256));
      return g;
    }
    case 7:
      *kind = "truncate";
      return text.substr(0, rng.below(text.size()));
    default: {
      *kind = "byte_flips";
      std::string t = text;
      for (int k = 0; k < 3; ++k) t[rng.below(t.size())] = static_cast<char>(rng.below(256));
      return t;
    }
  }
  YAML::Emitter e;
  e << root;
  return e.c_str();
}

TEST(FuzzConfig, MutationsFailCleanly) {
  auto texts = shipped_texts();
  ASSERT_GE(texts.size(), 20u);
  for (auto& [name, text] : texts) {
    std::string msg;
    EXPECT_EQ(dry_run(text, &msg), Outcome::Built) << name << ": " << msg;
  }
  HostRng rng(2026, 11);
  std::map<std::string, int> built, input_errors;
  int trials = 0, other = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < 600; ++t) {
    // The big ImageNet nets are slow to build: weight the small ones.
    const auto& [name, text] = texts[rng.below(texts.size())];
    if ((name.rfind("vgg", 0) == 0 || name.rfind("alexnet", 0) == 0) && rng.below(4) != 0) {
      --t;
      continue;
    }
    std::string kind, msg;
    std::string mutated = mutate(text, rng, &kind);
    Outcome o = dry_run(mutated, &msg);
    ++trials;
    if (o == Outcome::Built) ++built[kind];
    if (o == Outcome::InputError) {
      ++input_errors[kind];
      EXPECT_FALSE(msg.empty());
    }
    if (o == Outcome::OtherError) {
      if (other == 0) std::ofstream(::testing::TempDir() + "/fuzz_config_failure.yaml", std::ios::binary) << mutated;
      ++other;
      ADD_FAILURE() << name << " / " << kind << ": " << msg << "\n--- config ---\n" << mutated.substr(0, 2000);
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d mutations in %.1f s: %d other errors (must be 0)\n", trials, secs, other);
  for (auto& kv : input_errors) std::printf("  %-16s input errors %4d, built %4d\n", kv.first.c_str(), kv.second, built[kv.first]);
  EXPECT_GE(trials, 500);
}

// The real CLI: exit code 2 and a message on stderr for a sample of bad configs.
TEST(FuzzConfig, CliExitsWithCode2) {
  const char* tools = std::getenv("DROPNET_TOOLS_DIR");
  if (tools == nullptr) GTEST_SKIP() << "DROPNET_TOOLS_DIR not set (run through ctest)";
  const std::string bin = std::string(tools) + "/dropnet-train";
  const std::string dir = ::testing::TempDir() + "/fuzz_cli";
  std::filesystem::create_directories(dir);
  auto texts = shipped_texts();
  HostRng rng(7, 3);
  int checked = 0;
  for (int t = 0; t < 24; ++t) {
    std::string kind, msg;
    std::string mutated = mutate(texts[rng.below(texts.size())].second, rng, &kind);
    if (dry_run(mutated, &msg) != Outcome::InputError) continue;
    const std::string path = dir + "/c" + std::to_string(t) + ".yaml";
    std::ofstream(path, std::ios::binary) << mutated;
    const std::string cmd = bin + " " + path + " --dry-run > " + path + ".out 2> " + path + ".err";
    int rc = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(rc)) << kind << ": killed by a signal";
    EXPECT_EQ(WEXITSTATUS(rc), 2) << kind;
    std::ifstream err(path + ".err");
    std::string all((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
    EXPECT_NE(all.find("dropnet-train: error: "), std::string::npos) << all;
    ++checked;
  }
  EXPECT_GE(checked, 8);
}

}  // namespace
