// Data parallelism (DESIGN.md §7). Run by tests/scripts.cmake under `mpirun -np 2` and `-np 4`
// (every rank runs every test, in the same order); alone, without a launcher, it checks the same
// properties for one rank (LocalComm). The central check: W ranks x batch B train to the same
// parameters as 1 rank x batch W*B (a net with a DropIn layer, momentum and weight decay), with the
// gradient buckets overlapped with backward, one bucket or many, with and without iter_size.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <numeric>

#include "core/error.h"
#include "data/sampler.h"
#include "data/sources.h"
#include "data/synthetic.h"
#include "dist/communicator.h"
#include "optim/solver.h"
#include "testing/harness.h"

using namespace dropnet;
using dropnet::testing::all_close;

namespace {

dist::Communicator& comm() {
  static std::unique_ptr<dist::Communicator> c = [] {
    dist::CommOptions o;
    o.timeout_s = 60;
    return dist::make_communicator(Device::cpu(), o);
  }();
  return *c;
}

TEST(Comm, KindMatchesLauncher) {
  EXPECT_EQ(comm().kind(), dist::launched_under_mpi() ? "mpi" : "local");
  EXPECT_GE(comm().rank(), 0);
  EXPECT_LT(comm().rank(), comm().world());
  EXPECT_LT(comm().local_rank(), comm().local_size());
  if (const char* n = std::getenv("DROPNET_EXPECT_WORLD")) {
    EXPECT_EQ(comm().world(), std::atoi(n));
  }
}

// Rank r contributes (r + 1) * f(i): the sum over ranks is W(W+1)/2 * f(i).
TEST(Comm, AllreduceBroadcastBarrier) {
  const int r = comm().rank(), w = comm().world();
  const float tri = static_cast<float>(w * (w + 1) / 2);
  for (int64_t n : {1, 17, 100003}) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>((r + 1) * (i % 7 - 3));
    comm().allreduce_sum(v.data(), n, Device::cpu());
    std::vector<float> want(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) want[static_cast<size_t>(i)] = tri * static_cast<float>(i % 7 - 3);
    EXPECT_TRUE(all_close(want, v, 0.f, 0.f)) << "n = " << n;
  }
  std::vector<double> d = {0.5 * (r + 1), 1e-3};
  comm().allreduce_sum_double(d.data(), 2);
  EXPECT_DOUBLE_EQ(d[0], 0.5 * tri);
  EXPECT_NEAR(d[1], 1e-3 * w, 1e-15);
  std::vector<float> b(1000, static_cast<float>(r));
  if (r == 0) std::iota(b.begin(), b.end(), 5.f);
  comm().broadcast(b.data(), 1000, Device::cpu());
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(b[static_cast<size_t>(i)], 5.f + static_cast<float>(i)) << i;
  comm().barrier();
}

// The bucket protocol on its own: ranges announced in backward order, buckets launched as they
// fill, the rest at finish; the arena ends up summed, whatever the bucket size.
TEST(Comm, BucketsSumTheArena) {
  const int r = comm().rank(), w = comm().world();
  const int64_t n = 10000;
  // "Layers" of 1000 floats with 24 floats of padding between them, as the arena aligns.
  std::vector<std::pair<int64_t, int64_t>> layers;
  for (int64_t off = 40; off + 1000 <= n; off += 1024) layers.push_back({off, 1000});
  for (int64_t bucket_bytes : {int64_t{4}, int64_t{4096}, int64_t{12000}, int64_t{25} << 20}) {
    std::vector<float> g(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) g[static_cast<size_t>(i)] = static_cast<float>((r + 1) * (i % 13));
    comm().begin_backward(g.data(), n, Device::cpu(), bucket_bytes);
    for (size_t k = layers.size(); k-- > 0;)
      comm().on_layer_grads_ready(static_cast<int>(k), g.data() + layers[k].first, layers[k].second);
    comm().finish();
    const float tri = static_cast<float>(w * (w + 1) / 2);
    std::vector<float> want(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) want[static_cast<size_t>(i)] = tri * static_cast<float>(i % 13);
    EXPECT_TRUE(all_close(want, g, 0.f, 0.f)) << "bucket " << bucket_bytes << " bytes";
    const auto& st = comm().last_reduction();
    EXPECT_EQ(st.bytes, n * 4);
    // 4 bytes: a bucket per layer, plus the leading 40 floats; 25 MB: one bucket at finish.
    const int want_buckets = bucket_bytes == 4 ? static_cast<int>(layers.size()) + 1
                             : bucket_bytes == (int64_t{25} << 20) ? 1
                                                                   : -1;
    if (want_buckets > 0) {
      EXPECT_EQ(st.buckets, want_buckets) << "bucket " << bucket_bytes << " bytes";
    }
    EXPECT_GE(st.buckets, 1);
  }
  // Ranges must come in backward (descending) order.
  std::vector<float> g(static_cast<size_t>(n));
  comm().begin_backward(g.data(), n, Device::cpu(), 1 << 20);
  comm().on_layer_grads_ready(1, g.data() + 1064, 1000);
  EXPECT_THROW(comm().on_layer_grads_ready(2, g.data() + 2088, 1000), Error);
  comm().finish();
}

