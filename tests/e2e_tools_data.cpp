// dropnet-pack and dropnet-datacheck end to end: an image list written here (PNG files) is
// packed, read back through the `packed` source, and validated by the check tool.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sys/wait.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

#include "data/sources.h"
#include "layers/layer.h"

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

}  // namespace
