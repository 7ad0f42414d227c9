// Bandwidth-bound CUDA kernels on large tensors: achieved GB/s next to the device's theoretical
// DRAM bandwidth (2 * memory clock * bus width; CUDA 13 dropped the cudaDeviceProp fields, so
// they come from cudaDeviceGetAttribute) and next to a device-to-device cudaMemcpy, the practical
// ceiling. Bytes count each tensor read or written once (the minimum traffic):
//   copy (reference)      read + write                          8 B / element
//   relu fwd / bwd        x -> y; x, dy -> dx                   8 / 12
//   dropout fwd / bwd     x -> y; dy -> dx (mask regenerated)   8 / 8
//   dropin fwd / bwd      skip, new -> y; dy -> d_skip, d_new   12 / 12  (gradual, regularize)
//   pool max fwd / bwd    x -> y, argmax; dy, argmax -> dx      AlexNet pool1 at batch 256
//   lrn fwd / bwd         x -> y, scale; x, y, scale, dy -> dx  AlexNet norm1 at batch 256
//   sgd update            w, g, v -> w, g, v                    24 / element (AlexNet's 61M)
// Timed with CUDA events on the compute stream. Without a GPU it prints a message and exits 0.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bench/bench_cuda_util.cuh"
#include "core/cuda_check.h"
#include "core/device.h"
#include "core/device_array.h"
#include "core/tensor.h"
#include "kernels/dropin.h"
#include "kernels/dropout.h"
#include "kernels/eltwise.h"
#include "kernels/lrn.h"
#include "kernels/pool.h"
#include "kernels/sgd.h"