// Rank r owns permutation positions p with p % W == r: over the ranks, every sample exactly once.
TEST(Sharding, ShardsAreDisjointAndCoverTheDataSet) {
  const int r = comm().rank(), w = comm().world();
  for (int64_t total : {int64_t{96}, int64_t{101}}) {
    for (bool shuffle : {false, true}) {
      data::SamplerOptions so;
      so.batch_size = 3;
      so.shuffle = shuffle;
      so.seed = 11;
      so.rank = r;
      so.world = w;
      auto ds = data::make_synthetic(1, 2, 2, 3, total, 5);
      data::IndexedSource src(ds, data::TransformSpec{}, so);
      std::vector<float> count(static_cast<size_t>(total), 0.f);
      for (int64_t epoch : {int64_t{0}, int64_t{1}}) {
        std::fill(count.begin(), count.end(), 0.f);
        for (int64_t c = 0; c < src.num_samples(); ++c) count[static_cast<size_t>(src.sample_index(epoch, c))] += 1.f;
        comm().allreduce_sum(count.data(), total, Device::cpu());
        for (int64_t i = 0; i < total; ++i)
          ASSERT_EQ(count[static_cast<size_t>(i)], 1.f)
              << "sample " << i << " of " << total << (shuffle ? " (shuffled" : " (in order") << ", epoch " << epoch
              << ") is owned by " << count[static_cast<size_t>(i)] << " ranks";
      }
      double shard = static_cast<double>(src.num_samples());
      comm().allreduce_sum_double(&shard, 1);
      EXPECT_EQ(shard, static_cast<double>(total));
    }
  }
}

// Conv -> relu -> conv, a gradual DropIn between the relu (skip) and the second conv (new), fc,
// softmax loss; p grows over the first 10 iterations so the mask changes every iteration.
std::string net_config(int64_t batch, int64_t test_batch, double bucket_mb, int64_t iter_size) {
  return fmt::format(R"(name: dp
seed: 7
data:
  train: {{source: synthetic, shape: [2, 8, 8], num_classes: 5, num_samples: 96, batch_size: {}, scale: 0.0039, prefetch: 0}}
  test: {{source: synthetic, shape: [2, 8, 8], num_classes: 5, num_samples: 48, batch_size: {}, scale: 0.0039, prefetch: 0}}
solver: {{base_lr: 0.05, momentum: 0.9, weight_decay: 0.005, lr_policy: step, gamma: 0.5, stepsize: 8, max_iter: 20,
         display: 0, test_interval: 0, test_iter: 2, bucket_mb: {}, iter_size: {}}}
layers:
  - {{name: data, type: data, top: [data, label]}}
  - {{name: conv1, type: conv, bottom: data, top: conv1, num_output: 4, kernel: 3, pad: 1, lr_mult: [1, 2],
     weight_filler: {{type: xavier}}, bias_filler: {{type: constant, value: 0.1}}}}
  - {{name: relu1, type: relu, bottom: conv1, top: relu1}}
  - {{name: conv2, type: conv, bottom: relu1, top: conv2, num_output: 4, kernel: 3, pad: 1, weight_filler: {{type: xavier}}}}
  - {{name: drop2, type: dropin, bottom: [relu1, conv2], top: drop2, mode: gradual, length: 10}}
  - {{name: fc, type: fc, bottom: drop2, top: fc, num_output: 5, weight_filler: {{type: gaussian, std: 0.1}}}}
  - {{name: accuracy, type: accuracy, bottom: [fc, label], top: accuracy, phase: test}}
  - {{name: loss, type: softmax_loss, bottom: [fc, label], top: loss}}
)",
                     batch, test_batch, bucket_mb, iter_size);
}

struct Trained {
  std::vector<float> weights, history;
  std::vector<std::pair<std::string, double>> test;
};

Trained train(const std::string& text, GradientReducer* reducer) {
  LoadedConfig cfg = load_config_text(text, "dp.yaml");
  SolverOptions so;
  so.net.source_factory = make_batch_source;
  so.reducer = reducer;
  so.net.seed = 7;
  so.quiet = true;
  Solver s(cfg, so);
  s.step(20);
  return {s.train_net().param_values().to_host(), s.history().to_host(), s.test()};
}

void expect_data_parallel_equals_big_batch(double bucket_mb, int64_t iter_size) {
  const int64_t w = comm().world(), b = 4, tb = 6;
  Trained dp = train(net_config(b, tb, bucket_mb, iter_size), &comm());
  Trained ref = train(net_config(w * b, w * tb, bucket_mb, iter_size), nullptr);
  EXPECT_TRUE(all_close(ref.weights, dp.weights, 2e-6f, 2e-5f)) << "weights after 20 iterations";
  EXPECT_TRUE(all_close(ref.history, dp.history, 2e-6f, 2e-5f)) << "momentum after 20 iterations";
  ASSERT_EQ(ref.test.size(), dp.test.size());
  for (size_t i = 0; i < ref.test.size(); ++i) EXPECT_NEAR(ref.test[i].second, dp.test[i].second, 1e-5) << ref.test[i].first;
  // The parameters moved: the comparison is not between two initializations.
  LoadedConfig cfg = load_config_text(net_config(b, tb, bucket_mb, iter_size), "dp.yaml");
  SolverOptions so;
  so.net.source_factory = make_batch_source;
  so.net.seed = 7;
  Solver fresh(cfg, so);
  EXPECT_FALSE(all_close(fresh.train_net().param_values().to_host(), dp.weights, 1e-3f, 0.f));
  // Every rank holds the same parameters.
  std::vector<float> sum = dp.weights;
  comm().allreduce_sum(sum.data(), static_cast<int64_t>(sum.size()), Device::cpu());
  for (auto& x : sum) x /= static_cast<float>(w);
  EXPECT_TRUE(all_close(dp.weights, sum, 1e-6f, 1e-6f)) << "ranks disagree";
}

TEST(DataParallel, EqualsOneRankWithWorldTimesBatch) { expect_data_parallel_equals_big_batch(25, 1); }
TEST(DataParallel, ManySmallBucketsOverlappedWithBackward) { expect_data_parallel_equals_big_batch(1e-4, 1); }
TEST(DataParallel, IterSizeAccumulatesThenReducesOnce) { expect_data_parallel_equals_big_batch(1e-3, 2); }

}  // namespace
