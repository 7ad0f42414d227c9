// CUDA convolution throughput on the conv layers of AlexNet (batch 256) and VGG16 (batch 64):
// the native engine's two algorithms, native (implicit GEMM, conv_*_igemm_cuda: the default) and
// im2col (im2col + the hand-written SGEMM), cublas (im2col + cuBLAS) and cudnn, each through the
// production entry points.
//
// Per shape and engine three timings (CUDA events on the compute stream, one untimed warm-up that
// also runs cuDNN's algorithm search):
//   fwd         y = conv(x, w) + b
//   bwd_filter  dw += ..., db += ... (dx not needed: a first layer's backward)
//   bwd_all     dx, dw and db
// backward-data is derived as bwd_all - bwd_filter in the table printed at the end (the im2col
// backward computes dw and dx in one pass over each chunk, so there is no dx-only entry point).
// GFLOP/s counts 2 * N * out_c * out_h * out_w * (c / group) * kh * kw per direction.
//
// Own flags (before Google Benchmark's): --batch_alexnet=N (256), --batch_vgg=N (64),
// --nets=alexnet,alexnet13,vgg16 (alexnet13: the duplicated convs AlexNet-13 adds, conv1_2 ... conv5_2),
// --engines=native,im2col,cublas,cudnn, --precision=fp32|tf32|bf16 (every engine at that precision:
// native runs the tensor-core kernels at tf32 / bf16, cuBLAS and cuDNN their tensor-op math).
// Without a GPU it prints a message and exits 0.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_cuda_util.cuh"
#include "core/cuda_check.h"
#include "core/device.h"
#include "core/tensor.h"
#include "kernels/conv.h"
#include "kernels/conv_cudnn.h"

