// Image lists and class folders decoded with stb_image: pixels, channel order, resize, crops,
// mirror, mean, and bad inputs (missing label, missing file, corrupt JPEG, truncated PNG, a
// header claiming 100000x100000, an empty list), with skip_bad.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/image_list.h"
#include "data/sources.h"
#include "core/config.h"
#include "layers/layer.h"
#include "tests/testing/configs.h"
#include "tests/testing/crops.h"
#include "tests/testing/files.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#include <stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace dropnet {
namespace {

namespace fs = std::filesystem;

using testing::put_be32;
using testing::read_all;
using testing::write_bytes;
using testing::write_text;

// RGB pattern of image `id`: (y, x, ch) -> value.
uint8_t pat(int id, int y, int x, int ch) { return static_cast<uint8_t>((id * 40 + y * 11 + x * 7 + ch * 60) % 256); }

std::vector<uint8_t> rgb_image(int id, int h, int w) {
  std::vector<uint8_t> px(static_cast<size_t>(h) * w * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) px[(y * w + x) * 3 + c] = pat(id, y, x, c);
  return px;
}

void write_png(const std::string& path, const std::vector<uint8_t>& rgb, int h, int w, int comp = 3) {
  fs::create_directories(fs::path(path).parent_path());
  ASSERT_NE(stbi_write_png(path.c_str(), w, h, comp, rgb.data(), w * comp), 0) << path;
}

void write_jpg(const std::string& path, const std::vector<uint8_t>& rgb, int h, int w) {
  fs::create_directories(fs::path(path).parent_path());
  ASSERT_NE(stbi_write_jpg(path.c_str(), w, h, 3, rgb.data(), 98), 0) << path;
}

// A PNG whose IHDR claims w x h (valid CRC), followed by no image data.
std::vector<uint8_t> png_header_only(uint32_t w, uint32_t h) {
  std::vector<uint8_t> b = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  put_be32(&b, 13);
  std::vector<uint8_t> chunk = {'I', 'H', 'D', 'R'};
  put_be32(&chunk, w);
  put_be32(&chunk, h);
  for (uint8_t v : {8, 2, 0, 0, 0}) chunk.push_back(v);
  b.insert(b.end(), chunk.begin(), chunk.end());
  put_be32(&b, static_cast<uint32_t>(crc32(0, chunk.data(), static_cast<uInt>(chunk.size()))));
  std::vector<uint8_t> iend = {'I', 'E', 'N', 'D'};
  put_be32(&b, 0);
  b.insert(b.end(), iend.begin(), iend.end());
  put_be32(&b, static_cast<uint32_t>(crc32(0, iend.data(), 4)));
  return b;
}

class ImagesTest : public testing::TempDirTest {
 protected:
  std::unique_ptr<BatchSource> source(const std::string& keys, Phase phase = Phase::Train, uint64_t seed = 1) {
    cfg_ = load_config_text("data:\n  d:\n    source: image_list\n" + testing::indent_lines(keys, "    "),
                            "images.yaml");
    SourceRequest req{cfg_.node().child("data").child("d"), phase, seed, 0, 1};
    return make_batch_source(req);
  }

  // Four 6x5 PNGs under sub/, listed with labels 3, 1, 4, 1.
  void write_png_list() {
    std::string list;
    int labels[4] = {3, 1, 4, 1};
    for (int i = 0; i < 4; ++i) {
      write_png(path(fmt::format("sub/img{}.png", i)), rgb_image(i, 6, 5), 6, 5);
      list += fmt::format("sub/img{}.png {}\n", i, labels[i]);
    }
    write_text(path("list.txt"), list);
  }

  void expect_error(const std::string& keys, const std::vector<std::string>& needles) {
    try {
      auto s = source(keys);
      std::vector<float> d(static_cast<size_t>(s->batch_size() * s->sample_shape().count())), l(s->batch_size());
      for (int k = 0; k < 4; ++k) s->next_batch(d.data(), l.data());
      ADD_FAILURE() << "no error; expected " << needles[0];
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_EQ(e.kind(), ErrorKind::Input) << msg;
      for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
    }
  }

