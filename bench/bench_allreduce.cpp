// All-reduce on this machine and how much of it backward hides (DESIGN.md §7).
//   mpirun -np 2 [--oversubscribe --allow-run-as-root] -x OMP_NUM_THREADS=1 bench_allreduce
// 1. allreduce/{mpi,comm}/BYTES: bus bandwidth of a float sum over the ranks, 1 KB .. 64 MB, with
//    MPI_Allreduce itself (mpi) and through MpiComm (comm: its communication thread, the
//    nonblocking collective and the polling that bounds every wait). busbw = bytes / time *
//    2 (W - 1) / W, the nccl-tests convention: what each link carries in a ring all-reduce.
// 2. lenet/interleaved: Caffe's LeNet (batch 64 per rank, synthetic data): backward alone, the
//    all-reduce of its whole gradient arena, and a full training iteration with the gradients
//    reduced in one bucket after backward (no overlap) or in buckets started during backward
//    (overlap). The share of the all-reduce hidden under backward is measured on the reducer's
//    clocks as the communication still outstanding after the LAST rank entered finish():
//      hidden = 1 - exposed_overlap / exposed_no_overlap
//    which leaves out the ranks' skew (on a loaded 2-core machine it dwarfs a 1.6 MB all-reduce,
//    and with it the difference of whole iteration times, also printed).
// Every rank runs the same fixed iteration counts (a collective per iteration must match); times
// are averaged over ranks; rank 0 alone prints.
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/sources.h"
#include "dist/communicator.h"
#include "optim/solver.h"

#if DROPNET_HAVE_MPI
#include <mpi.h>
#endif