namespace {

using namespace dropnet;
using dropnet::bench::device_random;
using dropnet::bench::time_cuda_ms;

struct ConvShape {
  const char* net;
  const char* name;
  int64_t c, hw, out;
  int k, s, p, g;
};

const ConvShape kAlexnet[] = {
    {"alexnet", "conv1", 3, 227, 96, 11, 4, 0, 1},   {"alexnet", "conv2", 96, 27, 256, 5, 1, 2, 2},
    {"alexnet", "conv3", 256, 13, 384, 3, 1, 1, 1},  {"alexnet", "conv4", 384, 13, 384, 3, 1, 1, 2},
    {"alexnet", "conv5", 384, 13, 256, 3, 1, 1, 2},
};
// The second conv of each AlexNet-13 pair: same width, kernel and group, stride 1, size-preserving pad.
const ConvShape kAlexnet13[] = {
    {"alexnet13", "conv1_2", 96, 55, 96, 11, 1, 5, 1},   {"alexnet13", "conv2_2", 256, 27, 256, 5, 1, 2, 2},
    {"alexnet13", "conv3_2", 384, 13, 384, 3, 1, 1, 1},  {"alexnet13", "conv4_2", 384, 13, 384, 3, 1, 1, 2},
    {"alexnet13", "conv5_2", 256, 13, 256, 3, 1, 1, 2},
};
const ConvShape kVgg16[] = {
    {"vgg16", "conv1_1", 3, 224, 64, 3, 1, 1, 1},    {"vgg16", "conv1_2", 64, 224, 64, 3, 1, 1, 1},
    {"vgg16", "conv2_1", 64, 112, 128, 3, 1, 1, 1},  {"vgg16", "conv2_2", 128, 112, 128, 3, 1, 1, 1},
    {"vgg16", "conv3_1", 128, 56, 256, 3, 1, 1, 1},  {"vgg16", "conv3_2", 256, 56, 256, 3, 1, 1, 1},
    {"vgg16", "conv3_3", 256, 56, 256, 3, 1, 1, 1},  {"vgg16", "conv4_1", 256, 28, 512, 3, 1, 1, 1},
    {"vgg16", "conv4_2", 512, 28, 512, 3, 1, 1, 1},  {"vgg16", "conv4_3", 512, 28, 512, 3, 1, 1, 1},
    {"vgg16", "conv5_1", 512, 14, 512, 3, 1, 1, 1},  {"vgg16", "conv5_2", 512, 14, 512, 3, 1, 1, 1},
    {"vgg16", "conv5_3", 512, 14, 512, 3, 1, 1, 1},
};

Precision g_precision = Precision::FP32;

ConvParams params_of(const ConvShape& s, int64_t batch) {
  const int64_t o = conv_out_size(s.hw, s.k, s.s, s.p);
  ConvParams p{batch, s.c, s.hw, s.hw, s.out, o, o, s.k, s.k, s.s, s.s, s.p, s.p, s.g};
  p.prec = g_precision;
  return p;
}

double conv_flops(const ConvParams& p) {
  return 2.0 * static_cast<double>(p.n * p.out_c * p.out_h * p.out_w) * static_cast<double>(p.c / p.group) * p.kh *
         p.kw;
}

// The tensors of the shape being measured; benchmarks run in registration order (shape by shape),
// so only one shape's buffers are alive at a time.
struct Buffers {
  std::string key;
  Tensor x, w, b, y, dy, dx, dw, db;
  ConvScratch scratch;
};

Buffers& buffers_for(const std::string& key, const ConvParams& p) {
  static std::unique_ptr<Buffers> cur;
  if (cur && cur->key == key) return *cur;
  cur.reset();  // free the previous shape's memory first
  cur = std::make_unique<Buffers>();
  cur->key = key;
  const int64_t nx = p.n * p.c * p.h * p.w, ny = p.n * p.out_c * p.out_h * p.out_w;
  const int64_t nw = p.out_c * (p.c / p.group) * p.kh * p.kw;
  cur->x = device_random(nx, 1);
  cur->w = device_random(nw, 2);
  cur->b = device_random(p.out_c, 3);
  cur->dy = device_random(ny, 4);
  cur->y = Tensor(Shape{ny}, Device::cuda(0));
  cur->dx = Tensor(Shape{nx}, Device::cuda(0));
  cur->dw = Tensor(Shape{nw}, Device::cuda(0));
  cur->db = Tensor(Shape{p.out_c}, Device::cuda(0));
  cur->dw.zero();
  cur->db.zero();
  return *cur;
}

enum class Dir { Fwd, BwdFilter, BwdAll };
const char* dir_name(Dir d) { return d == Dir::Fwd ? "fwd" : d == Dir::BwdFilter ? "bwd_filter" : "bwd_all"; }

// Mean milliseconds per (net/layer, engine, direction), for the summary table.
std::map<std::string, double>& timings() {
  static std::map<std::string, double> t;
  return t;
}

void run_conv(Buffers& b, const ConvParams& p, const std::string& engine, Dir d, Stream s) {
  const bool cublas = engine == "cublas";
  float* dx = d == Dir::BwdAll ? b.dx.data() : nullptr;
#if DROPNET_HAVE_CUDNN
  if (engine == "cudnn") {
    if (d == Dir::Fwd) conv_forward_cudnn(p, b.x.data(), b.w.data(), b.b.data(), b.y.data(), s);
    else conv_backward_cudnn(p, b.x.data(), b.w.data(), b.dy.data(), b.dw.data(), b.db.data(), 0.f, dx, s);
    return;
  }
#endif
  if (engine == "native") {
    if (d == Dir::Fwd) conv_forward_igemm_cuda(p, b.x.data(), b.w.data(), b.b.data(), b.y.data(), s);
    else conv_backward_igemm_cuda(p, b.x.data(), b.w.data(), b.dy.data(), b.dw.data(), b.db.data(), 0.f, dx, s);
    return;
  }
  if (d == Dir::Fwd) conv_forward_cuda(p, b.x.data(), b.w.data(), b.b.data(), b.y.data(), b.scratch, cublas, s);
  else conv_backward_cuda(p, b.x.data(), b.w.data(), b.dy.data(), b.dw.data(), b.db.data(), 0.f, dx, b.scratch,
                          cublas, s);
}

void bm_conv(benchmark::State& state, ConvShape shape, int64_t batch, std::string engine, Dir d) {
  const ConvParams p = params_of(shape, batch);
  const std::string layer = std::string(shape.net) + "/" + shape.name;
  Buffers& b = buffers_for(layer + "/" + std::to_string(batch), p);
  const Stream s = cuda_stream();
  // Warm-up (inside time_cuda_ms): scratch allocation, cuDNN handle and algorithm search.
  const double mean_ms = time_cuda_ms(state, [&] { run_conv(b, p, engine, d, s); });
  const double flops = conv_flops(p) * (d == Dir::BwdAll ? 2.0 : 1.0);
  state.counters["GFLOP/s"] = mean_ms > 0 ? flops / (mean_ms * 1e-3) * 1e-9 : 0.0;
  state.counters["ms"] = mean_ms;
#if DROPNET_HAVE_CUDNN
  if (engine == "cudnn") state.SetLabel(conv_cudnn_describe(p));
#endif
  timings()[layer + "|" + engine + "|" + dir_name(d)] = mean_ms;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t a = 0;
  while (a <= s.size()) {
    size_t b = s.find(',', a);
    if (b == std::string::npos) b = s.size();
    if (b > a) out.push_back(s.substr(a, b - a));
    a = b + 1;
  }
  return out;
}

// Takes "--name=value" out of argv; returns def when absent.
std::string take_flag(int* argc, char** argv, const char* name, const std::string& def) {
  const std::string prefix = std::string("--") + name + "=";
  for (int i = 1; i < *argc; ++i) {
    if (std::strncmp(argv[i], prefix.c_str(), prefix.size()) != 0) continue;
    std::string v = argv[i] + prefix.size();
    for (int j = i; j + 1 < *argc; ++j) argv[j] = argv[j + 1];
    --*argc;
    return v;
  }
  return def;
}

void print_summary(const std::vector<std::pair<ConvShape, int64_t>>& shapes, const std::vector<std::string>& engines) {
  auto& t = timings();
  std::printf("\nconv summary (mean ms per call; GFLOP/s in brackets; bwd_data = bwd_all - bwd_filter)\n");
  std::printf("%-18s %-7s %22s %22s %22s\n", "layer", "engine", "fwd", "bwd_data", "bwd_filter");
  std::map<std::string, double> total;
  for (const auto& [shape, batch] : shapes) {
    const std::string layer = std::string(shape.net) + "/" + shape.name;
    const double f = conv_flops(params_of(shape, batch));
    for (const std::string& e : engines) {
      const auto get = [&](const char* d) {
        auto it = t.find(layer + "|" + e + "|" + d);
        return it == t.end() ? -1.0 : it->second;
      };
      const double fwd = get("fwd"), bf = get("bwd_filter"), ba = get("bwd_all");
      if (fwd < 0 && bf < 0 && ba < 0) continue;
      const double bd = ba >= 0 && bf >= 0 ? ba - bf : -1.0;
      const auto cell = [&](double ms) {
        if (ms <= 0) return std::string("-");
        char buf[64];
        std::snprintf(buf, sizeof buf, "%8.3f [%7.0f]", ms, f / (ms * 1e-3) * 1e-9);
        return std::string(buf);
      };
      std::printf("%-18s %-7s %22s %22s %22s\n", layer.c_str(), e.c_str(), cell(fwd).c_str(), cell(bd).c_str(),
                  cell(bf).c_str());
      if (fwd > 0 && ba > 0) total[std::string(shape.net) + "|" + e] += fwd + ba;
    }
  }
  std::printf("\nper net, fwd + bwd_all summed over its conv layers (ratio to cudnn; < 1 is faster than cuDNN):\n");
  for (const auto& [k, ms] : total) {
    const std::string net = k.substr(0, k.find('|')), e = k.substr(k.find('|') + 1);
    auto ref = total.find(net + "|cudnn");
    if (ref != total.end() && ref->second > 0)
      std::printf("  %-8s %-7s %9.2f ms  x%.2f\n", net.c_str(), e.c_str(), ms, ms / ref->second);
    else
      std::printf("  %-8s %-7s %9.2f ms\n", net.c_str(), e.c_str(), ms);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t batch_alexnet = std::stoll(take_flag(&argc, argv, "batch_alexnet", "256"));
  const int64_t batch_vgg = std::stoll(take_flag(&argc, argv, "batch_vgg", "64"));
  const std::vector<std::string> nets = split(take_flag(&argc, argv, "nets", "alexnet,vgg16"));
  std::vector<std::string> engines = split(take_flag(&argc, argv, "engines", "native,im2col,cublas,cudnn"));
  const std::string precision = take_flag(&argc, argv, "precision", "fp32");
  if (!parse_precision(precision, &g_precision)) {
    std::fprintf(stderr, "bench_conv_cuda: unknown precision '%s' (fp32, tf32, bf16)\n", precision.c_str());
    return 2;
  }
  if (cuda_device_count() == 0) {
    std::printf("bench_conv_cuda: no CUDA device present, nothing to measure\n");
    return 0;
  }
  if (!cudnn_compiled()) {
    std::vector<std::string> kept;
    for (const std::string& e : engines)
      if (e != "cudnn") kept.push_back(e);
    if (kept.size() != engines.size()) std::printf("bench_conv_cuda: built without cuDNN, engine cudnn skipped\n");
    engines = kept;
  }
  for (const std::string& e : engines)
    if (e != "native" && e != "im2col" && e != "cublas" && e != "cudnn") {
      std::fprintf(stderr, "bench_conv_cuda: unknown engine '%s' (native, im2col, cublas, cudnn)\n", e.c_str());
      return 2;
    }
  cudaDeviceProp prop{};
  DN_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("bench_conv_cuda: %s, %d SMs%s, precision %s\n", prop.name, prop.multiProcessorCount,
              cudnn_compiled() ? "" : " (no cuDNN)", precision.c_str());
#if DROPNET_HAVE_CUDNN
  std::printf("cuDNN %s, %s, exhaustive algorithm search, deterministic algorithms only\n",
              cudnn_version_string().c_str(),
              g_precision == Precision::FP32 ? "FMA math (no TF32)" : "tensor-op math");
#endif

  std::vector<std::pair<ConvShape, int64_t>> shapes;
  for (const std::string& n : nets) {
    if (n == "alexnet") {
      for (const ConvShape& s : kAlexnet) shapes.push_back({s, batch_alexnet});
    } else if (n == "alexnet13") {
      for (const ConvShape& s : kAlexnet13) shapes.push_back({s, batch_alexnet});
    } else if (n == "vgg16") {
      for (const ConvShape& s : kVgg16) shapes.push_back({s, batch_vgg});
    } else {
      std::fprintf(stderr, "bench_conv_cuda: unknown net '%s' (alexnet, alexnet13, vgg16)\n", n.c_str());
      return 2;
    }
  }
  for (const auto& [shape, batch] : shapes)
    for (const std::string& e : engines)
      for (Dir d : {Dir::Fwd, Dir::BwdFilter, Dir::BwdAll}) {
        const std::string name = std::string("conv_cuda/") + shape.net + "/" + shape.name + "/b" +
                                 std::to_string(batch) + "/" + e + "/" + dir_name(d);
        benchmark::RegisterBenchmark(name.c_str(), bm_conv, shape, batch, e, d)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  print_summary(shapes, engines);
  return 0;
}
