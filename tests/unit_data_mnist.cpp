// MNIST IDX reader and the generic sampler behind every source: counts, pixels, wrap-around,
// shuffling, sharding, resume, prefetch, strict config keys, and a table of bad inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/file_io.h"
#include "data/idx.h"
#include "data/prefetch.h"
#include "data/sampler.h"
#include "data/sources.h"
#include "core/config.h"
#include "layers/layer.h"
#include "tests/testing/configs.h"
#include "tests/testing/crops.h"
#include "tests/testing/files.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

namespace fs = std::filesystem;

using testing::put_be32;
using testing::read_all;
using testing::write_bytes;
using testing::write_gzip;

// n images of rows x cols: pixel 0 of image i is i (identifies it), the rest a pattern.
std::vector<uint8_t> idx_images(int n, int rows, int cols, uint32_t magic = 2051) {
  std::vector<uint8_t> b;
  put_be32(&b, magic);
  put_be32(&b, n);
  put_be32(&b, rows);
  put_be32(&b, cols);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < rows * cols; ++j) b.push_back(static_cast<uint8_t>(j == 0 ? i : (i * 7 + j * 3) % 256));
  return b;
}

std::vector<uint8_t> idx_labels(int n, int modulo = 10, uint32_t magic = 2049) {
  std::vector<uint8_t> b;
  put_be32(&b, magic);
  put_be32(&b, n);
  for (int i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(i % modulo));
  return b;
}

class MnistTest : public testing::TempDirTest {
 protected:
  // A standard set: n images 5x4, labels i % 10.
  void write_set(int n, bool gz = false) {
    if (gz) {
      write_gzip(path("img"), idx_images(n, 5, 4));
      write_gzip(path("lab"), idx_labels(n));
    } else {
      write_bytes(path("img"), idx_images(n, 5, 4));
      write_bytes(path("lab"), idx_labels(n));
    }
  }

  std::unique_ptr<BatchSource> source(const std::string& extra, uint64_t seed = 1, int rank = 0, int world = 1,
                                      Phase phase = Phase::Train, bool shapes_only = false) {
    const std::string text = fmt::format("data:\n  train:\n    source: mnist\n    images: {}\n    labels: {}\n",
                                         path("img"), path("lab"));
    cfg_ = load_config_text(text + testing::indent_lines(extra, "    "), "test.yaml");
    SourceRequest req{cfg_.node().child("data").child("train"), phase, seed, rank, world, shapes_only};
    return make_batch_source(req);
  }

  // Reads `batches` batches and returns the sample ids (pixel 0 / scale).
  static std::vector<int> ids(BatchSource& s, int batches, float scale = 1.f) {
    const int64_t b = s.batch_size(), stride = s.sample_shape().count();
    std::vector<float> data(static_cast<size_t>(b * stride)), labels(static_cast<size_t>(b));
    std::vector<int> out;
    for (int k = 0; k < batches; ++k) {
      s.next_batch(data.data(), labels.data());
      for (int64_t i = 0; i < b; ++i) {
        int id = static_cast<int>(std::lround(data[i * stride] / scale));
        EXPECT_EQ(static_cast<int>(labels[i]), id % 10) << "label does not match the sample";
        out.push_back(id);
      }
    }
    return out;
  }

  LoadedConfig cfg_;
};

TEST_F(MnistTest, PlainAndGzipDetectedByMagicNotName) {
  // gzip data under a plain name and plain data under a .gz name.
  write_gzip(path("images-plain-name"), idx_images(12, 5, 4));
  write_bytes(path("images.gz"), idx_images(12, 5, 4));
  write_gzip(path("labels-plain-name"), idx_labels(12));
  write_bytes(path("labels.gz"), idx_labels(12));
  auto a = data::load_mnist(path("images-plain-name"), path("labels-plain-name"));
  auto b = data::load_mnist(path("images.gz"), path("labels.gz"));
  ASSERT_EQ(a->size(), 12);
  EXPECT_EQ(a->channels(), 1);
  EXPECT_EQ(a->fixed_hw(), (std::pair<int, int>{5, 4}));
  EXPECT_EQ(a->pixels(), b->pixels());
  EXPECT_EQ(a->labels(), b->labels());
  std::vector<uint8_t> want = idx_images(12, 5, 4);
  EXPECT_TRUE(std::equal(a->pixels().begin(), a->pixels().end(), want.begin() + 16));
  for (int i = 0; i < 12; ++i) EXPECT_EQ(a->labels()[i], i % 10);
}

