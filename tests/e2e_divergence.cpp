// NaN injection: an absurd learning rate makes the loss explode; the run stops with a message
// that names the iteration and the first layer with a non-finite value, and the last snapshot
// written before it is intact (it loads and passes its checksum).
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "optim/snapshot.h"
#include "optim/solver.h"
#include "tests/testing/solvers.h"

using namespace dropnet;

namespace {

const char* kNet = R"(name: nan
seed: 3
data:
  train: {source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 64, batch_size: 8}
solver: {base_lr: 50, momentum: 0.9, max_iter: 200, display: 0, snapshot: 1}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 4, kernel: 3, weight_filler: {type: xavier}}
  - {name: fc1, type: fc, bottom: conv1, top: fc1, num_output: 4, weight_filler: {type: xavier}}
  - {name: loss, type: softmax_loss, bottom: [fc1, label], top: loss}
)";

TEST(Divergence, AbsurdLearningRateStopsWithMessageAndKeepsLastSnapshot) {
  const std::string dir = ::testing::TempDir() + "/nan_run";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::unique_ptr<Solver> run = dropnet::testing::quiet_solver(kNet, "nan.yaml", 1);
  Solver& s = *run;
  int64_t last_snapshot = -1;
  s.on_snapshot = [&](int64_t it) {
    save_snapshot(s, dir, "nan", 2);
    last_snapshot = it;
  };
  std::string msg;
  try {
    s.solve();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Diverged);
    msg = e.what();
  }
  ASSERT_FALSE(msg.empty()) << "the run did not stop";
  std::printf("stopped: %s (last snapshot at iteration %lld)\n", msg.c_str(), static_cast<long long>(last_snapshot));
  EXPECT_NE(msg.find("divergence"), std::string::npos) << msg;
  EXPECT_NE(msg.find("iteration " + std::to_string(s.iter())), std::string::npos) << msg;
  EXPECT_TRUE(msg.find("layer '") != std::string::npos || msg.find("parameter '") != std::string::npos) << msg;
  ASSERT_GE(last_snapshot, 1) << "diverged before the first snapshot; raise max_iter or lower the lr";
  EXPECT_LT(last_snapshot, 200);
  // The newest snapshot restores into a fresh solver and holds finite weights.
  const std::unique_ptr<Solver> fresh = dropnet::testing::quiet_solver(kNet, "nan.yaml", 1);
  ASSERT_NO_THROW(restore_snapshot(*fresh, dir));
  EXPECT_EQ(fresh->iter(), last_snapshot);
  for (float v : fresh->train_net().param_values().to_host()) ASSERT_TRUE(std::isfinite(v));
}

}  // namespace
