// CUDA SGEMM throughput: the hand-written tiled kernel next to cuBLAS (FP32, no TF32) at 4096^3
// and on the fully connected layers of AlexNet and VGG at batch 256 (forward: weights stored
// (N, K), so op(B) is transposed). Timed with CUDA events on the compute stream; the `flops`
// counter is a rate over that time. Without a GPU it prints a message and exits 0.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_cuda_util.cuh"
#include "bench/gemm_shapes.h"
#include "core/cuda_check.h"
#include "core/device.h"
#include "core/tensor.h"
#include "kernels/gemm.h"

namespace {

using namespace dropnet;

using bench::GemmShape;
using bench::random_values;

const GemmShape kShapes[] = {
    {"square4096", false, false, 4096, 4096, 4096},
    {"alexnet_fc6", false, true, 256, 4096, 9216},
    {"alexnet_fc7", false, true, 256, 4096, 4096},
    {"alexnet_fc8", false, true, 256, 1000, 4096},
    {"vgg_fc6", false, true, 256, 4096, 25088},
};

using CudaGemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                            int64_t, float, float*, int64_t, Stream);

void bm_gemm_cuda(benchmark::State& state, CudaGemmFn fn, GemmShape s) {
  const int64_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
  Tensor a(Shape{s.m * s.k}, Device::cuda(0)), b(Shape{s.k * s.n}, Device::cuda(0));
  a.from_host(random_values(s.m * s.k, 1));
  b.from_host(random_values(s.k * s.n, 2));
  Tensor c(Shape{s.m * s.n}, Device::cuda(0));
  const Stream stream = cuda_stream();
  auto run = [&] { fn(s.ta, s.tb, s.m, s.n, s.k, 1.f, a.data(), lda, b.data(), ldb, 0.f, c.data(), s.n, stream); };
  bench::time_cuda_ms(state, run);  // warm-up inside: cuBLAS handle, workspace pool, instruction cache
  state.counters["flops"] =
      benchmark::Counter(2.0 * s.m * s.n * s.k, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

int main(int argc, char** argv) {
  if (cuda_device_count() == 0) {
    std::printf("bench_gemm_cuda: no CUDA device present, nothing to measure\n");
    return 0;
  }
  for (const GemmShape& s : kShapes)
    for (auto [impl, fn] : {std::pair<const char*, CudaGemmFn>{"native", sgemm_cuda},
                            std::pair<const char*, CudaGemmFn>{"cublas", sgemm_cublas}}) {
      const std::string name = std::string("gemm_cuda/") + impl + "/" + s.name;
      benchmark::RegisterBenchmark(name.c_str(), bm_gemm_cuda, fn, s)->UseManualTime();
    }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