TEST_F(MnistTest, BatchValuesAreMeanSubtractedThenScaled) {
  write_set(10);
  auto s = source("batch_size: 3\nscale: 0.5\nmean: 2\nprefetch: 0");
  EXPECT_EQ(s->sample_shape(), Shape({1, 5, 4}));
  EXPECT_EQ(s->batch_size(), 3);
  EXPECT_EQ(s->num_samples(), 10);
  EXPECT_EQ(s->num_classes(), 10);
  std::vector<uint8_t> raw = idx_images(10, 5, 4);
  std::vector<float> data(3 * 20), labels(3);
  s->next_batch(data.data(), labels.data());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(labels[i], static_cast<float>(i));
    for (int j = 0; j < 20; ++j) EXPECT_FLOAT_EQ(data[i * 20 + j], (raw[16 + i * 20 + j] - 2.f) * 0.5f) << i << "," << j;
  }
}

TEST_F(MnistTest, BatchesWrapAtTheEpochEnd) {
  write_set(10, /*gz=*/true);
  auto s = source("batch_size: 4\nprefetch: 0");
  std::vector<int> got = ids(*s, 5);
  std::vector<int> want;
  for (int k = 0; k < 20; ++k) want.push_back(k % 10);
  EXPECT_EQ(got, want);
  EXPECT_EQ(s->state(), (std::vector<int64_t>{2, 0}));
}

TEST_F(MnistTest, LimitUsesTheFirstSamples) {
  write_set(30);
  auto s = source("batch_size: 7\nlimit: 12\nshuffle: true\nprefetch: 0");
  EXPECT_EQ(s->num_samples(), 12);
  std::vector<int> got = ids(*s, 12);  // 7 epochs
  for (int v : got) EXPECT_LT(v, 12);
  std::vector<int> first(got.begin(), got.begin() + 12);
  std::sort(first.begin(), first.end());
  std::vector<int> all(12);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(first, all);
}

TEST_F(MnistTest, ShuffleIsASeededPermutationPerEpoch) {
  write_set(50);
  auto a = source("batch_size: 10\nshuffle: true\nprefetch: 0", 7);
  std::vector<int> e0 = ids(*a, 5), e1 = ids(*a, 5);
  std::vector<int> sorted0 = e0, sorted1 = e1, all(50);
  std::iota(all.begin(), all.end(), 0);
  std::sort(sorted0.begin(), sorted0.end());
  std::sort(sorted1.begin(), sorted1.end());
  EXPECT_EQ(sorted0, all);
  EXPECT_EQ(sorted1, all);
  EXPECT_NE(e0, all) << "shuffle: true left the order unchanged";
  EXPECT_NE(e0, e1) << "the second epoch was not reshuffled";
  auto b = source("batch_size: 10\nshuffle: true\nprefetch: 0", 7);
  EXPECT_EQ(ids(*b, 5), e0) << "same seed, different order";
  auto c = source("batch_size: 10\nshuffle: true\nprefetch: 0", 8);
  EXPECT_NE(ids(*c, 5), e0) << "different seeds gave the same order";
  auto d = source("batch_size: 10\nprefetch: 0", 7);
  EXPECT_EQ(ids(*d, 5), all) << "shuffle: false must keep file order";
}