  LoadedConfig cfg_;
};

TEST_F(ImagesTest, PngListPixelsLabelsAndChannelOrder) {
  write_png_list();
  auto rgb = source(fmt::format("list: {}\nbatch_size: 4\nchannel_order: rgb\nprefetch: 0", path("list.txt")));
  EXPECT_EQ(rgb->sample_shape(), Shape({3, 6, 5}));
  EXPECT_EQ(rgb->num_samples(), 4);
  EXPECT_EQ(rgb->num_classes(), 5);  // max label + 1
  std::vector<float> d(4 * 90), l(4);
  rgb->next_batch(d.data(), l.data());
  EXPECT_EQ(l, (std::vector<float>{3, 1, 4, 1}));
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 6; ++y)
        for (int x = 0; x < 5; ++x) ASSERT_EQ(d[i * 90 + (c * 6 + y) * 5 + x], pat(i, y, x, c)) << i << c << y << x;

  auto bgr = source(fmt::format("list: {}\nbatch_size: 4\nscale: 0.5\nmean: [1, 2, 3]\nprefetch: 2", path("list.txt")));
  bgr->next_batch(d.data(), l.data());
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 6; ++y)
        for (int x = 0; x < 5; ++x)
          ASSERT_EQ(d[i * 90 + (c * 6 + y) * 5 + x], (pat(i, y, x, 2 - c) - (c + 1.f)) * 0.5f) << i << c << y << x;

  auto gray = source(fmt::format("list: {}\nbatch_size: 1\nchannels: 1\nprefetch: 0", path("list.txt")));
  EXPECT_EQ(gray->sample_shape(), Shape({1, 6, 5}));
  std::vector<float> g(30), gl(1);
  gray->next_batch(g.data(), gl.data());
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 5; ++x) {
      int r = pat(0, y, x, 0), gg = pat(0, y, x, 1), b = pat(0, y, x, 2);
      EXPECT_NEAR(g[y * 5 + x], (r * 77 + gg * 150 + b * 29) >> 8, 1.0f);  // stb's luma
    }
}

TEST_F(ImagesTest, FolderPerClassSortedLabels) {
  const char* classes[] = {"dog", "ant", "cat"};
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 2; ++j)
      write_png(path(fmt::format("root/{}/{}.png", classes[k], j)), rgb_image(k * 2 + j, 4, 4), 4, 4);
  write_text(path("root/cat/notes.txt"), "not an image");
  auto s = source(fmt::format("root: {}\nbatch_size: 6\nchannel_order: rgb\nprefetch: 0", path("root")));
  EXPECT_EQ(s->num_classes(), 3);
  EXPECT_EQ(s->num_samples(), 6);
  std::vector<float> d(6 * 48), l(6);
  s->next_batch(d.data(), l.data());
  EXPECT_EQ(l, (std::vector<float>{0, 0, 1, 1, 2, 2}));  // ant, cat, dog
  EXPECT_EQ(d[0 * 48 + 1], pat(1 * 2 + 0, 0, 1, 0));     // ant/0.png
  EXPECT_EQ(d[4 * 48 + 1], pat(0 * 2 + 0, 0, 1, 0));     // dog/0.png
}

TEST_F(ImagesTest, BilinearResize) {
  // 1-D [0, 10, 20, 30] -> 2: half-pixel centres sample 0.5 and 2.5 -> [5, 25].
  uint8_t in4[4] = {0, 10, 20, 30}, out2[2];
  data::resize_bilinear_hwc(in4, 1, 4, 1, out2, 1, 2);
  EXPECT_EQ(out2[0], 5);
  EXPECT_EQ(out2[1], 25);
  // 2x2 [[0, 100], [100, 200]] -> 4x4: weights [0, .25, .75, 1] per axis -> 100 * (wy + wx).
  std::vector<uint8_t> img = {0, 0, 0, 100, 100, 100, 100, 100, 100, 200, 200, 200};
  write_png(path("small.png"), img, 2, 2);
  write_text(path("l.txt"), "small.png 0\n");
  auto s = source(fmt::format("list: {}\nbatch_size: 1\nresize: [4, 4]\nprefetch: 0", path("l.txt")));
  EXPECT_EQ(s->sample_shape(), Shape({3, 4, 4}));
  std::vector<float> d(48), l(1);
  s->next_batch(d.data(), l.data());
  const float wgt[4] = {0.f, 0.25f, 0.75f, 1.f};
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) EXPECT_EQ(d[(c * 4 + y) * 4 + x], 100.f * (wgt[y] + wgt[x])) << c << y << x;

  // Shorter side: a 10x20 image -> 5x10, then a center crop of 5 at TEST.
  std::vector<uint8_t> flat(10 * 20 * 3, 77);
  write_png(path("wide.png"), flat, 10, 20);
  write_text(path("w.txt"), "wide.png 0\n");
  auto t = source(fmt::format("list: {}\nbatch_size: 1\nresize: 5\ncrop: 5\nprefetch: 0", path("w.txt")), Phase::Test);
  EXPECT_EQ(t->sample_shape(), Shape({3, 5, 5}));
  std::vector<float> e(75);
  t->next_batch(e.data(), l.data());
  for (float v : e) EXPECT_EQ(v, 77.f);
}

