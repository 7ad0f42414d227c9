// Every shipped config builds its TRAIN and TEST nets and trains 2 iterations (with a test pass)
// on synthetic data of the config's sample shape, batch 2, on the CPU.
#include <gtest/gtest.h>

#include <cmath>

#include <yaml-cpp/yaml.h>

#include "data/sources.h"
#include "optim/solver.h"
#include "tests/testing/configs.h"

using namespace dropnet;

namespace {

TEST(ShippedConfigs, TrainTwoIterationsOnSyntheticData) {
  auto configs = dropnet::testing::shipped_configs_synthetic(2, 4);
  ASSERT_GE(configs.size(), 23u);
  for (const auto& [name, text] : configs) {
    SCOPED_TRACE(name);
    std::vector<std::string> overrides = {"solver.max_iter=2", "solver.test_iter=1", "solver.test_interval=2",
                                          "solver.display=1",  "solver.snapshot=0", "device=cpu"};
    LoadedConfig cfg = load_config_text(text, name, overrides);
    // Asynchronous DropIn starts its layers one after another: one that starts at or past max_iter
    // is a config error, so the 2-iteration run starts them all at 0.
    for (YAML::Node layer : cfg.root["layers"])
      if (layer["start"].IsDefined()) layer["start"] = 0;
    SolverOptions so;
    so.net.source_factory = make_batch_source;
    so.quiet = true;
    Solver s(cfg, so);
    std::vector<double> losses;
    s.on_record = [&](const TrainRecord& r) {
      if (r.kind != "train") return;
      for (auto& kv : r.values)
        if (kv.first == "loss") losses.push_back(kv.second);
    };
    ASSERT_NO_THROW(s.solve());
    EXPECT_EQ(s.iter(), 2);
    EXPECT_EQ(losses.size(), 2u);
    for (double l : losses) EXPECT_TRUE(std::isfinite(l) && l > 0) << l;
  }
}

}  // namespace
