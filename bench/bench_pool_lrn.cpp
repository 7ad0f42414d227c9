// CPU pooling and LRN kernels on the shapes of the paper's nets (LeNet, cifar10_full, AlexNet),
// forward and backward, with the memory traffic as a GB/s counter (every tensor read or written
// once; these kernels are bandwidth-bound).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/rng.h"
#include "kernels/lrn.h"
#include "kernels/pool.h"

namespace dropnet {
namespace {

std::vector<float> random_floats(int64_t n, uint64_t seed) {
  HostRng rng(seed, 3);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.uniform(-1.f, 1.f);
  return v;
}

void set_counters(benchmark::State& state, double bytes_per_iter) {
  state.SetBytesProcessed(static_cast<int64_t>(bytes_per_iter) * state.iterations());
  // Printed as "GB=<value>/s".
  state.counters["GB"] =
      benchmark::Counter(bytes_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

struct PoolShape {
  const char* net;
  PoolMethod method;
  int kernel, stride, pad;
  int64_t n, c, h, w;
};

void register_pool(const PoolShape& s) {
  const PoolParams p =
      make_pool_params(s.method, s.kernel, s.kernel, s.stride, s.stride, s.pad, s.pad, s.n, s.c, s.h, s.w);
  const std::string tag = std::string(s.net) + "/" + (s.method == PoolMethod::Max ? "max" : "ave") +
                          std::to_string(s.kernel) + "s" + std::to_string(s.stride) + "/" +
                          std::to_string(s.n) + "x" + std::to_string(s.c) + "x" +
                          std::to_string(s.h) + "x" + std::to_string(s.w);
  const int64_t nx = p.n * p.c * p.h * p.w, ny = p.n * p.c * p.out_h * p.out_w;
  const bool is_max = p.method == PoolMethod::Max;
  benchmark::RegisterBenchmark(("pool_forward/" + tag).c_str(), [=](benchmark::State& state) {
    const auto x = random_floats(nx, 1);
    std::vector<float> y(static_cast<size_t>(ny));
    std::vector<int32_t> am(static_cast<size_t>(ny));
    for (auto _ : state) {
      pool_forward_cpu(p, x.data(), y.data(), is_max ? am.data() : nullptr);
      benchmark::DoNotOptimize(y.data());
    }
    set_counters(state, 4.0 * (nx + ny + (is_max ? ny : 0)));
  })->UseRealTime()->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(("pool_backward/" + tag).c_str(), [=](benchmark::State& state) {
    const auto x = random_floats(nx, 1);
    const auto dy = random_floats(ny, 2);
    std::vector<float> y(static_cast<size_t>(ny)), dx(static_cast<size_t>(nx));
    std::vector<int32_t> am(static_cast<size_t>(ny));
    pool_forward_cpu(p, x.data(), y.data(), am.data());
    for (auto _ : state) {
      pool_backward_cpu(p, dy.data(), is_max ? am.data() : nullptr, 0.f, dx.data());
      benchmark::DoNotOptimize(dx.data());
    }
    set_counters(state, 4.0 * (nx + ny + (is_max ? ny : 0)));
  })->UseRealTime()->Unit(benchmark::kMicrosecond);
}

struct LrnShape {
  const char* net;
  bool across;
  int size;
  float alpha;
  int64_t n, c, h, w;
};

void register_lrn(const LrnShape& s) {
  const LrnParams p{s.across, s.size, s.alpha, 0.75f, 1.f, s.n, s.c, s.h, s.w};
  const std::string tag = std::string(s.net) + "/" + (s.across ? "across" : "within") +
                          std::to_string(s.size) + "/" + std::to_string(s.n) + "x" +
                          std::to_string(s.c) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w);
  const int64_t nx = p.n * p.c * p.h * p.w;
  benchmark::RegisterBenchmark(("lrn_forward/" + tag).c_str(), [=](benchmark::State& state) {
    const auto x = random_floats(nx, 1);
    std::vector<float> y(static_cast<size_t>(nx)), scale(static_cast<size_t>(nx));
    for (auto _ : state) {
      lrn_forward_cpu(p, x.data(), y.data(), scale.data());
      benchmark::DoNotOptimize(y.data());
    }
    set_counters(state, 4.0 * 3 * nx);  // x in; y, scale out
  })->UseRealTime()->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(("lrn_backward/" + tag).c_str(), [=](benchmark::State& state) {
    const auto x = random_floats(nx, 1);
    const auto dy = random_floats(nx, 2);
    std::vector<float> y(static_cast<size_t>(nx)), scale(static_cast<size_t>(nx)),
        dx(static_cast<size_t>(nx));
    lrn_forward_cpu(p, x.data(), y.data(), scale.data());
    for (auto _ : state) {
      lrn_backward_cpu(p, x.data(), y.data(), scale.data(), dy.data(), 0.f, dx.data());
      benchmark::DoNotOptimize(dx.data());
    }
    set_counters(state, 4.0 * 5 * nx);  // x, y, scale, dy in; dx out
  })->UseRealTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace
}  // namespace dropnet

int main(int argc, char** argv) {
  using dropnet::PoolMethod;
  // LeNet (batch 64), cifar10_full (batch 100), AlexNet (batch 16 of 256, to stay in memory).
  const dropnet::PoolShape pools[] = {
      {"lenet_pool1", PoolMethod::Max, 2, 2, 0, 64, 20, 24, 24},
      {"lenet_pool2", PoolMethod::Max, 2, 2, 0, 64, 50, 8, 8},
      {"cifar_pool1", PoolMethod::Max, 3, 2, 0, 100, 32, 32, 32},
      {"cifar_pool2", PoolMethod::Ave, 3, 2, 0, 100, 32, 16, 16},
      {"cifar_pool3", PoolMethod::Ave, 3, 2, 0, 100, 64, 8, 8},
      {"alexnet_pool1", PoolMethod::Max, 3, 2, 0, 16, 96, 55, 55},
      {"alexnet_pool5", PoolMethod::Max, 3, 2, 0, 16, 256, 13, 13},
  };
  const dropnet::LrnShape lrns[] = {
      {"cifar_norm1", false, 3, 5e-5f, 100, 32, 16, 16},
      {"cifar_norm2", false, 3, 5e-5f, 100, 32, 8, 8},
      {"alexnet_norm1", true, 5, 1e-4f, 16, 96, 55, 55},
      {"alexnet_norm2", true, 5, 1e-4f, 16, 256, 27, 27},
  };
  for (const auto& s : pools) dropnet::register_pool(s);
  for (const auto& s : lrns) dropnet::register_lrn(s);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
