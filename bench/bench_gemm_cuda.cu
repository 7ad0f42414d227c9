// CUDA SGEMM throughput: the hand-written kernels next to cuBLAS at 4096^3 and on the fully
// connected layers of AlexNet and VGG at batch 256 (forward: weights stored (N, K), so op(B) is
// transposed), at each precision: fp32 (the SIMT kernel; cuBLAS without TF32), tf32 and bf16 (the
// tensor-core kernel, kernels/gemm_mma.h; cuBLAS with the FAST_TF32 / FAST_16BF compute types). Timed with CUDA events on the compute stream; the `flops`
// counter is a rate over that time. Without a GPU it prints a message and exits 0.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <string>
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

void bm_gemm_cuda(benchmark::State& state, bool cublas, Precision prec, GemmShape s) {
  const int64_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
  Tensor a(Shape{s.m * s.k}, Device::cuda(0)), b(Shape{s.k * s.n}, Device::cuda(0));
  a.from_host(random_values(s.m * s.k, 1));
  b.from_host(random_values(s.k * s.n, 2));
  Tensor c(Shape{s.m * s.n}, Device::cuda(0));
  const Stream stream = cuda_stream();
  auto run = [&] {
    (cublas ? sgemm_cublas_prec : sgemm_cuda_prec)(s.ta, s.tb, s.m, s.n, s.k, 1.f, a.data(), lda, b.data(), ldb, 0.f,
                                                   c.data(), s.n, prec, stream);
  };
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
  for (Precision prec : {Precision::FP32, Precision::TF32, Precision::BF16})
    for (const GemmShape& s : kShapes)
      for (bool cublas : {false, true}) {
        const std::string name =
            std::string("gemm_cuda/") + (cublas ? "cublas" : "native") + "/" + precision_name(prec) + "/" + s.name;
        benchmark::RegisterBenchmark(name.c_str(), bm_gemm_cuda, cublas, prec, s)->UseManualTime();
      }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