TEST_F(MnistTest, ShardsAreDisjointAndCoverTheSet) {
  write_set(50);
  for (int world : {2, 3}) {
    for (bool shuffle : {false, true}) {
      std::multiset<int> seen;
      int64_t total = 0;
      for (int r = 0; r < world; ++r) {
        auto s = source(fmt::format("batch_size: 1\nshuffle: {}\nprefetch: 0", shuffle), 3, r, world);
        total += s->num_samples();
        for (int v : ids(*s, static_cast<int>(s->num_samples()))) seen.insert(v);
      }
      EXPECT_EQ(total, 50) << "world " << world;
      ASSERT_EQ(seen.size(), 50u);
      for (int i = 0; i < 50; ++i) EXPECT_EQ(seen.count(i), 1u) << "sample " << i << " world " << world;
    }
  }
  // Rank r owns permutation positions p with p % W == r (without shuffle: the samples themselves).
  auto r1 = source("batch_size: 4\nprefetch: 0", 3, 1, 3);
  EXPECT_EQ(ids(*r1, 1), (std::vector<int>{1, 4, 7, 10}));
}

TEST_F(MnistTest, StateRestoreContinuesIdentically) {
  write_set(23);
  for (int prefetch : {0, 3}) {
    std::string keys = fmt::format("batch_size: 5\nshuffle: true\ncrop: 3\nmirror: true\nprefetch: {}", prefetch);
    auto a = source(keys, 11);
    std::vector<float> d(5 * 9), l(5);
    for (int k = 0; k < 6; ++k) a->next_batch(d.data(), l.data());  // crosses an epoch end
    std::vector<int64_t> st = a->state();
    EXPECT_EQ(st, (std::vector<int64_t>{1, 7})) << "prefetch " << prefetch;
    std::vector<std::vector<float>> rest_a;
    for (int k = 0; k < 8; ++k) {
      a->next_batch(d.data(), l.data());
      rest_a.push_back(d);
      rest_a.back().insert(rest_a.back().end(), l.begin(), l.end());
    }
    for (int prefetch_b : {0, 2}) {
      auto b = source(fmt::format("batch_size: 5\nshuffle: true\ncrop: 3\nmirror: true\nprefetch: {}", prefetch_b), 11);
      b->next_batch(d.data(), l.data());  // a position to be overwritten
      b->restore(st);
      EXPECT_EQ(b->state(), st);
      for (int k = 0; k < 8; ++k) {
        b->next_batch(d.data(), l.data());
        std::vector<float> got = d;
        got.insert(got.end(), l.begin(), l.end());
        EXPECT_EQ(got, rest_a[k]) << "batch " << k << " after restore, prefetch " << prefetch << "/" << prefetch_b;
      }
    }
  }
  auto s = source("batch_size: 5\nprefetch: 0");
  EXPECT_THROW(s->restore({0, 23}), Error);
  EXPECT_THROW(s->restore({0}), Error);
}

TEST_F(MnistTest, PrefetchGivesTheSameSequence) {
  write_set(37);
  const std::string keys = "batch_size: 8\nshuffle: true\ncrop: 4\npad: 1\nmirror: true";
  auto plain = source(keys + "\nprefetch: 0", 5);
  auto pre = source(keys + "\nprefetch: 3", 5);
  ASSERT_NE(dynamic_cast<data::PrefetchSource*>(pre.get()), nullptr);
  EXPECT_EQ(dynamic_cast<data::PrefetchSource*>(plain.get()), nullptr);
  EXPECT_EQ(pre->sample_shape(), plain->sample_shape());
  EXPECT_EQ(pre->num_samples(), plain->num_samples());
  std::vector<float> d1(8 * 16), l1(8), d2(8 * 16), l2(8);
  for (int k = 0; k < 20; ++k) {
    plain->next_batch(d1.data(), l1.data());
    pre->next_batch(d2.data(), l2.data());
    ASSERT_EQ(d1, d2) << "batch " << k;
    ASSERT_EQ(l1, l2) << "batch " << k;
    ASSERT_EQ(plain->state(), pre->state()) << "batch " << k;
  }
  EXPECT_GE(pre->wait_seconds(), 0.0);
}

