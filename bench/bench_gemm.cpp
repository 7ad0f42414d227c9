// CPU SGEMM throughput: the native kernel next to OpenBLAS on the GEMMs of Caffe's LeNet
// (batch 64, im2col over the whole batch) and on squares, at 1 and 2 OpenMP threads.
// Cases are named gemm/<impl>/<shape>/threads:<t>; each reports a `flops` rate counter. Every
// case runs 5 repetitions (the `max` aggregate of the counter is the best repetition, of the
// times the worst), and a native/OpenBLAS table of the best repetitions is printed at the end:
// these machines are shared and noisy and load only ever slows a run down, so compare ratios of
// maxima from the same run, not lone numbers.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench/gemm_shapes.h"
#include "kernels/gemm.h"

namespace {

using namespace dropnet;

using bench::GemmShape;
using bench::random_values;

// op(A) (M, K), op(B) (K, N) as the layers call them.
const GemmShape kShapes[] = {
    {"conv1_fwd", false, false, 20, 36864, 25},  {"conv1_wgrad", false, true, 20, 25, 36864},
    {"conv2_fwd", false, false, 50, 4096, 500},  {"conv2_wgrad", false, true, 50, 500, 4096},
    {"conv2_dgrad", true, false, 500, 4096, 50}, {"fc1_fwd", false, true, 64, 500, 800},
    {"fc1_wgrad", true, false, 500, 800, 64},    {"fc1_dgrad", false, false, 64, 800, 500},
    {"fc2_fwd", false, true, 64, 10, 500},       {"square256", false, false, 256, 256, 256},
    {"square512", false, false, 512, 512, 512},  {"square1024", false, false, 1024, 1024, 1024},
};

using GemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                        int64_t, float, float*, int64_t);

void bm_gemm(benchmark::State& state, GemmFn fn, GemmShape s, int threads) {
  omp_set_num_threads(threads);
  const int64_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
  const std::vector<float> a = random_values(s.m * s.k, 1);
  const std::vector<float> b = random_values(s.k * s.n, 2);
  std::vector<float> c(s.m * s.n);
  // Let the other library's idle workers stop spinning (OpenBLAS's pthreads busy-wait for tens of
  // milliseconds after a call; libgomp's briefly) so they do not steal a core from this case.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (auto _ : state) {
    fn(s.ta, s.tb, s.m, s.n, s.k, 1.f, a.data(), lda, b.data(), ldb, 0.f, c.data(), s.n);
    benchmark::ClobberMemory();
  }
  state.counters["flops"] =
      benchmark::Counter(2.0 * s.m * s.n * s.k, benchmark::Counter::kIsIterationInvariantRate);
}

// Console output plus, at the end, GFLOP/s of both implementations and their ratio per case.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& reports) override {
    ConsoleReporter::ReportRuns(reports);
    for (const Run& r : reports) {
      if (r.error_occurred || r.run_type != Run::RT_Aggregate || r.aggregate_name != "max") continue;
      auto it = r.counters.find("flops");
      if (it == r.counters.end()) continue;
      // function_name is gemm/<impl>/<shape>/threads:<t>
      const std::string& name = r.run_name.function_name;
      const size_t p1 = name.find('/'), p2 = name.find('/', p1 + 1);
      const std::string impl = name.substr(p1 + 1, p2 - p1 - 1);
      const std::string key = name.substr(p2 + 1);
      if (order_.empty() || order_.back() != key) order_.push_back(key);
      gflops_[key][impl] = it->second.value * 1e-9;
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\nbest of the repetitions\n%-28s %12s %14s %8s\n", "case", "native GF/s", "OpenBLAS GF/s",
                "ratio");
    for (const std::string& key : order_) {
      auto& g = gflops_[key];
      if (!g.count("native") || !g.count("openblas")) continue;
      std::printf("%-28s %12.1f %14.1f %8.2f\n", key.c_str(), g["native"], g["openblas"],
                  g["native"] / g["openblas"]);
    }
  }

 private:
  std::vector<std::string> order_;
  std::map<std::string, std::map<std::string, double>> gflops_;
};

}  // namespace

int main(int argc, char** argv) {
  // Native and OpenBLAS of one case run back to back, so their ratio sees the same machine load.
  for (const GemmShape& s : kShapes)
    for (int threads : {1, 2})
      for (auto [impl, fn] : {std::pair<const char*, GemmFn>{"native", sgemm_native_cpu},
                              std::pair<const char*, GemmFn>{"openblas", sgemm_openblas}}) {
        const std::string name =
            std::string("gemm/") + impl + "/" + s.name + "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), bm_gemm, fn, s, threads)
            ->UseRealTime()
            ->MinTime(0.1)
            ->Repetitions(5)
            ->DisplayAggregatesOnly(true)
            ->ComputeStatistics("max", [](const std::vector<double>& v) {
              return *std::max_element(v.begin(), v.end());
            });
      }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