TEST_F(ImagesTest, JpegDecodesCloseToTheSource) {
  // A smooth image survives JPEG at quality 98 within a few levels.
  std::vector<uint8_t> px(32 * 32 * 3);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x)
      for (int c = 0; c < 3; ++c) px[(y * 32 + x) * 3 + c] = static_cast<uint8_t>(40 + y * 3 + x * 2 + c * 20);
  write_jpg(path("j/a.jpg"), px, 32, 32);
  write_text(path("l.txt"), "j/a.jpg 2\n");
  auto s = source(fmt::format("list: {}\nbatch_size: 2\nchannel_order: rgb\nprefetch: 0", path("l.txt")));
  std::vector<float> d(2 * 3072), l(2);
  s->next_batch(d.data(), l.data());
  EXPECT_EQ(l[1], 2.f);
  float worst = 0.f;
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) worst = std::max(worst, std::abs(d[(c * 32 + y) * 32 + x] - px[(y * 32 + x) * 3 + c]));
  EXPECT_LE(worst, 8.f);
  EXPECT_EQ(std::vector<float>(d.begin(), d.begin() + 3072), std::vector<float>(d.begin() + 3072, d.end()));
}

TEST_F(ImagesTest, CropsMirrorAndMeanImage) {
  write_png(path("a.png"), rgb_image(0, 8, 8), 8, 8);
  write_text(path("l.txt"), "a.png 0\n");
  // TEST: center crop 4 at offset 2, no mirror even with mirror: true.
  auto t = source(fmt::format("list: {}\nbatch_size: 1\ncrop: 4\nmirror: true\nchannel_order: rgb\nprefetch: 0", path("l.txt")),
                  Phase::Test);
  std::vector<float> d(48), l(1);
  t->next_batch(d.data(), l.data());
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) ASSERT_EQ(d[(c * 4 + y) * 4 + x], pat(0, y + 2, x + 2, c));
  // TRAIN: every result is some (mirrored) crop and several occur.
  auto s = source(fmt::format("list: {}\nbatch_size: 1\ncrop: 4\nmirror: true\nchannel_order: rgb\nprefetch: 0", path("l.txt")));
  std::set<std::tuple<int, int, bool>> seen;
  for (int k = 0; k < 300; ++k) {
    s->next_batch(d.data(), l.data());
    const auto crop =
        testing::find_crop(d.data(), 3, 4, 4, 8, 8, 0, [](int c, int y, int x) { return pat(0, y, x, c); });
    ASSERT_TRUE(crop) << "draw " << k;
    seen.insert(*crop);
  }
  EXPECT_EQ(seen.size(), 50u);
}

TEST_F(ImagesTest, DimensionMismatchWithoutResize) {
  write_png(path("a.png"), rgb_image(0, 8, 8), 8, 8);
  write_png(path("b.png"), rgb_image(1, 9, 8), 9, 8);
  write_text(path("l.txt"), "a.png 0\nb.png 1\n");
  expect_error(fmt::format("list: {}\nbatch_size: 2\nprefetch: 0", path("l.txt")),
               {path("l.txt") + ":2", "b.png", "9x8", "set resize or crop"});
}