TEST_F(MnistTest, CropAndMirrorAtTrainCenterAtTest) {
  // One 5x4 image; crop 3 (no pad): TRAIN offsets y in [0, 2], x in [0, 1]; TEST center (1, 0).
  write_bytes(path("img"), idx_images(1, 5, 4));
  write_bytes(path("lab"), idx_labels(1));
  std::vector<uint8_t> raw = idx_images(1, 5, 4);
  auto px = [&](int y, int x) { return static_cast<float>(raw[16 + y * 4 + x]); };
  auto test = source("batch_size: 1\ncrop: 3\nmirror: true\nprefetch: 0", 1, 0, 1, Phase::Test);
  std::vector<float> d(9), l(1);
  test->next_batch(d.data(), l.data());
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 3; ++x) EXPECT_EQ(d[y * 3 + x], px(1 + y, 0 + x));  // (5-3)/2 = 1, (4-3)/2 = 0

  auto train = source("batch_size: 1\ncrop: 3\nmirror: true\nprefetch: 0", 1);
  std::set<std::tuple<int, int, bool>> seen;
  for (int k = 0; k < 200; ++k) {
    train->next_batch(d.data(), l.data());
    const auto crop = testing::find_crop(d.data(), 1, 3, 3, 5, 4, 0, [&](int, int y, int x) { return px(y, x); });
    ASSERT_TRUE(crop) << "batch " << k << " is not a (mirrored) crop of the image";
    seen.insert(*crop);
  }
  EXPECT_EQ(seen.size(), 12u) << "not every crop offset / flip occurred in 200 draws";
}

TEST_F(MnistTest, PaddedCropFillsZeros) {
  write_bytes(path("img"), idx_images(1, 5, 4));
  write_bytes(path("lab"), idx_labels(1));
  // TEST: center crop 6 of the 7x6 padded image -> offset ((7-6)/2, 0) = (0, 0) in padded coordinates.
  auto s = source("batch_size: 1\ncrop: 6\npad: 1\nscale: 2\nprefetch: 0", 1, 0, 1, Phase::Test);
  EXPECT_EQ(s->sample_shape(), Shape({1, 6, 6}));
  std::vector<uint8_t> raw = idx_images(1, 5, 4);
  std::vector<float> d(36), l(1);
  s->next_batch(d.data(), l.data());
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 6; ++x) {
      int sy = y - 1, sx = x - 1;
      float want = (sy >= 0 && sy < 5 && sx >= 0 && sx < 4) ? 2.f * raw[16 + sy * 4 + sx] : 0.f;
      EXPECT_EQ(d[y * 6 + x], want) << y << "," << x;
    }
}

TEST_F(MnistTest, StrictConfigKeys) {
  write_set(10);
  auto expect_error = [&](const std::string& keys, const std::string& needle) {
    try {
      source(keys);
      ADD_FAILURE() << "no error for: " << keys;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Input);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("test.yaml:"), std::string::npos) << e.what();
    }
  };
  expect_error("batch_size: 4\nbatchsize: 3", "unknown key 'batchsize'");
  expect_error("shuffle: true", "batch_size");
  expect_error("batch_size: 0", "positive");
  expect_error("batch_size: 4\nlimit: -1", "limit");
  expect_error("batch_size: 4\npad: 2", "pad needs crop");
  expect_error("batch_size: 4\ncrop: 9", "crop 9 is larger");
  expect_error("batch_size: 4\nmean_file: auto", "only available for source: cifar10");
  expect_error("batch_size: 4\nmean: [1, 2]", "mean has 2 values");
}

