// CIFAR-10 binary reader: record layout, default train/test files, the cached mean image,
// crop/pad/mirror, and bad files.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/cifar.h"
#include "core/npy.h"
#include "data/sources.h"
#include "core/config.h"
#include "layers/layer.h"
#include "tests/testing/configs.h"
#include "tests/testing/crops.h"
#include "tests/testing/files.h"

namespace dropnet {
namespace {

namespace fs = std::filesystem;
constexpr int kPerFile = 6;

using testing::write_bytes;

// Pixel (c, y, x) of global record g (file f, record r): a pattern that differs per record.
uint8_t pixel(int g, int c, int y, int x) { return static_cast<uint8_t>((g * 31 + c * 50 + y * 5 + x * 3) % 256); }
int label_of(int g) { return (g * 3) % 10; }

std::vector<uint8_t> cifar_file(int first_global, int n) {
  std::vector<uint8_t> b;
  for (int r = 0; r < n; ++r) {
    int g = first_global + r;
    b.push_back(static_cast<uint8_t>(label_of(g)));
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) b.push_back(pixel(g, c, y, x));
  }
  return b;
}

class CifarTest : public testing::TempDirTest {
 protected:
  void SetUp() override {
    // Train records 0..29 in data_batch_1..5, test records 100..105.
    for (int f = 0; f < 5; ++f) write_bytes(path(fmt::format("data_batch_{}.bin", f + 1)), cifar_file(f * kPerFile, kPerFile));
    write_bytes(path("test_batch.bin"), cifar_file(100, kPerFile));
  }

  std::unique_ptr<BatchSource> source(const std::string& extra, Phase phase = Phase::Train, uint64_t seed = 1,
                                      const std::string& data_dir = "") {
    std::string text =
        fmt::format("data:\n  d:\n    source: cifar10\n    dir: {}\n", data_dir.empty() ? dir().string() : data_dir);
    if (extra.find("records_per_file") == std::string::npos) text += fmt::format("    records_per_file: {}\n", kPerFile);
    cfg_ = load_config_text(text + testing::indent_lines(extra, "    "), "cifar.yaml");
    SourceRequest req{cfg_.node().child("data").child("d"), phase, seed, 0, 1};
    return make_batch_source(req);
  }

  static std::vector<float> mean_image(int first, int n) {
    std::vector<float> m(3072, 0.f);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) {
          double s = 0;
          for (int g = first; g < first + n; ++g) s += pixel(g, c, y, x);
          m[(c * 32 + y) * 32 + x] = static_cast<float>(s / n);
        }
    return m;
  }

  std::vector<std::string> mean_caches() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir()))
      if (e.path().filename().string().rfind("dropnet_mean_", 0) == 0) out.push_back(e.path().string());
    return out;
  }

  LoadedConfig cfg_;
};

TEST_F(CifarTest, TrainAndTestFilesRecordLayout) {
  auto train = source("batch_size: 4\nprefetch: 0");
  EXPECT_EQ(train->num_samples(), 5 * kPerFile);
  EXPECT_EQ(train->sample_shape(), Shape({3, 32, 32}));
  EXPECT_EQ(train->num_classes(), 10);
  std::vector<float> d(4 * 3072), l(4);
  for (int k = 0; k < 8; ++k) {  // 32 samples: wraps after 30
    train->next_batch(d.data(), l.data());
    for (int i = 0; i < 4; ++i) {
      int g = (k * 4 + i) % 30;
      ASSERT_EQ(l[i], static_cast<float>(label_of(g))) << g;
      for (int c = 0; c < 3; ++c)
        for (int y = 0; y < 32; y += 7)
          for (int x = 0; x < 32; x += 5)
            ASSERT_EQ(d[i * 3072 + (c * 32 + y) * 32 + x], pixel(g, c, y, x)) << g << " " << c << " " << y << " " << x;
    }
  }
  auto test = source("batch_size: 6\nscale: 0.5\nprefetch: 0", Phase::Test);
  EXPECT_EQ(test->num_samples(), kPerFile);
  std::vector<float> t(6 * 3072), tl(6);
  test->next_batch(t.data(), tl.data());
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(tl[i], static_cast<float>(label_of(100 + i)));
    EXPECT_EQ(t[i * 3072 + 2 * 1024 + 31 * 32 + 31], 0.5f * pixel(100 + i, 2, 31, 31));
  }
  auto subset = source("batch_size: 2\nfiles: [data_batch_3.bin, data_batch_1.bin]\nprefetch: 0");
  EXPECT_EQ(subset->num_samples(), 2 * kPerFile);
  subset->next_batch(d.data(), l.data());
  EXPECT_EQ(l[0], static_cast<float>(label_of(12)));
  EXPECT_EQ(d[1], pixel(12, 0, 0, 1));
}

TEST_F(CifarTest, TarballSubdirectoryIsFound) {
  fs::path sub = dir() / "outer";
  fs::create_directories(sub / "cifar-10-batches-bin");
  fs::copy_file(path("test_batch.bin"), sub / "cifar-10-batches-bin" / "test_batch.bin");
  auto s = source("batch_size: 1\nprefetch: 0", Phase::Test, 1, sub.string());
  EXPECT_EQ(s->num_samples(), kPerFile);
}