TEST_F(ImagesTest, BadInputs) {
  write_png_list();
  std::string list = path("bad.txt");
  auto keys = [&](const std::string& extra = "") {
    return fmt::format("list: {}\nbatch_size: 2\nprefetch: 0{}", list, extra);
  };
  // A line without a label.
  write_text(list, "sub/img0.png 1\nsub/img1.png\n");
  expect_error(keys(), {list + ":2", "no label"});
  write_text(list, "sub/img0.png one\n");
  expect_error(keys(), {list + ":1", "bad label 'one'"});
  write_text(list, "sub/img0.png 16777216\n");
  expect_error(keys(), {list + ":1", "label 16777216 is too large (labels are float32 values: at most 16777215)"});
  write_text(list, "sub/img0.png 7\n");
  expect_error(keys("\nnum_classes: 5"), {list + ":1", "label 7 is out of range [0, 5)"});
  // A missing file.
  write_text(list, "sub/img0.png 1\n\nsub/nope.png 2\n");
  expect_error(keys(), {list + ":3", path("sub/nope.png"), "cannot find image"});
  // A corrupt JPEG (random bytes).
  std::vector<uint8_t> junk(3000);
  uint32_t x = 12345;
  for (auto& b : junk) b = static_cast<uint8_t>((x = x * 1664525u + 1013904223u) >> 24);
  write_bytes(path("junk.jpg"), junk);
  write_text(list, "sub/img0.png 1\njunk.jpg 2\n");
  expect_error(keys(), {list + ":2", path("junk.jpg"), "not a readable JPEG or PNG image (3000 bytes)"});
  // A JPEG header followed by garbage (the header inserted in front: appending to a 4-byte vector trips a false
  // -Warray-bounds in GCC 12).
  std::vector<uint8_t> jpg_junk = junk;
  jpg_junk.insert(jpg_junk.begin(), {0xff, 0xd8, 0xff, 0xe0});
  write_bytes(path("junk2.jpg"), jpg_junk);
  write_text(list, "sub/img0.png 1\njunk2.jpg 2\n");
  expect_error(keys(), {list + ":2", path("junk2.jpg"), "truncated or corrupt JPEG (3004 bytes): no end-of-image marker"});
  // A truncated JPEG said "Not a PNG" (stb_image names the last format it tried).
  write_jpg(path("full.jpg"), rgb_image(3, 16, 16), 16, 16);
  std::vector<uint8_t> jpg = read_all(path("full.jpg"));
  jpg.resize(jpg.size() * 2 / 3);
  write_bytes(path("trunc.jpg"), jpg);
  write_text(list, "trunc.jpg 2\n");
  expect_error(keys(), {list + ":1", path("trunc.jpg"), "truncated or corrupt JPEG"});
  try {
    auto s = source(keys());
    std::vector<float> d(static_cast<size_t>(s->batch_size() * s->sample_shape().count())), l(s->batch_size());
    s->next_batch(d.data(), l.data());
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find("Not a PNG"), std::string::npos) << e.what();
  }
  // A truncated PNG.
  std::vector<uint8_t> png = read_all(path("sub/img2.png"));
  png.resize(png.size() / 2);
  write_bytes(path("trunc.png"), png);
  write_text(list, "sub/img0.png 1\ntrunc.png 2\n");
  expect_error(keys(), {list + ":2", path("trunc.png"), "PNG"});
  // A PNG header claiming 100000 x 100000: refused before decoding.
  write_bytes(path("huge.png"), png_header_only(100000, 100000));
  write_text(list, "huge.png 0\n");
  expect_error(keys(), {list + ":1", path("huge.png"), "100000x100000 = 10000000000 pixels exceeds max_pixels 67108864"});
  // A JPEG whose frame header claims 60000 x 50000.
  std::vector<uint8_t> big_jpg = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x4a, 0x46, 0xff, 0xc0, 0x00, 0x11, 0x08,
                                  0xc3, 0x50, 0xea, 0x60, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1};
  write_bytes(path("huge.jpg"), big_jpg);
  write_text(list, "huge.jpg 0\n");
  expect_error(keys(), {list + ":1", path("huge.jpg"), "60000x50000 = 3000000000 pixels exceeds max_pixels"});
  write_text(list, "sub/img0.png 0\n");
  expect_error(keys("\nmax_pixels: 29"), {list + ":1", "5x6 = 30 pixels exceeds max_pixels 29"});
  // An empty list (comments and blank lines only), a missing list, an empty folder.
  write_text(list, "# nothing\n\n");
  expect_error(keys(), {list, "no images"});
  expect_error(fmt::format("list: {}\nbatch_size: 2", path("missing.txt")), {path("missing.txt"), "cannot open"});
  fs::create_directories(path("empty_root"));
  expect_error(fmt::format("root: {}\nbatch_size: 2", path("empty_root")), {path("empty_root"), "no class folders"});
  // Config errors.
  expect_error("batch_size: 2", {"images.yaml:", "list: FILE"});
  expect_error(keys("\nresize: 8"), {"images.yaml:", "set crop too"});
  expect_error(keys("\nchannel_order: brg"), {"images.yaml:", "channel_order"});
}