// Summaries and dry runs (issue 16): the shape from the IDX header's 16 bytes, nothing else read.
TEST_F(MnistTest, ShapesOnlyReadsTheHeaderAlone) {
  // A header that promises 1,000 images of 5x4 over 3 images of data: loading it fails, its
  // shape does not.
  std::vector<uint8_t> img = idx_images(1000, 5, 4);
  img.resize(16 + 3 * 20);
  write_gzip(path("img"), img);
  write_bytes(path("lab"), idx_labels(3));
  EXPECT_NE(testing::input_error_of([&] { source("batch_size: 4"); }).find("truncated"), std::string::npos);
  auto s = source("batch_size: 4", 1, 0, 1, Phase::Train, /*shapes_only=*/true);
  EXPECT_EQ(s->sample_shape(), Shape({1, 5, 4}));
  EXPECT_EQ(s->batch_size(), 4);
  EXPECT_EQ(s->num_classes(), 10);
  std::vector<float> d(4 * 20), l(4);
  EXPECT_THROW(s->next_batch(d.data(), l.data()), Error);
  EXPECT_EQ(source("batch_size: 4\ncrop: 3", 1, 0, 1, Phase::Train, true)->sample_shape(), Shape({1, 3, 3}));
  // The header alone, plain or gzip'd.
  const data::IdxImages h = data::read_idx_image_header(path("img"));
  EXPECT_EQ(h.n, 1000);
  EXPECT_EQ(h.rows, 5);
  EXPECT_EQ(h.cols, 4);
  EXPECT_TRUE(h.pixels.empty());
  write_bytes(path("plain"), idx_images(2, 7, 9));
  EXPECT_EQ(data::read_idx_image_header(path("plain")).cols, 9);
  write_bytes(path("labels-as-images"), idx_labels(20));
  EXPECT_NE(testing::input_error_of([&] { data::read_idx_image_header(path("labels-as-images")); }).find("wrong magic"),
            std::string::npos);
  write_bytes(path("short"), std::vector<uint8_t>(img.begin(), img.begin() + 9));
  EXPECT_NE(testing::input_error_of([&] { data::read_idx_image_header(path("short")); }).find("truncated"),
            std::string::npos);
  // Keys are still checked; a missing file is MNIST's 28x28 (the tools warn).
  EXPECT_NE(testing::input_error_of([&] { source("batch_size: 4\nbatchsize: 3", 1, 0, 1, Phase::Train, true); })
                .find("unknown key 'batchsize'"),
            std::string::npos);
  fs::remove(path("img"));
  EXPECT_EQ(source("batch_size: 4", 1, 0, 1, Phase::Train, true)->sample_shape(), Shape({1, 28, 28}));
}

// ---- bad inputs: each error names the file and the reason -----------------------------------