TEST_F(CifarTest, MeanImageIsComputedCachedAndSubtracted) {
  auto s = source("batch_size: 2\nmean_file: auto\nprefetch: 0", Phase::Test);
  std::vector<std::string> caches = mean_caches();
  ASSERT_EQ(caches.size(), 1u) << "the mean image was not cached beside the data";
  Tensor m = read_npy(caches[0]);
  EXPECT_EQ(m.shape(), Shape({3, 32, 32}));
  std::vector<float> mv = m.to_host();
  std::vector<float> want = mean_image(0, 30);  // the TRAIN files' mean, also at TEST
  for (int j = 0; j < 3072; ++j) ASSERT_NEAR(mv[j], want[j], 1e-4f) << j;
  std::vector<float> d(2 * 3072), l(2);
  s->next_batch(d.data(), l.data());
  for (int j = 0; j < 3072; j += 13) {
    int c = j / 1024, y = (j / 32) % 32, x = j % 32;
    ASSERT_NEAR(d[j], pixel(100, c, y, x) - want[j], 1e-4f) << j;
  }

  // The second source reads the cache: make the cached values recognisable.
  std::vector<float> seven(3072, 7.f);
  write_npy(caches[0], Shape({3, 32, 32}), seven.data());
  auto s2 = source("batch_size: 2\nmean_file: auto\nscale: 2\nprefetch: 0", Phase::Test);
  s2->next_batch(d.data(), l.data());
  EXPECT_EQ(d[5], 2.f * (pixel(100, 0, 0, 5) - 7.f));

  // Other training files -> another cache file.
  source("batch_size: 2\nmean_file: auto\nmean_from: [data_batch_2.bin]\nprefetch: 0");
  EXPECT_EQ(mean_caches().size(), 2u);

  // NumPy reads the cache.
  std::string cmd = fmt::format(
      "/usr/bin/python3 -c \"import numpy as np; a = np.load('{}'); assert a.shape == (3, 32, 32) and a.dtype == np.float32 "
      "and abs(float(a[1, 2, 3]) - {}) < 1e-4\" 2>/dev/null",
      caches[0], 7.0);
  if (fs::exists("/usr/bin/python3") && std::system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") == 0) {
    EXPECT_EQ(std::system(cmd.c_str()), 0) << "numpy cannot read " << caches[0];
  }
}

TEST_F(CifarTest, MeanCacheFallsBackWhenTheDataDirIsNotWritable) {
  // A "directory" that is a regular file cannot take the cache even for root (ENOTDIR); the mean
  // goes to cache_dir instead, and the next call finds it there.
  std::vector<std::string> files;
  for (int f = 1; f <= 5; ++f) files.push_back(path(fmt::format("data_batch_{}.bin", f)));
  fs::path cache = dir() / "cache";
  std::string used;
  std::vector<float> m = data::cifar_mean_image(files, kPerFile, path("test_batch.bin"), cache.string(), &used);
  EXPECT_EQ(fs::path(used).parent_path(), cache);
  EXPECT_TRUE(mean_caches().empty());
  std::vector<float> want = mean_image(0, 30);
  for (int j = 0; j < 3072; ++j) ASSERT_NEAR(m[j], want[j], 1e-4f);
  std::vector<float> seven(3072, 7.f);
  write_npy(used, Shape({3, 32, 32}), seven.data());
  std::string used2;
  EXPECT_EQ(data::cifar_mean_image(files, kPerFile, path("test_batch.bin"), cache.string(), &used2), seven);
  EXPECT_EQ(used2, used);
}

TEST_F(CifarTest, MeanFilePathAndPerChannelMean) {
  std::vector<float> mv(3072);
  for (int j = 0; j < 3072; ++j) mv[j] = static_cast<float>(j % 17);
  write_npy(path("m.npy"), Shape({3, 32, 32}), mv.data());
  // Center crop 28 at TEST: offset 2; the mean is taken at the source pixel.
  auto s = source(fmt::format("batch_size: 1\ncrop: 28\nmean_file: {}\nprefetch: 0", path("m.npy")), Phase::Test);
  std::vector<float> d(3 * 28 * 28), l(1);
  s->next_batch(d.data(), l.data());
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 28; y += 3)
      for (int x = 0; x < 28; x += 4)
        ASSERT_EQ(d[(c * 28 + y) * 28 + x], pixel(100, c, y + 2, x + 2) - mv[(c * 32 + y + 2) * 32 + x + 2]);

  auto pc = source("batch_size: 1\nmean: [10, 20, 30]\nprefetch: 0", Phase::Test);
  std::vector<float> e(3072);
  pc->next_batch(e.data(), l.data());
  for (int c = 0; c < 3; ++c) EXPECT_EQ(e[c * 1024 + 33], pixel(100, c, 1, 1) - 10.f * (c + 1));

  std::vector<float> wrong(3 * 28 * 28);
  write_npy(path("w.npy"), Shape({3, 28, 28}), wrong.data());
  try {
    source(fmt::format("batch_size: 1\nmean_file: {}\nprefetch: 0", path("w.npy")));
    ADD_FAILURE() << "a 28x28 mean image was accepted for 32x32 images";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("mean image is 3x28x28"), std::string::npos) << err.what();
  }
}

