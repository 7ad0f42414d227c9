// dropnet-pack and dropnet-datacheck end to end: an image list written here (PNG files) is
// packed, read back through the `packed` source, and validated by the check tool. dropnet-test
// --predict on the same images as IDX, .npy and an image list, and its --csv table.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <fstream>
#include <sys/wait.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

#include "core/npy.h"
#include "data/sources.h"
#include "layers/layer.h"
#include "tests/testing/files.h"

using namespace dropnet;

namespace {

std::string tool(const char* name) {
  const char* dir = std::getenv("DROPNET_TOOLS_DIR");
  return dir ? std::string(dir) + "/" + name : "";
}

int run(const std::string& cmd, std::string* out) {
  std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out->append(buf, n);
  int rc = pclose(p);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(ToolsData, PackThenTrainSourceAndCheck) {
  if (tool("dropnet-pack").empty()) GTEST_SKIP() << "DROPNET_TOOLS_DIR not set (run through ctest)";
  const std::string dir = ::testing::TempDir() + "/pack_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/img");
  std::ofstream list(dir + "/list.txt");
  for (int i = 0; i < 12; ++i) {
    const int w = 20 + i, h = 16 + 2 * i;
    std::vector<unsigned char> px(static_cast<size_t>(w * h * 3));
    for (size_t k = 0; k < px.size(); ++k) px[k] = static_cast<unsigned char>((k * 7 + i * 31) % 256);
    const std::string name = "img/" + std::to_string(i) + ".png";
    ASSERT_NE(stbi_write_png((dir + "/" + name).c_str(), w, h, 3, px.data(), w * 3), 0);
    list << name << " " << (i % 3) << "\n";
  }
  list.close();
  std::string out;
  ASSERT_EQ(run(tool("dropnet-pack") + " --list " + dir + "/list.txt --out " + dir + "/p.pack --size 8", &out), 0) << out;
  EXPECT_NE(out.find("packed 12 images"), std::string::npos) << out;

  YAML::Node sec = YAML::Load("{source: packed, path: " + dir + "/p.pack, batch_size: 4, prefetch: 0}");
  SourceRequest req{ConfigNode(sec, "data.train", std::make_shared<const std::string>("t.yaml")), Phase::Train, 1, 0, 1};
  auto src = make_batch_source(req);
  EXPECT_EQ(src->num_samples(), 12);
  EXPECT_EQ(src->sample_shape(), Shape({3, 8, 8}));
  std::vector<float> x(4 * 3 * 8 * 8), y(4);
  src->next_batch(x.data(), y.data());
  EXPECT_EQ(y, (std::vector<float>{0, 1, 2, 0}));

  // The check tool on a config pointing at the packed file: counts and the label histogram.
  std::ofstream cfg(dir + "/c.yaml");
  cfg << "name: c\ndata:\n  train: {source: packed, path: " << dir << "/p.pack, batch_size: 4}\n"
      << "solver: {base_lr: 0.1, max_iter: 1}\nlayers:\n  - {name: data, type: data, top: [data, label]}\n";
  cfg.close();
  out.clear();
  ASSERT_EQ(run(tool("dropnet-datacheck") + " " + dir + "/c.yaml", &out), 0) << out;
  EXPECT_NE(out.find("train: 12 samples of shape (3, 8, 8)"), std::string::npos) << out;
  EXPECT_NE(out.find("labels: 0:4 1:4 2:4"), std::string::npos) << out;
  // 12 samples in batches of 5: the third batch wraps around to the first two samples, which one
  // epoch does not count twice (the histogram sums to the sample count). --batches counts all read.
  out.clear();
  ASSERT_EQ(run(tool("dropnet-datacheck") + " " + dir + "/c.yaml data.train.batch_size=5", &out), 0) << out;
  EXPECT_NE(out.find("3 batches of 5 read, 12 samples counted"), std::string::npos) << out;
  EXPECT_NE(out.find("labels: 0:4 1:4 2:4"), std::string::npos) << out;
  out.clear();
  ASSERT_EQ(run(tool("dropnet-datacheck") + " " + dir + "/c.yaml data.train.batch_size=5 --batches 3", &out), 0)
      << out;
  EXPECT_NE(out.find("3 batches of 5 read, 15 samples counted"), std::string::npos) << out;

  // Bad input: a list naming a missing file -> exit 2 with the list's file:line.
  std::ofstream bad(dir + "/bad.txt");
  bad << "img/0.png 0\nimg/missing.png 1\n";
  bad.close();
  out.clear();
  EXPECT_EQ(run(tool("dropnet-pack") + " --list " + dir + "/bad.txt --out " + dir + "/b.pack --size 8", &out), 2) << out;
  EXPECT_NE(out.find("missing.png"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/b.pack"));
}


// Lines of a CSV file, split at commas (no quoted fields in the columns compared here).
std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    rows.push_back(f);
  }
  return rows;
}

// A net trained on 30 IDX images of 3 classes; dropnet-test --predict on the same images as IDX
// (with labels), .npy and an image list (PNG files, no labels) gives the same class for every
// sample; the labeled predictions tally to the evaluation's confusion matrix (--csv).
TEST(ToolsData, PredictIdxNpyAndImageListAgreeWithTheEvaluation) {
  if (tool("dropnet-test").empty()) GTEST_SKIP() << "DROPNET_TOOLS_DIR not set (run through ctest)";
  dropnet::testing::TempDir tmp;
  const int n = 30, h = 8, w = 8;
  std::vector<uint8_t> px(static_cast<size_t>(n * h * w)), labels(n);
  for (int i = 0; i < n; ++i) {
    labels[i] = static_cast<uint8_t>(i % 3);
    for (int k = 0; k < h * w; ++k)  // class c is bright in band c of the rows, plus noise
      px[static_cast<size_t>(i * h * w + k)] =
          static_cast<uint8_t>((k / w) / 3 == labels[i] ? 200 + (i * 7 + k) % 50 : (i * 13 + k * 5) % 90);
  }
  std::vector<uint8_t> idx_images, idx_labels;
  for (uint32_t v : {2051u, static_cast<uint32_t>(n), static_cast<uint32_t>(h), static_cast<uint32_t>(w)})
    dropnet::testing::put_be32(&idx_images, v);
  idx_images.insert(idx_images.end(), px.begin(), px.end());
  for (uint32_t v : {2049u, static_cast<uint32_t>(n)}) dropnet::testing::put_be32(&idx_labels, v);
  idx_labels.insert(idx_labels.end(), labels.begin(), labels.end());
  dropnet::testing::write_bytes(tmp.file("x.idx"), idx_images);
  dropnet::testing::write_bytes(tmp.file("y.idx"), idx_labels);
  std::vector<float> fpx(px.begin(), px.end());
  write_npy(tmp.file("x.npy"), Shape{n, h, w}, fpx.data());
  std::filesystem::create_directories(tmp.file("img dir"));
  std::string list;
  for (int i = 0; i < n; ++i) {
    const std::string name = "img dir/" + std::to_string(i) + ".png";
    ASSERT_NE(stbi_write_png(tmp.file(name).c_str(), w, h, 1, px.data() + i * h * w, w), 0);
    list += name + "\n";
  }
  dropnet::testing::write_text(tmp.file("list.txt"), list);
  const std::string mnist = "{source: mnist, images: " + tmp.file("x.idx") + ", labels: " + tmp.file("y.idx") +
                            ", num_classes: 3, batch_size: 7, scale: 0.00390625}";
  dropnet::testing::write_text(tmp.file("net.yaml"), "name: p\nseed: 3\ndata:\n  train: " + mnist +
                                                         "\n  test: " + mnist +
                                                         "\nsolver: {base_lr: 0.1, max_iter: 60, snapshot: 60}\n"
                                                         "layers:\n"
                                                         "  - {name: data, type: data, top: [data, label]}\n"
                                                         "  - {name: fc, type: fc, bottom: data, top: fc, num_output: 3}\n"
                                                         "  - {name: loss, type: softmax_loss, bottom: [fc, label], top: loss}\n");
  std::string out;
  ASSERT_EQ(run(tool("dropnet-train") + " " + tmp.file("net.yaml") + " --threads 1 --device cpu --quiet --out " +
                    tmp.file("run"),
                &out),
            0)
      << out;
  const std::string test = tool("dropnet-test") + " " + tmp.file("run") + " --threads 1 --device cpu ";
  out.clear();
  ASSERT_EQ(run(test + "--csv " + tmp.file("classes.csv"), &out), 0) << out;
  const auto classes = read_csv(tmp.file("classes.csv"));
  ASSERT_EQ(classes.size(), 4u);
  EXPECT_EQ(classes[0][0] + "," + classes[0][1] + "," + classes[0][2] + "," + classes[0][3], "class,samples,accuracy,predicted_0");
  EXPECT_EQ(classes[0].back(), "non_finite");
  for (int c = 0; c < 3; ++c) EXPECT_EQ(classes[c + 1][1], "10") << c;  // every sample once

  out.clear();
  ASSERT_EQ(run(test + "--predict " + tmp.file("x.idx") + " --labels " + tmp.file("y.idx") + " --out " +
                    tmp.file("idx.csv"),
                &out),
            0)
      << out;
  EXPECT_NE(out.find("30 predictions for " + tmp.file("x.idx") + " (IDX, labeled)"), std::string::npos) << out;
  const auto idx = read_csv(tmp.file("idx.csv"));
  ASSERT_EQ(idx.size(), static_cast<size_t>(n + 1));
  EXPECT_EQ(idx[0], (std::vector<std::string>{"index", "predicted", "probability", "top5", "label", "input"}));
  std::map<std::pair<int, int>, int> tally;  // (label, predicted) -> samples
  for (int i = 1; i <= n; ++i) {
    EXPECT_EQ(idx[i][0], std::to_string(i - 1));
    EXPECT_EQ(idx[i][4], std::to_string(labels[i - 1]));
    EXPECT_EQ(idx[i][3].substr(0, 1), idx[i][1]);  // the top-5 list starts with the prediction
    const double p = std::stod(idx[i][2]);
    EXPECT_TRUE(p > 1.0 / 3 - 1e-6 && p <= 1.0) << p;  // the highest of 3 probabilities
    ++tally[{std::stoi(idx[i][4]), std::stoi(idx[i][1])}];
  }
  for (int t = 0; t < 3; ++t)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(std::to_string(tally[{t, c}]), classes[t + 1][3 + c]) << t << " " << c;

  for (const std::string input : {"x.npy", "list.txt"}) {
    out.clear();
    ASSERT_EQ(run(test + "--predict '" + tmp.file(input) + "' --out " + tmp.file("p.csv"), &out), 0) << out;
    EXPECT_NE(out.find("(no labels: predictions only)"), std::string::npos) << out;
    const auto rows = read_csv(tmp.file("p.csv"));
    ASSERT_EQ(rows.size(), static_cast<size_t>(n + 1)) << input;
    for (int i = 1; i <= n; ++i) {
      EXPECT_EQ(rows[i][1], idx[i][1]) << input << " sample " << i - 1;
      EXPECT_EQ(rows[i][2], idx[i][2]) << input << " sample " << i - 1;
      EXPECT_EQ(rows[i][4], "") << input;
    }
  }
  EXPECT_NE(read_csv(tmp.file("p.csv"))[3][5].find("img dir/2.png"), std::string::npos);

  // Inputs it cannot use: named, exit 2.
  std::vector<float> bad(fpx);
  bad[5] = 0.5f;
  write_npy(tmp.file("bad.npy"), Shape{n, h, w}, bad.data());
  std::vector<float> big(static_cast<size_t>(2 * 9 * 9), 0.f);
  write_npy(tmp.file("big.npy"), Shape{2, 9, 9}, big.data());
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"--predict " + tmp.file("bad.npy") + " --out " + tmp.file("q.csv"), "element 5 is 0.5"},
      {"--predict " + tmp.file("big.npy") + " --out " + tmp.file("q.csv"), "its samples are (1, 9, 9) after the TEST transform, the net takes (1, 8, 8)"},
      {"--predict " + tmp.file("x.npy") + " --labels " + tmp.file("list.txt") + " --out " + tmp.file("q.csv"), "list.txt"},
      {"--predict " + tmp.file("x.npy"), "--predict needs --out FILE"},
      {"--labels " + tmp.file("y.idx"), "--labels goes with --predict INPUT"},
      {"--predict " + tmp.file("nothing.npy") + " --out " + tmp.file("q.csv"), "cannot find"},
  };
  for (const auto& [args, message] : refused) {
    out.clear();
    EXPECT_EQ(run(test + args, &out), 2) << args << "\n" << out;
    EXPECT_NE(out.find(message), std::string::npos) << args << "\n" << out;
  }
  EXPECT_FALSE(std::filesystem::exists(tmp.file("q.csv")));
}

}  // namespace
