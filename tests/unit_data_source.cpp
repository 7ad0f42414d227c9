// The source factory and the pieces shared by all sources: synthetic data, packed files, the
// prefetch wrapper's lifecycle, and config errors that name the key.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "core/tensor.h"
#include "data/packed.h"
#include "data/prefetch.h"
#include "data/sampler.h"
#include "data/sources.h"
#include "data/synthetic.h"
#include "core/config.h"
#include "layers/layer.h"
#include "tests/testing/configs.h"
#include "tests/testing/files.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

namespace fs = std::filesystem;

class SourceTest : public testing::TempDirTest {
 protected:
  std::unique_ptr<BatchSource> source(const std::string& keys, Phase phase = Phase::Train, uint64_t seed = 1,
                                      int rank = 0, int world = 1) {
    cfg_ = load_config_text("data:\n  train:\n" + testing::indent_lines(keys, "    "), "src.yaml");
    SourceRequest req{cfg_.node().child("data").child("train"), phase, seed, rank, world};
    return make_batch_source(req);
  }

  static std::vector<float> batches(BatchSource& s, int n) {
    const int64_t per = s.batch_size() * s.sample_shape().count();
    std::vector<float> d(static_cast<size_t>(per)), l(static_cast<size_t>(s.batch_size())), out;
    for (int k = 0; k < n; ++k) {
      s.next_batch(d.data(), l.data());
      out.insert(out.end(), d.begin(), d.end());
      out.insert(out.end(), l.begin(), l.end());
    }
    return out;
  }

  LoadedConfig cfg_;
};

TEST_F(SourceTest, SyntheticIsDeterministicPerSeed) {
  auto a = source("source: synthetic\nshape: [3, 7, 5]\nnum_classes: 1000\nnum_samples: 40\nbatch_size: 8\nprefetch: 0", Phase::Train, 5);
  EXPECT_EQ(a->sample_shape(), Shape({3, 7, 5}));
  EXPECT_EQ(a->num_samples(), 40);
  EXPECT_EQ(a->num_classes(), 1000);
  std::vector<float> va = batches(*a, 5);
  auto b = source("source: synthetic\nshape: [3, 7, 5]\nnum_classes: 1000\nnum_samples: 40\nbatch_size: 8\nprefetch: 0", Phase::Train, 5);
  EXPECT_EQ(batches(*b, 5), va);
  auto c = source("source: synthetic\nshape: [3, 7, 5]\nnum_classes: 1000\nnum_samples: 40\nbatch_size: 8\nprefetch: 0", Phase::Train, 6);
  EXPECT_NE(batches(*c, 5), va);

  // Labels in range and varied; pixels are bytes with a spread of values.
  auto ds = data::make_synthetic(3, 7, 5, 1000, 40, 5);
  std::set<int> labels;
  for (int v : ds->labels()) {
    EXPECT_GE(v, 0);
    EXPECT_LT(v, 1000);
    labels.insert(v);
  }
  EXPECT_GT(labels.size(), 30u);
  std::set<int> values(ds->pixels().begin(), ds->pixels().end());
  EXPECT_GT(values.size(), 200u);
  // Sample i depends on (seed, i) only.
  auto small = data::make_synthetic(3, 7, 5, 1000, 10, 5);
  EXPECT_TRUE(std::equal(small->pixels().begin(), small->pixels().end(), ds->pixels().begin()));
  EXPECT_TRUE(std::equal(small->labels().begin(), small->labels().end(), ds->labels().begin()));
  // The batch shows the stored bytes, scaled.
  auto s = source("source: synthetic\nshape: [3, 7, 5]\nnum_classes: 1000\nnum_samples: 40\nbatch_size: 2\nscale: 0.25\nprefetch: 0", Phase::Train, 5);
  std::vector<float> d(2 * 105), l(2);
  s->next_batch(d.data(), l.data());
  for (int j = 0; j < 210; ++j) ASSERT_EQ(d[j], 0.25f * ds->pixels()[j]);
  EXPECT_EQ(l[1], static_cast<float>(ds->labels()[1]));

  auto gray = source("source: synthetic\nshape: [4, 6]\nbatch_size: 3\nprefetch: 0");
  EXPECT_EQ(gray->sample_shape(), Shape({1, 4, 6}));
  EXPECT_EQ(gray->num_samples(), 1024);
  EXPECT_EQ(gray->num_classes(), 10);
}

TEST_F(SourceTest, PackedRoundTrip) {
  auto ds = data::make_synthetic(3, 6, 4, 7, 25, 9);
  data::write_packed(path("set.pack"), *ds);
  data::PackedDataset p(path("set.pack"));
  ASSERT_EQ(p.size(), 25);
  EXPECT_EQ(p.channels(), 3);
  EXPECT_EQ(p.fixed_hw(), (std::pair<int, int>{6, 4}));
  EXPECT_EQ(p.num_classes(), 7);
  std::vector<uint8_t> scratch;
  for (int64_t i = 0; i < 25; ++i) {
    data::Sample s = p.get(i, scratch);
    ASSERT_EQ(s.label, ds->labels()[i]);
    ASSERT_TRUE(std::equal(s.image.px, s.image.px + 72, ds->pixels().begin() + i * 72));
  }
  auto src = source(fmt::format("source: packed\npath: {}\nbatch_size: 5\nprefetch: 0", path("set.pack")));
  EXPECT_EQ(src->sample_shape(), Shape({3, 6, 4}));
  std::vector<float> d(5 * 72), l(5);
  src->next_batch(d.data(), l.data());
  src->next_batch(d.data(), l.data());
  EXPECT_EQ(l[0], static_cast<float>(ds->labels()[5]));
  EXPECT_EQ(d[3], static_cast<float>(ds->pixels()[5 * 72 + 3]));

  // Truncated and mislabelled files.
  {
    std::ifstream f(path("set.pack"), std::ios::binary);
    std::vector<char> b((std::istreambuf_iterator<char>(f)), {});
    std::ofstream(path("cut.pack"), std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size() - 10));
    b[32] = 9;  // label of sample 0
    std::ofstream(path("lab.pack"), std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
  }
  try {
    data::PackedDataset bad(path("cut.pack"));
    ADD_FAILURE() << "truncated packed file accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path("cut.pack")), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(truncated)"), std::string::npos) << e.what();
  }
  try {
    data::PackedDataset bad(path("lab.pack"));
    ADD_FAILURE() << "label 9 of 7 classes accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("label 9 of sample 0 is out of range [0, 7)"), std::string::npos) << e.what();
  }
}