TEST_F(CifarTest, RandomCropWithPaddingAndMirror) {
  auto s = source("batch_size: 1\ncrop: 32\npad: 4\nmirror: true\nlimit: 1\nprefetch: 0", Phase::Train, 9);
  EXPECT_EQ(s->sample_shape(), Shape({3, 32, 32}));
  std::vector<float> d(3072), l(1);
  std::set<std::tuple<int, int, bool>> seen;
  for (int k = 0; k < 400; ++k) {
    s->next_batch(d.data(), l.data());
    const auto crop =
        testing::find_crop(d.data(), 3, 32, 32, 32, 32, 4, [](int c, int y, int x) { return pixel(0, c, y, x); });
    ASSERT_TRUE(crop) << "draw " << k << " is not a padded (mirrored) crop";
    seen.insert(*crop);
  }
  EXPECT_GT(seen.size(), 100u) << "crop offsets / flips are not varied";
  // TEST: the padded center crop is the image itself, never mirrored.
  auto t = source("batch_size: 1\ncrop: 32\npad: 4\nmirror: true\nprefetch: 0", Phase::Test);
  for (int k = 0; k < 3; ++k) {
    t->next_batch(d.data(), l.data());
    for (int j = 0; j < 3072; j += 7) ASSERT_EQ(d[j], pixel(100 + k, j / 1024, (j / 32) % 32, j % 32));
  }
}

TEST_F(CifarTest, BadFiles) {
  auto expect_error = [&](const std::string& keys, Phase phase, const std::string& file, const std::string& reason) {
    try {
      source(keys, phase);
      ADD_FAILURE() << "no error for " << reason;
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_EQ(e.kind(), ErrorKind::Input);
      EXPECT_NE(msg.find(file), std::string::npos) << msg;
      EXPECT_NE(msg.find(reason), std::string::npos) << msg;
    }
  };
  // Truncated: 6 records minus 100 bytes.
  auto b = cifar_file(100, kPerFile);
  b.resize(b.size() - 100);
  write_bytes(path("test_batch.bin"), b);
  expect_error("batch_size: 1", Phase::Test, path("test_batch.bin"), "6 records of 3073 bytes = 18438 bytes expected, got 18338 bytes (truncated)");
  // Not a whole number of records with records_per_file: 0.
  expect_error("batch_size: 1\nrecords_per_file: 0", Phase::Test, path("test_batch.bin"),
               "18338 bytes is not a whole number of 3073-byte records");
  write_bytes(path("test_batch.bin"), {});
  expect_error("batch_size: 1", Phase::Test, path("test_batch.bin"), "is empty (0 bytes)");
  // A label byte of 10.
  b = cifar_file(100, kPerFile);
  b[3 * 3073] = 10;
  write_bytes(path("test_batch.bin"), b);
  expect_error("batch_size: 1", Phase::Test, path("test_batch.bin"), "record 3 (byte offset 9219) has label 10");
  // A missing training file.
  fs::remove(path("data_batch_4.bin"));
  expect_error("batch_size: 1", Phase::Train, path("data_batch_4.bin"), "No such file or directory");
  // mean: auto with a missing training file also fails at TEST.
  write_bytes(path("test_batch.bin"), cifar_file(100, kPerFile));
  expect_error("batch_size: 1\nmean_file: auto", Phase::Test, path("data_batch_4.bin"), "No such file or directory");
  expect_error("batch_size: 1\nmean_file: auto\nmean: 3", Phase::Test, "mean_file", "not both");
}

// Issue 17: a gzip bomb under a CIFAR-10 name stops inflating once it passes the bytes that
// records_per_file promises (6 records = 18438 bytes, followed here by 64 MiB of zeros).
TEST_F(CifarTest, GzipBombStopsAtTheRecordCount) {
  std::vector<uint8_t> b = cifar_file(100, kPerFile);
  b.resize(b.size() + (size_t{64} << 20), 0);
  testing::write_gzip(path("test_batch.bin"), b);
  b = {};
  std::string msg;
  try {
    source("batch_size: 1", Phase::Test);
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("'" + path("test_batch.bin") + "' (gzip) inflates to more than the 6 records of 3073 bytes = "
                     "18438 bytes expected"),
            std::string::npos)
      << msg;
  const size_t at = msg.find("stopped after ");
  ASSERT_NE(at, std::string::npos) << msg;
  EXPECT_LE(std::stoll(msg.substr(at + 14)), 18438 + 65536) << msg;
  // A gzip file of the right size reads like the plain one.
  testing::write_gzip(path("test_batch.bin"), cifar_file(100, kPerFile));
  EXPECT_NO_THROW(source("batch_size: 1", Phase::Test));
}

}  // namespace
}  // namespace dropnet
