// Input pipeline throughput: ImageNet-style JPEGs (500x375, decoded with stb_image, resized to
// 256x256, random 227 crop + mirror, mean subtraction) per core and on every core, and the same
// images from a packed (pre-resized, memory-mapped) file. Compare with what AlexNet consumes
// (bench_conv_cuda / gpu-check on a GPU: images/s of a training iteration).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <filesystem>
#include <fstream>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

#include "core/rng.h"
#include "data/image_list.h"
#include "data/packed.h"
#include "data/sources.h"
#include "layers/layer.h"

using namespace dropnet;

namespace {

const std::string& dataset_dir() {
  static const std::string dir = [] {
    std::string d = std::filesystem::temp_directory_path().string() + "/dropnet_bench_data";
    std::filesystem::create_directories(d + "/img");
    std::ofstream list(d + "/list.txt");
    HostRng rng(1, 2);
    std::vector<unsigned char> px(500 * 375 * 3);
    for (int i = 0; i < 64; ++i) {
      // Smooth gradients + noise: compresses like a photo (about 40-60 KB at quality 90).
      for (int y = 0; y < 375; ++y)
        for (int x = 0; x < 500; ++x)
          for (int c = 0; c < 3; ++c)
            px[(y * 500 + x) * 3 + c] = static_cast<unsigned char>((x * (c + 1) + y * (3 - c) + i * 17) / 4 % 256 +
                                                                   static_cast<int>(rng.below(24)));
      const std::string name = "img/" + std::to_string(i) + ".jpg";
      stbi_write_jpg((d + "/" + name).c_str(), 500, 375, 3, px.data(), 90);
      list << name << " " << (i % 10) << "\n";
    }
    list.close();
    data::ImageListOptions o;
    o.list = d + "/list.txt";
    o.resize_h = o.resize_w = 256;
    data::write_packed(d + "/data.pack", data::ImageListDataset(o));
    return d;
  }();
  return dir;
}

void run_source(benchmark::State& state, const std::string& section_yaml) {
  omp_set_num_threads(static_cast<int>(state.range(0)));
  YAML::Node sec = YAML::Load(section_yaml);
  SourceRequest req{ConfigNode(sec, "data.train", std::make_shared<const std::string>("bench")), Phase::Train, 1, 0, 1};
  auto src = make_batch_source(req);
  const int64_t b = src->batch_size();
  std::vector<float> x(static_cast<size_t>(b * src->sample_shape().count())), y(static_cast<size_t>(b));
  for (auto _ : state) src->next_batch(x.data(), y.data());
  state.counters["img/s"] = benchmark::Counter(static_cast<double>(state.iterations() * b), benchmark::Counter::kIsRate);
  state.counters["img/s/core"] =
      benchmark::Counter(static_cast<double>(state.iterations() * b) / static_cast<double>(state.range(0)),
                         benchmark::Counter::kIsRate);
}

void BM_JpegPipeline(benchmark::State& state) {
  run_source(state, "{source: image_list, list: " + dataset_dir() +
                        "/list.txt, resize: [256, 256], crop: 227, mirror: true, mean: [104, 117, 123], "
                        "batch_size: 32, prefetch: 0, shuffle: true}");
}

void BM_PackedFile(benchmark::State& state) {
  run_source(state, "{source: packed, path: " + dataset_dir() +
                        "/data.pack, crop: 227, mirror: true, mean: [104, 117, 123], batch_size: 32, prefetch: 0, "
                        "shuffle: true}");
}

BENCHMARK(BM_JpegPipeline)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PackedFile)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  std::printf("AlexNet consumption on one GPU: not measured on this machine (no GPU); gpu-check.sh reports the\n"
              "200-iteration AlexNet-13 images/s on a GPU to compare with the img/s above.\n");
  return 0;
}