TEST_F(MnistTest, BadInputsNameTheFileAndTheReason) {
  struct Case {
    std::string name;
    std::function<void()> write;
    std::string file;    // the file that must be named
    std::string reason;  // a substring of the message
  };
  auto img = path("img"), lab = path("lab");
  std::vector<Case> cases = {
      {"wrong image magic", [&] { write_bytes(img, idx_images(4, 5, 4, 2049)); write_bytes(lab, idx_labels(4)); }, img,
       "wrong magic number 2049"},
      {"wrong label magic", [&] { write_bytes(img, idx_images(4, 5, 4)); write_bytes(lab, idx_labels(4, 10, 2051)); },
       lab, "wrong magic number 2051"},
      {"truncated images",
       [&] {
         auto b = idx_images(4, 5, 4);
         b.resize(b.size() - 7);
         write_bytes(img, b);
         write_bytes(lab, idx_labels(4));
       },
       img, "need 16 + 80 = 96 bytes, got 89"},
      {"truncated labels",
       [&] {
         write_bytes(img, idx_images(4, 5, 4));
         auto b = idx_labels(4);
         b.pop_back();
         write_bytes(lab, b);
       },
       lab, "need 8 + 4 = 12 bytes, got 11"},
      {"truncated header", [&] { write_bytes(img, {0, 0, 8, 3, 0, 0}); write_bytes(lab, idx_labels(4)); }, img,
       "header needs 16 bytes, got 6"},
      {"trailing bytes",
       [&] {
         auto b = idx_images(4, 5, 4);
         b.push_back(1);
         write_bytes(img, b);
         write_bytes(lab, idx_labels(4));
       },
       img, "need 96 bytes, got 97"},
      {"count mismatch", [&] { write_bytes(img, idx_images(4, 5, 4)); write_bytes(lab, idx_labels(5)); }, lab,
       "4 images but label file"},
      {"label out of range", [&] { write_bytes(img, idx_images(12, 5, 4)); write_bytes(lab, idx_labels(12, 12)); },
       lab, "label 10 of sample 10 is out of range [0, 10)"},
      {"empty image file", [&] { write_bytes(img, {}); write_bytes(lab, idx_labels(4)); }, img, "empty (0 bytes)"},
      {"missing image file", [&] { fs::remove(img); write_bytes(lab, idx_labels(4)); }, img,
       "No such file or directory"},
      {"missing label file", [&] { write_bytes(img, idx_images(4, 5, 4)); fs::remove(lab); }, lab,
       "No such file or directory"},
      {"truncated gzip",
       [&] {
         write_gzip(img, idx_images(40, 5, 4));
         auto b = read_all(img);
         b.resize(b.size() / 2);
         write_bytes(img, b);
         write_bytes(lab, idx_labels(40));
       },
       img, "truncated gzip data"},
      {"corrupt gzip",
       [&] {
         write_gzip(img, idx_images(40, 5, 4));
         auto b = read_all(img);
         for (size_t i = 12; i < 40 && i < b.size(); ++i) b[i] ^= 0x5a;
         write_bytes(img, b);
         write_bytes(lab, idx_labels(40));
       },
       img, "gzip"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    fs::remove(img);
    fs::remove(lab);
    c.write();
    try {
      source("batch_size: 2");
      ADD_FAILURE() << c.name << ": no error";
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_EQ(e.kind(), ErrorKind::Input) << msg;
      EXPECT_NE(msg.find(c.file), std::string::npos) << c.name << ": the message does not name " << c.file << ": " << msg;
      EXPECT_NE(msg.find(c.reason), std::string::npos) << c.name << ": expected '" << c.reason << "' in: " << msg;
      // ... and the config key of a file it names (issue 16).
      EXPECT_TRUE(msg.find("data.train.images: ") != std::string::npos ||
                  msg.find("data.train.labels: ") != std::string::npos)
          << c.name << ": the message names no key: " << msg;
    }
  }
}

// Issue 17: a 4 MB gzip bomb in an IDX .gz was inflated in full (4.2 GB resident) before the size
// check. Inflating now stops once the output passes what the header promises (here 96 bytes,
// followed by 64 MiB of zeros).
TEST_F(MnistTest, GzipBombStopsAtTheHeadersPromise) {
  std::vector<uint8_t> b = idx_images(4, 5, 4);
  b.resize(b.size() + (size_t{64} << 20), 0);
  write_gzip(path("img"), b);
  write_bytes(path("lab"), idx_labels(4));
  b = {};
  std::string msg;
  try {
    source("batch_size: 2");
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("inflates to more than the 96 bytes its header promises (4 images of 5x4)"), std::string::npos)
      << msg;
  // Stopped within one 64 KiB inflate chunk of the promise.
  const size_t at = msg.find("stopped after ");
  ASSERT_NE(at, std::string::npos) << msg;
  EXPECT_LE(std::stoll(msg.substr(at + 14)), 96 + 65536) << msg;
  // Labels too, and a gzip stream without a header promise stops at ReadLimit::max_bytes.
  write_bytes(path("img"), idx_images(4, 5, 4));
  std::vector<uint8_t> l = idx_labels(4);
  l.resize(l.size() + (size_t{8} << 20), 0);
  write_gzip(path("lab"), l);
  try {
    source("batch_size: 2");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("more than the 12 bytes its header promises (4 labels)"), std::string::npos)
        << e.what();
  }
  data::ReadLimit limit;
  limit.max_bytes = 100000;  // the 8 MiB of zeros compress to ~8 KiB
  try {
    data::read_file_bytes(path("lab"), limit);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("inflates to more than 100000 bytes (the limit)"), std::string::npos) << e.what();
  }
}