namespace dropnet {
namespace {

using Clock = std::chrono::steady_clock;
dist::Communicator* g_comm = nullptr;
std::map<std::string, double> g_seconds;  // mean seconds per iteration, by benchmark name

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The mean over ranks of this rank's `t` (one tiny all-reduce, outside the timed region).
double mean_over_ranks(double t) {
  g_comm->allreduce_sum_double(&t, 1);
  return t / g_comm->world();
}

void set_bandwidth(benchmark::State& state, double bytes) {
  const int w = g_comm->world();
  state.counters["algbw_GBps"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["busbw_GBps"] =
      benchmark::Counter(bytes * 1e-9 * 2.0 * (w - 1) / w, benchmark::Counter::kIsIterationInvariantRate);
}

int64_t iterations_for(int64_t bytes) { return std::clamp<int64_t>((int64_t{256} << 20) / bytes, 10, 500); }

void register_allreduce(int64_t bytes) {
  const int64_t n = bytes / 4;
  const std::string size = bytes >= (1 << 20) ? fmt::format("{}MB", bytes >> 20) : fmt::format("{}KB", bytes >> 10);
#if DROPNET_HAVE_MPI
  if (g_comm->kind() == "mpi") {
    benchmark::RegisterBenchmark(("allreduce/mpi/" + size).c_str(), [=](benchmark::State& state) {
      std::vector<float> v(static_cast<size_t>(n), 1.f);
      for (auto _ : state) {
        MPI_Barrier(MPI_COMM_WORLD);
        auto t0 = Clock::now();
        MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double t = seconds_since(t0), sum = 0;
        MPI_Allreduce(&t, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        state.SetIterationTime(sum / g_comm->world());
      }
      set_bandwidth(state, static_cast<double>(bytes));
    })->Iterations(iterations_for(bytes))->UseManualTime()->Unit(benchmark::kMicrosecond);
  }
#endif
  benchmark::RegisterBenchmark(("allreduce/comm/" + size).c_str(), [=](benchmark::State& state) {
    std::vector<float> v(static_cast<size_t>(n), 1.f);
    for (auto _ : state) {
      g_comm->barrier();
      auto t0 = Clock::now();
      g_comm->allreduce_sum(v.data(), n, Device::cpu());
      state.SetIterationTime(mean_over_ranks(seconds_since(t0)));
    }
    set_bandwidth(state, static_cast<double>(bytes));
  })->Iterations(iterations_for(bytes))->UseManualTime()->Unit(benchmark::kMicrosecond);
}

// Caffe's LeNet (examples/mnist/lenet_train_test.prototxt) on synthetic 28x28 digits.
std::string lenet_config(double bucket_mb) {
  return fmt::format(R"(name: lenet
seed: 1
data:
  train: {{source: synthetic, shape: [1, 28, 28], num_classes: 10, num_samples: 4096, batch_size: 64, scale: 0.00390625, prefetch: 0}}
solver: {{base_lr: 0.01, momentum: 0.9, weight_decay: 0.0005, max_iter: 100000, display: 0, bucket_mb: {}}}
layers:
  - {{name: data, type: data, top: [data, label]}}
  - {{name: conv1, type: conv, bottom: data, top: conv1, num_output: 20, kernel: 5, lr_mult: [1, 2], weight_filler: {{type: xavier}}}}
  - {{name: pool1, type: pool, bottom: conv1, top: pool1, method: max, kernel: 2, stride: 2}}
  - {{name: conv2, type: conv, bottom: pool1, top: conv2, num_output: 50, kernel: 5, lr_mult: [1, 2], weight_filler: {{type: xavier}}}}
  - {{name: pool2, type: pool, bottom: conv2, top: pool2, method: max, kernel: 2, stride: 2}}
  - {{name: ip1, type: fc, bottom: pool2, top: ip1, num_output: 500, lr_mult: [1, 2], weight_filler: {{type: xavier}}}}
  - {{name: relu1, type: relu, bottom: ip1, top: relu1}}
  - {{name: ip2, type: fc, bottom: relu1, top: ip2, num_output: 10, lr_mult: [1, 2], weight_filler: {{type: xavier}}}}
  - {{name: loss, type: softmax_loss, bottom: [ip2, label], top: loss}}
)",
                     bucket_mb);
}

std::unique_ptr<Solver> make_lenet(double bucket_mb, GradientReducer* reducer) {
  LoadedConfig cfg = load_config_text(lenet_config(bucket_mb), "lenet.yaml");
  SolverOptions so;
  so.net.source_factory = make_batch_source;
  so.reducer = reducer;
  so.quiet = true;
  return std::make_unique<Solver>(cfg, so);
}

constexpr int kLenetIters = 60, kWarmup = 5;
// bucket_mb of the overlapped run: ip1's 1.6 MB gradient is ready after the first layers of
// backward and is reduced while conv2 and conv1 still run; the conv layers form the last bucket.
constexpr double kOverlapBucketMb = 0.5;

// The communication left after the last rank reached finish(): end - max over ranks of the start
// (one clock for all the processes of this machine), so that rank skew does not count.
double exposed_after_last_arrival(const dist::ReductionStats& st) {
  std::vector<double> begin(static_cast<size_t>(g_comm->world()), 0.0);
  begin[static_cast<size_t>(g_comm->rank())] = st.finish_begin;
  g_comm->allreduce_sum_double(begin.data(), g_comm->world());
  return std::max(0.0, st.finish_end - *std::max_element(begin.begin(), begin.end()));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// The four LeNet measurements interleaved iteration by iteration, so that the load of this shared
// machine drifts over all of them alike; medians over the iterations. No prefetching threads: a
// solver's prefetcher loading its next batch would slow whichever measurement runs next.
void register_lenet() {
  benchmark::RegisterBenchmark("lenet/interleaved", [](benchmark::State& state) {
    auto plain = make_lenet(25, nullptr);
    auto no_overlap = make_lenet(1e6, g_comm);  // one bucket larger than the arena: reduced in finish()
    auto overlap = make_lenet(kOverlapBucketMb, g_comm);
    no_overlap->step(kWarmup);
    overlap->step(kWarmup);
    Net& net = plain->train_net();
    Tensor& arena = plain->train_net().param_grads();
    std::map<std::string, std::vector<double>> t;
    int64_t it = 0, buckets = 0;
    for (auto _ : state) {
      RunContext ctx{Phase::Train, it, 1, static_cast<uint32_t>(it)};
      ++it;
      net.forward(ctx);
      g_comm->barrier();
      auto t0 = Clock::now();
      net.backward(ctx);
      t["backward"].push_back(mean_over_ranks(seconds_since(t0)));

      g_comm->barrier();
      t0 = Clock::now();
      g_comm->allreduce_sum(arena.data(), arena.count(), Device::cpu());
      t["allreduce"].push_back(mean_over_ranks(seconds_since(t0)));

      // Alternating order: neither variant always runs right after the other.
      for (bool ov : {it % 2 == 0, it % 2 != 0}) {
        Solver& s = ov ? *overlap : *no_overlap;
        const std::string key = ov ? "overlap" : "no_overlap";
        g_comm->barrier();
        t0 = Clock::now();
        s.step(1);
        t[key].push_back(mean_over_ranks(seconds_since(t0)));
        t["wait_" + key].push_back(mean_over_ranks(g_comm->last_reduction().wait_seconds));
        t["exposed_" + key].push_back(mean_over_ranks(exposed_after_last_arrival(g_comm->last_reduction())));
        if (ov) buckets = g_comm->last_reduction().buckets;
      }
      state.SetIterationTime(t["overlap"].back());
    }
    for (auto& kv : t) g_seconds[kv.first] = median(kv.second);
    for (const char* k : {"backward", "allreduce", "no_overlap", "overlap", "exposed_no_overlap", "exposed_overlap"})
      state.counters[std::string(k) + "_us"] = g_seconds[k] * 1e6;
    state.counters["buckets"] = static_cast<double>(buckets);
    state.counters["arena_MB"] = static_cast<double>(arena.count()) * 4 / (1 << 20);
  })->Iterations(kLenetIters)->UseManualTime()->Unit(benchmark::kMicrosecond);
}

class SilentReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace
}  // namespace dropnet

int main(int argc, char** argv) {
  using namespace dropnet;
  std::unique_ptr<dist::Communicator> comm = dist::make_communicator(Device::cpu(), dist::CommOptions{60.0});
  g_comm = comm.get();
  spdlog::set_level(spdlog::level::warn);  // the data sources' announcements
  const bool root = comm->rank() == 0;
  if (root)
    std::printf("bench_allreduce: %d rank%s (%s)%s\n", comm->world(), comm->world() > 1 ? "s" : "",
                comm->kind().c_str(),
                comm->world() > 1 ? "" : " - run it under mpirun -np 2 for a bandwidth: one rank moves nothing");
  benchmark::Initialize(&argc, argv);
  for (int64_t bytes = 1024; bytes <= (int64_t{64} << 20); bytes *= 4) register_allreduce(bytes);
  register_lenet();
  if (root) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    SilentReporter silent;
    benchmark::RunSpecifiedBenchmarks(&silent);
  }
  if (root && g_seconds.count("overlap")) {
    const double bw = g_seconds["backward"], ar = g_seconds["allreduce"];
    const double no = g_seconds["no_overlap"], ov = g_seconds["overlap"];
    const double wn = g_seconds["wait_no_overlap"], wo = g_seconds["wait_overlap"];
    const double en = g_seconds["exposed_no_overlap"], eo = g_seconds["exposed_overlap"];
    std::printf("\nLeNet, batch 64 per rank, %d rank%s, medians over %d interleaved iterations (mean over ranks):\n",
                comm->world(), comm->world() > 1 ? "s" : "", kLenetIters);
    std::printf("  backward %.0f us; all-reduce of the %.2f MB gradient arena %.0f us (%.0f%% of backward)\n", bw * 1e6,
                static_cast<double>(g_comm->last_reduction().bytes) / (1 << 20), ar * 1e6, 100 * ar / bw);
    std::printf("  iteration (rank skew and machine load included): no overlap %.0f us, overlap (bucket_mb %.1f) %.0f us"
                " (%+.0f us)\n",
                no * 1e6, kOverlapBucketMb, ov * 1e6, (ov - no) * 1e6);
    std::printf("  finish() waited (rank skew included): %.0f us without overlap, %.0f us with\n", wn * 1e6, wo * 1e6);
    std::printf("  communication exposed after the last rank finished backward: %.0f us without overlap, %.0f us with\n"
                "  -> %.0f%% of the all-reduce hidden under backward\n",
                en * 1e6, eo * 1e6, en > 0 ? 100 * (1 - eo / en) : 0.0);
  }
  benchmark::Shutdown();
  return 0;
}
