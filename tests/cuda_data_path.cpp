// The GPU data path without host stalls (issue 14 item 3): batches are uploaded on the copy
// stream, and a steady-state training iteration on a CUDA net waits for nothing — its loss, the
// non-finite checks and the label check stay on the device until a display, test or snapshot
// point (or the end of Solver::step) reads them back. These tests check that the upload leaves
// the compute stream, that no host synchronization happens between display iterations, that the
// records are those of a run read back every iteration, and that a NaN injected mid-run and an
// out-of-range label stop the run with the CPU's message, at the CPU's iteration, with the weights
// the CPU leaves.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/device.h"
#include "core/device_array.h"
#include "core/error.h"
#include "core/tensor.h"
#include "kernels/conv_cudnn.h"
#include "kernels/sgd.h"
#include "kernels/step_check.h"
#include "optim/solver.h"
#include "tests/testing/harness.h"
#include "tests/testing/solvers.h"

namespace dropnet {
namespace {

// display, the classes of the data and the conv engine are the knobs; the net has 4 outputs.
std::string net_yaml(int display, int data_classes = 4, const std::string& engine = "native") {
  return fmt::format(R"(name: datapath
seed: 3
data:
  train: {{source: synthetic, shape: [1, 8, 8], num_classes: {}, num_samples: 64, batch_size: 8}}
solver: {{base_lr: 0.05, momentum: 0.9, max_iter: 1000, display: {}, average_loss: 3}}
layers:
  - {{name: data, type: data, top: [data, label]}}
  - {{name: conv1, type: conv, bottom: data, top: conv1, num_output: 4, kernel: 3, weight_filler: {{type: xavier}},
      engine: {}}}
  - {{name: relu1, type: relu, bottom: conv1, top: relu1}}
  - {{name: pool1, type: pool, bottom: relu1, top: pool1, method: max, kernel: 2, stride: 2}}
  - {{name: drop1, type: dropout, bottom: pool1, top: drop1, ratio: 0.2}}
  - {{name: fc1, type: fc, bottom: drop1, top: fc1, num_output: 4, weight_filler: {{type: xavier}}}}
  - {{name: acc, type: accuracy, bottom: [fc1, label], top: acc}}
  - {{name: loss, type: softmax_loss, bottom: [fc1, label], top: loss}}
)",
                     data_classes, display, engine);
}

std::unique_ptr<Solver> make(const std::string& yaml, Device dev) {
  return testing::quiet_solver(yaml, "datapath.yaml", 1, dev);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(CudaDataPath, BatchesAreUploadedOnTheCopyStreamAndArriveIntact) {
  DN_REQUIRE_CUDA();
  cuda_set_device(0);
  EXPECT_NE(cuda_copy_stream(), cuda_stream()) << "the upload stream is the compute stream";
  const auto gpu = make(net_yaml(0), Device::cuda());
  const auto cpu = make(net_yaml(0), Device::cpu());
  const uint64_t before = cuda_copy_stream_uploads();
  for (int i = 0; i < 5; ++i) {  // each batch compared as it reached the net (double buffering alternates)
    gpu->step(1);
    cpu->step(1);
    for (const char* blob : {"data", "label"})
      EXPECT_TRUE(same_bits(gpu->train_net().blob(blob)->value.to_host(), cpu->train_net().blob(blob)->value.to_host()))
          << blob << " of iteration " << i;
  }
  EXPECT_EQ(cuda_copy_stream_uploads() - before, 10u) << "data and label, 5 iterations, all on the copy stream";
}

// The host syncs of each iteration, seen from should_stop (called at the start of every one).
std::vector<uint64_t> syncs_per_iteration(Solver& s, int iterations) {
  std::vector<uint64_t> at_start;
  s.should_stop = [&] {
    at_start.push_back(cuda_host_syncs());
    return false;
  };
  s.step(iterations);
  at_start.push_back(cuda_host_syncs());
  s.should_stop = nullptr;
  std::vector<uint64_t> per;
  for (size_t i = 0; i + 1 < at_start.size(); ++i) per.push_back(at_start[i + 1] - at_start[i]);
  return per;
}

class CudaDataPathEngines : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaDataPathEngines, NoHostSynchronizationBetweenDisplayIterations) {
  DN_REQUIRE_CUDA();
  constexpr int display = 4, iters = 13;
  const auto s = make(net_yaml(display, 4, GetParam()), Device::cuda());
  const std::vector<uint64_t> per = syncs_per_iteration(*s, iters);
  ASSERT_EQ(per.size(), static_cast<size_t>(iters));
  for (int i = 0; i < iters - 1; ++i) {  // the last one also holds step()'s final read-back
    if (i % display == 0)
      EXPECT_GT(per[i], 0u) << "display iteration " << i << " reads the losses back (else the counter counts nothing)";
    else
      EXPECT_EQ(per[i], 0u) << "host synchronizations in iteration " << i;
  }
  EXPECT_GT(per[iters - 1], 0u) << "step() reads back before it returns";
  // The CPU path is unchanged and never touches the counter.
  const auto cpu = make(net_yaml(display), Device::cpu());
  for (uint64_t n : syncs_per_iteration(*cpu, 5)) EXPECT_EQ(n, 0u);
}

std::vector<std::string> engines() {
  std::vector<std::string> e = {"native", "cublas"};
  if (cudnn_compiled()) e.push_back("cudnn");
  return e;
}

INSTANTIATE_TEST_SUITE_P(ConvEngines, CudaDataPathEngines, ::testing::ValuesIn(engines()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// The displayed records and the loss window of a run read back only at display iterations are
// those of a run read back after every iteration (step(1) at a time, as every iteration was before).
TEST(CudaDataPath, DeferredReadBackGivesTheSameRecords) {
  DN_REQUIRE_CUDA();
  auto run = [](bool one_at_a_time) {
    // iter_size 2: two loss values per record.
    std::string yaml = net_yaml(3);
    yaml.replace(yaml.find("average_loss: 3"), 15, "average_loss: 3, iter_size: 2");
    const auto s = make(yaml, Device::cuda());
    std::vector<std::pair<int64_t, std::vector<std::pair<std::string, double>>>> records;
    std::vector<std::vector<float>> windows;
    s->on_record = [&](const TrainRecord& r) {
      std::vector<std::pair<std::string, double>> v;
      for (const auto& kv : r.values)
        if (kv.first != "images_per_s" && kv.first != "data_wait_s") v.push_back(kv);
      records.emplace_back(r.iter, v);
    };
    if (one_at_a_time) {
      for (int i = 0; i < 10; ++i) {
        s->step(1);
        windows.push_back(s->loss_window());
      }
    } else {
      s->step(10);
      windows.push_back(s->loss_window());
    }
    return std::make_tuple(records, windows.back(), s->train_net().param_values().to_host());
  };
  const auto deferred = run(false), eager = run(true);
  ASSERT_EQ(std::get<0>(deferred).size(), 4u);  // iterations 0, 3, 6, 9
  EXPECT_EQ(std::get<0>(deferred), std::get<0>(eager));
  EXPECT_TRUE(same_bits(std::get<1>(deferred), std::get<1>(eager))) << "loss window";
  EXPECT_TRUE(same_bits(std::get<2>(deferred), std::get<2>(eager))) << "parameters";
}

struct Stopped {
  std::string message;
  ErrorKind kind = ErrorKind::Internal;
  int64_t iter = -1;
  std::vector<float> params_before, params_after, history_before, history_after;
};

// Trains `before` iterations, lets `inject` tamper with the solver, then trains on until it throws.
template <class Inject>
Stopped run_until_error(const std::string& yaml, Device dev, int before, Inject inject) {
  const auto s = make(yaml, dev);
  Stopped r;
  s->step(before);
  inject(*s);
  r.params_before = s->train_net().param_values().to_host();
  r.history_before = s->history().to_host();
  try {
    s->step(50);
  } catch (const Error& e) {
    r.message = e.what();
    r.kind = e.kind();
  }
  r.iter = s->iter();
  r.params_after = s->train_net().param_values().to_host();
  r.history_after = s->history().to_host();
  return r;
}

TEST(CudaDataPath, NanInjectedMidRunIsNamedAtItsIterationAndUpdatesNothing) {
  DN_REQUIRE_CUDA();
  auto poison = [](Solver& s) {  // one weight of conv1 becomes NaN after 5 updates
    for (const ParamRef& p : s.train_net().params())
      if (p.name == "conv1.weight")
        Tensor::view(s.train_net().param_values(), p.offset + 2, Shape({1})).from_host({NAN});
  };
  // display 0: nothing is read back until step() ends, 45 iterations after the NaN.
  const Stopped cpu = run_until_error(net_yaml(0), Device::cpu(), 5, poison);
  const Stopped gpu = run_until_error(net_yaml(0), Device::cuda(), 5, poison);
  std::printf("cpu: %s\ncuda: %s\n", cpu.message.c_str(), gpu.message.c_str());
  ASSERT_FALSE(gpu.message.empty()) << "the NaN was not detected on the device";
  EXPECT_EQ(gpu.kind, ErrorKind::Diverged);
  EXPECT_EQ(gpu.message, cpu.message);
  EXPECT_NE(gpu.message.find("iteration 5;"), std::string::npos) << gpu.message;
  EXPECT_NE(gpu.message.find("layer 'conv1' (top 'conv1')"), std::string::npos) << gpu.message;
  EXPECT_EQ(gpu.iter, 5);
  EXPECT_EQ(cpu.iter, 5);
  // The device skipped the update of iteration 5 and of every iteration queued after it.
  EXPECT_TRUE(same_bits(gpu.params_after, gpu.params_before)) << "weights changed after the NaN";
  EXPECT_TRUE(same_bits(gpu.history_after, gpu.history_before)) << "momentum changed after the NaN";
  EXPECT_TRUE(same_bits(cpu.params_after, cpu.params_before));
}

// A gradient-only NaN is hard to provoke through a net (whatever poisons the weights poisons the
// loss first), so the gradient check and the update's guard are checked on their own: the scan
// finds the first non-finite element and stamps the record, and a halted update changes nothing.
TEST(CudaDataPath, GradientScanNamesTheFirstNonFiniteAndTheHaltedUpdateChangesNothing) {
  DN_REQUIRE_CUDA();
  cuda_set_device(0);
  const Device dev = Device::cuda();
  constexpr int64_t n = 5000;
  std::vector<float> g(n, 0.5f), w(n, 1.f), v(n, 0.25f);
  g[4321] = NAN;
  g[1234] = INFINITY;
  Tensor gd(Shape({n}), dev), wd(Shape({n}), dev), vd(Shape({n}), dev);
  gd.from_host(g);
  wd.from_host(w);
  vd.from_host(v);
  DeviceArray<StepCheck> check(1, dev);
  const StepCheck clear = step_check_clear();
  device_copy(check.data(), dev, &clear, Device::cpu(), sizeof(StepCheck));
  check_grads_cuda(n, gd.data(), 7, check.data(), cuda_stream());
  StepCheck c = check.to_host()[0];
  EXPECT_EQ(c.halt, kStepGrad);
  EXPECT_EQ(c.record, 7);
  EXPECT_EQ(c.first_grad, 1234);
  const std::vector<SgdSegment> segs = {{0, n, 1.f, 1.f}};
  SgdSegmentTable table;
  sgd_update_arena_cuda(table.upload(segs, dev), 1, n, 0.1, 0.9f, 0.0, 1.f, 1.f, wd.data(), gd.data(), vd.data(),
                        cuda_stream(), &check.data()->halt);
  EXPECT_TRUE(same_bits(wd.to_host(), w)) << "a halted update changed the weights";
  EXPECT_TRUE(same_bits(vd.to_host(), v)) << "a halted update changed the momentum";
  // Not halted: the same call updates (the guard is what stopped it).
  g[4321] = g[1234] = 0.5f;
  gd.from_host(g);
  device_copy(check.data(), dev, &clear, Device::cpu(), sizeof(StepCheck));
  check_grads_cuda(n, gd.data(), 0, check.data(), cuda_stream());
  EXPECT_EQ(check.to_host()[0].halt, kStepOk);
  sgd_update_arena_cuda(table.upload(segs, dev), 1, n, 0.1, 0.9f, 0.0, 1.f, 1.f, wd.data(), gd.data(), vd.data(),
                        cuda_stream(), &check.data()->halt);
  EXPECT_FALSE(same_bits(wd.to_host(), w));
}

TEST(CudaDataPath, OutOfRangeLabelStillErrors) {
  DN_REQUIRE_CUDA();
  // 10 classes of data for a net with 4 outputs: some label of the first batches is >= 4.
  const Stopped cpu = run_until_error(net_yaml(0, 10), Device::cpu(), 0, [](Solver&) {});
  const Stopped gpu = run_until_error(net_yaml(0, 10), Device::cuda(), 0, [](Solver&) {});
  std::printf("cpu: %s (iteration %lld)\ncuda: %s (iteration %lld)\n", cpu.message.c_str(),
              static_cast<long long>(cpu.iter), gpu.message.c_str(), static_cast<long long>(gpu.iter));
  ASSERT_FALSE(gpu.message.empty()) << "the bad label was not detected on the device";
  EXPECT_EQ(gpu.kind, ErrorKind::Input);
  EXPECT_NE(gpu.message.find("is not a class index in [0, 4)"), std::string::npos) << gpu.message;
  EXPECT_EQ(gpu.message, cpu.message);
  EXPECT_EQ(gpu.iter, cpu.iter);
  EXPECT_TRUE(same_bits(gpu.params_after, gpu.params_before)) << "weights updated from a batch with a bad label";
}

}  // namespace
}  // namespace dropnet