// `/dev/zero` as an IDX path said "is empty (0 bytes)"; a FIFO would block.
TEST_F(MnistTest, DevicesAndDirectoriesAreNotRegularFiles) {
  write_bytes(path("lab"), idx_labels(4));
  for (const std::string& p : {std::string("/dev/zero"), dir().string()}) {
    fs::remove(path("img"));
    fs::create_symlink(p, path("img"));
    try {
      source("batch_size: 2");
      ADD_FAILURE() << p << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("is not a regular file"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path("img")), std::string::npos) << e.what();
    }
  }
}

TEST_F(MnistTest, ErrorInsidePrefetchReachesTheConsumer) {
  // An inner source that fails on its third batch: the first two arrive, then the error.
  struct Failing : BatchSource {
    int64_t n = 0;
    Shape sample_shape() const override { return Shape({1, 1, 1}); }
    int64_t batch_size() const override { return 1; }
    int64_t num_samples() const override { return 100; }
    void next_batch(float* d, float* l) override {
      if (n == 2) input_error("bad sample 2");
      d[0] = static_cast<float>(n);
      l[0] = 0;
      ++n;
    }
    std::vector<int64_t> state() const override { return {n}; }
    void restore(const std::vector<int64_t>& s) override { n = s[0]; }
  };
  data::PrefetchSource p(std::make_unique<Failing>(), 4);
  float d, l;
  p.next_batch(&d, &l);
  EXPECT_EQ(d, 0.f);
  p.next_batch(&d, &l);
  EXPECT_EQ(d, 1.f);
  EXPECT_THROW(p.next_batch(&d, &l), Error);
  EXPECT_EQ(p.state(), (std::vector<int64_t>{2}));
  p.restore({0});
  p.next_batch(&d, &l);
  EXPECT_EQ(d, 0.f);
}

TEST(MnistReal, FashionMnistTestSet) {
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  const std::string images = dir + "t10k-images-idx3-ubyte.gz", labels = dir + "t10k-labels-idx1-ubyte.gz";
  if (!fs::exists(images) || !fs::exists(labels)) GTEST_SKIP() << "Fashion-MNIST not installed under " << dir;
  LoadedConfig cfg = load_config_text(fmt::format("data:\n  test:\n    source: mnist\n    images: {}\n    labels: {}\n"
                                                  "    batch_size: 100\n    scale: 0.00390625\n",
                                                  images, labels),
                                      "real.yaml");
  SourceRequest req{cfg.node().child("data").child("test"), Phase::Test, 1, 0, 1};
  auto s = make_batch_source(req);
  EXPECT_EQ(s->num_samples(), 10000);
  EXPECT_EQ(s->sample_shape(), Shape({1, 28, 28}));
  std::vector<float> d(100 * 784), l(100);
  std::vector<int> per_class(10, 0);
  float lo = 1e9f, hi = -1e9f;
  for (int k = 0; k < 100; ++k) {
    s->next_batch(d.data(), l.data());
    for (float v : l) {
      ASSERT_GE(v, 0.f);
      ASSERT_LE(v, 9.f);
      per_class[static_cast<int>(v)]++;
    }
    for (float v : d) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  for (int c = 0; c < 10; ++c) EXPECT_EQ(per_class[c], 1000) << "class " << c;  // the test set is balanced
  EXPECT_EQ(lo, 0.f);
  EXPECT_LE(hi, 255.f / 256.f);
  EXPECT_GT(hi, 0.9f);
  EXPECT_EQ(s->state(), (std::vector<int64_t>{1, 0}));
}

}  // namespace
}  // namespace dropnet