TEST_F(SourceTest, ShardingOfSyntheticOverRanks) {
  // 10 samples over 3 ranks: shards of 4, 3, 3 covering the set once.
  std::multiset<std::vector<float>> seen;
  int64_t total = 0;
  for (int r = 0; r < 3; ++r) {
    auto s = source("source: synthetic\nshape: [1, 2, 2]\nnum_samples: 10\nbatch_size: 1\nshuffle: true\nprefetch: 0",
                    Phase::Train, 3, r, 3);
    EXPECT_EQ(s->num_samples(), r == 0 ? 4 : 3);
    total += s->num_samples();
    for (int64_t k = 0; k < s->num_samples(); ++k) {
      std::vector<float> d(4), l(1);
      s->next_batch(d.data(), l.data());
      d.push_back(l[0]);
      seen.insert(d);
    }
  }
  EXPECT_EQ(total, 10);
  auto ds = data::make_synthetic(1, 2, 2, 10, 10, 3);
  std::multiset<std::vector<float>> want;
  for (int i = 0; i < 10; ++i) {
    std::vector<float> v(ds->pixels().begin() + i * 4, ds->pixels().begin() + i * 4 + 4);
    v.push_back(static_cast<float>(ds->labels()[i]));
    want.insert(v);
  }
  EXPECT_EQ(seen, want);
  try {
    source("source: synthetic\nshape: [1, 2, 2]\nnum_samples: 2\nbatch_size: 1", Phase::Train, 1, 0, 3);
    ADD_FAILURE() << "2 samples over 3 ranks accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot be sharded over 3 ranks"), std::string::npos) << e.what();
  }
}

TEST_F(SourceTest, PrefetchLifecycle) {
  // Destroying a source whose producer is blocked on a full queue, restoring repeatedly while the
  // producer runs, and a slow consumer: all without deadlock, always the unprefetched sequence.
  const std::string keys = "source: synthetic\nshape: [3, 16, 16]\nnum_samples: 50\nbatch_size: 7\nshuffle: true\ncrop: 12\nmirror: true";
  auto ref = source(keys + "\nprefetch: 0", Phase::Train, 2);
  std::vector<float> want = batches(*ref, 30);
  const size_t per = 7 * 3 * 12 * 12 + 7;
  {
    auto p = source(keys + "\nprefetch: 2", Phase::Train, 2);
    batches(*p, 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // queue full, producer waiting
  }
  auto p = source(keys + "\nprefetch: 4", Phase::Train, 2);
  for (int round = 0; round < 20; ++round) {
    int start = (round * 7) % 25;
    std::vector<int64_t> st{(start * 7) / 50, (start * 7) % 50};
    p->restore(st);
    int n = 1 + round % 4;
    std::vector<float> got = batches(*p, n);
    std::vector<float> exp(want.begin() + start * per, want.begin() + (start + n) * per);
    ASSERT_EQ(got, exp) << "round " << round;
    if (round % 5 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GE(p->wait_seconds(), 0.0);
}

TEST_F(SourceTest, ConfigErrorsNameTheKey) {
  auto expect_error = [&](const std::string& keys, const std::vector<std::string>& needles) {
    try {
      source(keys);
      ADD_FAILURE() << "no error for: " << keys;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Input) << e.what();
      for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
  };
  expect_error("source: lmdb\nbatch_size: 2", {"src.yaml:", "source", "mnist, cifar10, image_list, packed, synthetic"});
  expect_error("batch_size: 2", {"src.yaml:", "source"});
  expect_error("source: synthetic\nbatch_size: 2", {"src.yaml:", "shape"});
  expect_error("source: synthetic\nshape: [3, 0, 4]\nbatch_size: 2", {"data.train.shape"});
  expect_error("source: synthetic\nshape: [3, 4, 4]\nbatch_size: 2\nprefetch: -1", {"data.train.prefetch"});
  expect_error("source: synthetic\nshape: [3, 4, 4]\nbatch_size: 2\nimages: x", {"unknown key 'images'"});
  expect_error("source: synthetic\nshape: [3, 4, 4]\nbatch_size: 2\nmean_file: /nonexistent/m.npy",
               {"/nonexistent/m.npy", "No such file"});
  expect_error("source: packed\npath: /nonexistent/p.pack\nbatch_size: 2", {"/nonexistent/p.pack"});
  expect_error("source: mnist\nimages: a\nbatch_size: 2", {"src.yaml:", "labels"});
}

TEST(HostStaging, CpuTargetBatchesArriveIntact) { testing::host_staging_round_trip(Device::cpu()); }

}  // namespace
}  // namespace dropnet