namespace {

using namespace dropnet;
using dropnet::bench::device_random;
using dropnet::bench::time_cuda_ms;

double g_peak_gbs = 0;  // theoretical DRAM bandwidth, GB/s
std::map<std::string, double>& achieved() {
  static std::map<std::string, double> m;
  return m;
}

// Runs `op` under CUDA events; sets GB/s and % of peak from `bytes` per call.
void time_op(benchmark::State& state, const std::string& name, double bytes, const std::function<void()>& op) {
  const double mean_s = time_cuda_ms(state, op) * 1e-3;
  const double gbs = mean_s > 0 ? bytes / mean_s * 1e-9 : 0.0;
  state.counters["GB/s"] = gbs;
  state.counters["%peak"] = g_peak_gbs > 0 ? 100.0 * gbs / g_peak_gbs : 0.0;
  achieved()[name] = gbs;
}

constexpr int64_t kElems = int64_t(64) << 20;  // 64 Mi floats = 256 MiB per tensor

void register_all() {
  const auto reg = [](const std::string& name, std::function<void(benchmark::State&)> setup_and_run) {
    benchmark::RegisterBenchmark(("memory_cuda/" + name).c_str(),
                                 [setup_and_run](benchmark::State& st) { setup_and_run(st); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  };
  const int64_t n = kElems;

  reg("copy_d2d", [n](benchmark::State& st) {
    Tensor a = device_random(n, 1), b(Shape{n}, Device::cuda(0));
    time_op(st, "copy_d2d", 8.0 * n, [&] {
      DN_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), n * sizeof(float), cudaMemcpyDeviceToDevice, cuda_stream()));
    });
  });
  reg("relu_fwd", [n](benchmark::State& st) {
    Tensor x = device_random(n, 1), y(Shape{n}, Device::cuda(0));
    time_op(st, "relu_fwd", 8.0 * n, [&] { relu_forward_cuda(n, 0.f, x.data(), y.data(), cuda_stream()); });
  });
  reg("relu_bwd", [n](benchmark::State& st) {
    Tensor x = device_random(n, 1), dy = device_random(n, 2), dx(Shape{n}, Device::cuda(0));
    time_op(st, "relu_bwd", 12.0 * n,
            [&] { relu_backward_cuda(n, 0.f, x.data(), dy.data(), 0.f, dx.data(), cuda_stream()); });
  });
  reg("dropout_fwd", [n](benchmark::State& st) {
    Tensor x = device_random(n, 1), y(Shape{n}, Device::cuda(0));
    DropoutParams p;
    p.count = n;
    p.ratio = 0.5f;
    p.seed = 7;
    p.stream = 3;
    time_op(st, "dropout_fwd", 8.0 * n, [&] { dropout_forward_cuda(p, x.data(), y.data(), cuda_stream()); });
  });
  reg("dropout_bwd", [n](benchmark::State& st) {
    Tensor dy = device_random(n, 1), dx(Shape{n}, Device::cuda(0));
    DropoutParams p;
    p.count = n;
    p.ratio = 0.5f;
    p.seed = 7;
    p.stream = 3;
    time_op(st, "dropout_bwd", 8.0 * n, [&] { dropout_backward_cuda(p, dy.data(), 0.f, dx.data(), cuda_stream()); });
  });
  for (DropinMode mode : {DropinMode::Gradual, DropinMode::Regularize}) {
    const std::string m = mode == DropinMode::Gradual ? "gradual" : "regularize";
    DropinParams p;
    p.mode = mode;
    p.unit = DropinUnit::Element;
    p.n = 256;
    p.c = 256;
    p.hw = n / (256 * 256);
    p.p = 0.37f;
    p.sample = true;
    p.seed = 11;
    p.stream = 5;
    const int64_t count = p.n * p.c * p.hw;
    reg("dropin_fwd_" + m, [p, count, m](benchmark::State& st) {
      Tensor skip = device_random(count, 1), nw = device_random(count, 2), y(Shape{count}, Device::cuda(0));
      time_op(st, "dropin_fwd_" + m, 12.0 * count,
              [&] { dropin_forward_cuda(p, skip.data(), nw.data(), y.data(), cuda_stream()); });
    });
    reg("dropin_bwd_" + m, [p, count, m](benchmark::State& st) {
      Tensor dy = device_random(count, 1), ds(Shape{count}, Device::cuda(0)), dn(Shape{count}, Device::cuda(0));
      time_op(st, "dropin_bwd_" + m, 12.0 * count,
              [&] { dropin_backward_cuda(p, dy.data(), 0.f, ds.data(), 0.f, dn.data(), cuda_stream()); });
    });
  }
  {
    // AlexNet pool1 at batch 256: (256, 96, 55, 55) -> (256, 96, 27, 27), max 3/2.
    const PoolParams p = make_pool_params(PoolMethod::Max, 3, 3, 2, 2, 0, 0, 256, 96, 55, 55);
    const int64_t nx = p.n * p.c * p.h * p.w, ny = p.n * p.c * p.out_h * p.out_w;
    const double bytes = 4.0 * nx + 8.0 * ny;
    reg("pool_max_fwd_alexnet_pool1", [p, nx, ny, bytes](benchmark::State& st) {
      Tensor x = device_random(nx, 1), y(Shape{ny}, Device::cuda(0));
      DeviceArray<int32_t> am(ny, Device::cuda(0));
      time_op(st, "pool_max_fwd_alexnet_pool1", bytes,
              [&] { pool_forward_cuda(p, x.data(), y.data(), am.data(), cuda_stream()); });
    });
    reg("pool_max_bwd_alexnet_pool1", [p, nx, ny, bytes](benchmark::State& st) {
      Tensor x = device_random(nx, 1), y(Shape{ny}, Device::cuda(0)), dy = device_random(ny, 2);
      Tensor dx(Shape{nx}, Device::cuda(0));
      DeviceArray<int32_t> am(ny, Device::cuda(0));
      int32_t* amp = am.data();
      pool_forward_cuda(p, x.data(), y.data(), amp, cuda_stream());
      time_op(st, "pool_max_bwd_alexnet_pool1", bytes,
              [&] { pool_backward_cuda(p, dy.data(), amp, 0.f, dx.data(), cuda_stream()); });
    });
  }
  {
    // AlexNet norm1 at batch 256: (256, 96, 55, 55), across channels, local_size 5.
    const LrnParams p{true, 5, 1e-4f, 0.75f, 1.f, 256, 96, 55, 55};
    const int64_t c = p.n * p.c * p.h * p.w;
    reg("lrn_fwd_alexnet_norm1", [p, c](benchmark::State& st) {
      Tensor x = device_random(c, 1), y(Shape{c}, Device::cuda(0)), scale(Shape{c}, Device::cuda(0));
      time_op(st, "lrn_fwd_alexnet_norm1", 12.0 * c,
              [&] { lrn_forward_cuda(p, x.data(), y.data(), scale.data(), cuda_stream()); });
    });
    reg("lrn_bwd_alexnet_norm1", [p, c](benchmark::State& st) {
      Tensor x = device_random(c, 1), y(Shape{c}, Device::cuda(0)), scale(Shape{c}, Device::cuda(0));
      Tensor dy = device_random(c, 2), dx(Shape{c}, Device::cuda(0));
      lrn_forward_cuda(p, x.data(), y.data(), scale.data(), cuda_stream());
      time_op(st, "lrn_bwd_alexnet_norm1", 20.0 * c, [&] {
        lrn_backward_cuda(p, x.data(), y.data(), scale.data(), dy.data(), 0.f, dx.data(), cuda_stream());
      });
    });
  }
  {
    const int64_t np = 60965224;  // AlexNet's parameter count
    reg("sgd_update_alexnet_params", [np](benchmark::State& st) {
      Tensor w = device_random(np, 1), g = device_random(np, 2), v = device_random(np, 3);
      time_op(st, "sgd_update_alexnet_params", 24.0 * np, [&] {
        sgd_update_cuda(np, 1e-4f, 0.9f, 5e-4f, w.data(), g.data(), v.data(), cuda_stream());
      });
    });
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (cuda_device_count() == 0) {
    std::printf("bench_memory_cuda: no CUDA device present, nothing to measure\n");
    return 0;
  }
  int dev = 0, clock_khz = 0, bus_bits = 0;
  DN_CUDA_CHECK(cudaGetDevice(&dev));
  DN_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev));
  DN_CUDA_CHECK(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev));
  cudaDeviceProp prop{};
  DN_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  // Double data rate: two transfers per memory clock.
  g_peak_gbs = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) * 1e-9;
  std::printf("bench_memory_cuda: %s, memory clock %.0f MHz, bus %d bits: theoretical %.0f GB/s\n", prop.name,
              clock_khz / 1e3, bus_bits, g_peak_gbs);
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  const auto& a = achieved();
  const auto copy = a.find("copy_d2d");
  std::printf("\nmemory summary: theoretical %.0f GB/s", g_peak_gbs);
  if (copy != a.end()) std::printf(", device-to-device copy %.0f GB/s", copy->second);
  std::printf("\n");
  std::printf("%-30s %10s %8s %9s\n", "kernel", "GB/s", "%peak", "%copy");
  for (const auto& [name, gbs] : a)
    std::printf("%-30s %10.0f %7.1f%% %8.1f%%\n", name.c_str(), gbs, 100.0 * gbs / g_peak_gbs,
                copy != a.end() && copy->second > 0 ? 100.0 * gbs / copy->second : 0.0);
  return 0;
}
