// dropnet-datacheck CONFIG [key.path=value ...] [options]   (--help: every option)
// Validates the data sources of a config: builds the train and test sources (every file is
// opened and checked), prints the sample count and shape, reads N batches (default: one epoch)
// and prints the label histogram and pixel statistics. Exit 2 with a message on bad data.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "core/error.h"
#include "data/sources.h"
#include "layers/layer.h"
#include "tools/cli_common.h"

using namespace dropnet;

namespace {

int check_main(int argc, char** argv) {
  cli::Parser args("dropnet-datacheck", "dropnet-datacheck CONFIG [key.path=value ...] [options]",
                   "Validates a config's data sources: opens and checks every file, prints each source's sample "
                   "count and shape, the label histogram and pixel statistics. Exit 2 with a message on bad data.",
                   "  CONFIG          the net description (YAML)\n"
                   "  key.path=value  changes a setting of CONFIG (e.g. data.train.images=...)");
  int64_t batches = 0, threads = 0;
  args.option("--batches", batches, "N", "batches to read from each source (default: 0, one epoch)");
  args.threads(threads);
  std::vector<std::string> pos = args.parse(argc, argv);
  cli::set_threads(threads);
  if (pos.empty()) input_error("missing CONFIG\n{}", args.usage());
  cli::init_logging(0);
  LoadedConfig cfg = load_config_file(pos[0], std::vector<std::string>(pos.begin() + 1, pos.end()));
  cli::RunSettings run = cli::read_run_settings(cfg);
  ConfigNode data = cfg.node().child("data");
  for (const char* phase : {"train", "test"}) {
    ConfigNode section = data.optional_child(phase);
    if (!section.valid()) continue;
    SourceRequest req{section, std::string(phase) == "train" ? Phase::Train : Phase::Test, run.seed, 0, 1};
    std::unique_ptr<BatchSource> src = make_batch_source(req);
    const int64_t b = src->batch_size();
    const int64_t n = src->num_samples();
    const int64_t nb = batches > 0 ? batches : (n + b - 1) / b;
    // One epoch (the default) counts each sample once: the last batch is padded by wrapping around
    // to the first samples, which are not counted again. --batches N counts every sample read.
    const int64_t to_count = batches > 0 ? nb * b : n;
    const int64_t per_sample = src->sample_shape().count();
    std::vector<float> x(static_cast<size_t>(b * per_sample)), y(static_cast<size_t>(b));
    std::map<int64_t, int64_t> hist;
    double sum = 0, sumsq = 0;
    float lo = INFINITY, hi = -INFINITY;
    int64_t counted = 0;
    for (int64_t i = 0; i < nb; ++i) {
      src->next_batch(x.data(), y.data());
      for (int64_t j = 0; j < b && counted < to_count; ++j, ++counted) {
        ++hist[static_cast<int64_t>(y[static_cast<size_t>(j)])];
        for (int64_t k = j * per_sample; k < (j + 1) * per_sample; ++k) {
          const float v = x[static_cast<size_t>(k)];
          sum += v;
          sumsq += static_cast<double>(v) * v;
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
      }
    }
    const double cnt = static_cast<double>(counted) * static_cast<double>(per_sample);
    const double mean = sum / cnt;
    std::printf("%s: %lld samples of shape %s, %lld batches of %lld read, %lld samples counted; pixels min %.4g max "
                "%.4g mean %.4g std %.4g\n",
                phase, static_cast<long long>(n), src->sample_shape().str().c_str(), static_cast<long long>(nb),
                static_cast<long long>(b), static_cast<long long>(counted), lo, hi, mean,
                std::sqrt(std::max(0.0, sumsq / cnt - mean * mean)));
    std::printf("  labels:");
    for (auto& kv : hist) std::printf(" %lld:%lld", static_cast<long long>(kv.first), static_cast<long long>(kv.second));
    std::printf("\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cli::tune_openmp_waiting(argv);
  return cli::run_main("dropnet-datacheck", [&] { return check_main(argc, argv); });
}
