// End to end: Caffe's LeNet (configs/lenet.yaml) on a 2,000-image slice of Fashion-MNIST for 200
// iterations reduces the loss clearly; LeNet(10)+DropIn grows its DropIn layers on schedule.
#include <gtest/gtest.h>

#include <filesystem>

#include "data/sources.h"
#include "optim/solver.h"

using namespace dropnet;

namespace {

const std::string kData = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

double mean_loss(Solver& s, int64_t batches) {
  double l = 0;
  RunContext ctx{Phase::Train, s.iter(), s.seed(), 0};
  for (int64_t i = 0; i < batches; ++i) l += s.train_net().forward(ctx);
  return l / static_cast<double>(batches);
}

TEST(E2E, LenetLossDropsOn2000Images) {
  if (!std::filesystem::exists(kData)) GTEST_SKIP() << "Fashion-MNIST not installed (dataset-fashion-mnist)";
  LoadedConfig cfg = load_config_file(std::string(DROPNET_SOURCE_DIR) + "/configs/lenet.yaml",
                                      {"data.train.limit=2000", "data.test.limit=500", "solver.max_iter=200",
                                       "solver.test_interval=0", "solver.display=0", "solver.snapshot=0",
                                       "data.train.shuffle=true", "device=cpu"});
  SolverOptions so;
  so.net.source_factory = make_batch_source;
  Solver s(cfg, so);
  const double before = mean_loss(s, 10);
  s.solve();
  const double after = mean_loss(s, 10);
  std::printf("loss over 10 batches: before %.4f, after 200 iterations %.4f\n", before, after);
  EXPECT_GT(before, 2.0);
  EXPECT_LT(after, 0.5 * before);
  EXPECT_LT(after, 1.0);
  auto test = s.test(5);
  for (auto& kv : test) {
    if (kv.first == "accuracy") {
      EXPECT_GT(kv.second, 0.6) << "test accuracy after 200 iterations";
    }
  }
}

TEST(E2E, Lenet10DropinGrowsOnSchedule) {
  if (!std::filesystem::exists(kData)) GTEST_SKIP() << "Fashion-MNIST not installed (dataset-fashion-mnist)";
  LoadedConfig cfg = load_config_file(std::string(DROPNET_SOURCE_DIR) + "/configs/lenet10.yaml",
                                      {"data.train.limit=1000", "data.train.batch_size=16", "solver.max_iter=60",
                                       "solver.test_interval=0", "solver.display=20", "solver.snapshot=0",
                                       "vars.L=40", "solver.base_lr=0.001", "device=cpu"});
  SolverOptions so;
  so.net.source_factory = make_batch_source;
  so.quiet = true;
  Solver s(cfg, so);
  std::vector<std::pair<int64_t, double>> p;
  s.on_record = [&](const TrainRecord& r) {
    for (auto& kv : r.values)
      if (kv.first == "dropin1_2.p") p.emplace_back(r.iter, kv.second);
  };
  const double before = mean_loss(s, 5);
  s.solve();
  ASSERT_EQ(p.size(), 3u);
  EXPECT_DOUBLE_EQ(p[0].second, 0.0);   // iteration 0
  EXPECT_DOUBLE_EQ(p[1].second, 0.5);   // iteration 20 of 40
  EXPECT_DOUBLE_EQ(p[2].second, 1.0);   // iteration 40: fully grown
  EXPECT_LT(mean_loss(s, 5), before);
}

}  // namespace