// An unreadable image folder said "cannot find image"; it is "Permission denied". (Root reads
// everything: the test needs an ordinary user.)
TEST_F(ImagesTest, UnreadableFolderIsPermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: permissions are not enforced";
  write_png_list();
  write_text(path("l.txt"), "sub/img0.png 1\n");
  fs::permissions(path("sub"), fs::perms::none);
  std::string msg;
  try {
    source(fmt::format("list: {}\nbatch_size: 1\nprefetch: 0", path("l.txt")));
  } catch (const Error& e) {
    msg = e.what();
  }
  fs::permissions(path("sub"), fs::perms::owner_all);
  EXPECT_NE(msg.find("cannot access image"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
}

TEST_F(ImagesTest, SkipBadCountsAndReplacesDeterministically) {
  write_png_list();
  std::vector<uint8_t> junk(500, 0x42);
  write_bytes(path("junk.png"), junk);
  // Lines: good(3), no label, missing, good(1), junk(9), good(4).
  write_text(path("l.txt"), "sub/img0.png 3\nsub/img1.png\nsub/none.png 5\nsub/img1.png 1\njunk.png 9\nsub/img2.png 4\n");
  auto s = source(fmt::format("list: {}\nbatch_size: 4\nskip_bad: true\nchannel_order: rgb\nprefetch: 0", path("l.txt")));
  EXPECT_EQ(s->num_samples(), 4);  // two bad lines dropped at load; the junk image is found at decode
  std::vector<float> d(4 * 90), l(4);
  s->next_batch(d.data(), l.data());
  // The undecodable image is replaced by the next one in the list (img2, label 4).
  EXPECT_EQ(l, (std::vector<float>{3, 1, 4, 4}));
  EXPECT_EQ(d[2 * 90 + 7], d[3 * 90 + 7]);
  EXPECT_EQ(d[2 * 90 + 7], pat(2, 1, 2, 0));
}

TEST_F(ImagesTest, PrefetchedDecodingMatchesAndRestores) {
  std::string list;
  for (int i = 0; i < 13; ++i) {
    write_png(path(fmt::format("p/{}.png", i)), rgb_image(i, 10, 12), 10, 12);
    list += fmt::format("p/{}.png {}\n", i, i % 3);
  }
  write_text(path("l.txt"), list);
  const std::string keys = fmt::format("list: {}\nbatch_size: 5\nshuffle: true\ncrop: 8\nmirror: true", path("l.txt"));
  auto a = source(keys + "\nprefetch: 0", Phase::Train, 4);
  auto b = source(keys + "\nprefetch: 3", Phase::Train, 4);
  std::vector<float> d1(5 * 192), l1(5), d2(5 * 192), l2(5);
  std::vector<int64_t> st;
  std::vector<float> after;
  for (int k = 0; k < 9; ++k) {
    a->next_batch(d1.data(), l1.data());
    b->next_batch(d2.data(), l2.data());
    ASSERT_EQ(d1, d2) << k;
    ASSERT_EQ(l1, l2) << k;
    if (k == 4) st = b->state();
    if (k == 5) after = d1;
  }
  b->restore(st);
  b->next_batch(d2.data(), l2.data());
  EXPECT_EQ(d2, after);
}

}  // namespace
}  // namespace dropnet
