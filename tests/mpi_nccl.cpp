// NCCL and CUDA paths of dist/ (the `cuda` label runs this binary too; tests/scripts.cmake):
// NcclComm on one GPU trains to the same parameters as LocalComm and leaves buffers as they are
// (the sum over one rank), its buckets run on the device arena; MpiComm stages CUDA buffers
// through host memory. Without a GPU these skip; the checks that need none run everywhere.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "core/error.h"
#include "data/sources.h"
#include "dist/communicator.h"
#include "optim/solver.h"
#include "testing/harness.h"

using namespace dropnet;
using dropnet::testing::all_close;

namespace {

TEST(Nccl, NeedsACudaDevice) {
  if (!dist::nccl_compiled()) {
    EXPECT_THROW(dist::make_nccl_communicator(Device::cuda(0)), Error);
    return;
  }
  try {
    dist::make_nccl_communicator(Device::cpu());
    FAIL() << "a CPU NCCL communicator was created";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Input);
    EXPECT_NE(std::string(e.what()).find("CUDA"), std::string::npos) << e.what();
  }
}

std::unique_ptr<dist::Communicator> nccl_or_skip() {
  if (!dist::nccl_compiled()) return nullptr;
  return dist::make_nccl_communicator(Device::cuda(0));
}

const char* kNet = R"(name: nccl
seed: 3
data:
  train: {source: synthetic, shape: [3, 12, 12], num_classes: 7, num_samples: 64, batch_size: 8, scale: 0.0039, prefetch: 0}
solver: {base_lr: 0.02, momentum: 0.9, weight_decay: 0.001, max_iter: 10, display: 0, bucket_mb: 0.001}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 6, kernel: 3, pad: 1, weight_filler: {type: xavier}}
  - {name: relu1, type: relu, bottom: conv1, top: relu1}
  - {name: conv2, type: conv, bottom: relu1, top: conv2, num_output: 6, kernel: 3, pad: 1, weight_filler: {type: xavier}}
  - {name: drop2, type: dropin, bottom: [relu1, conv2], top: drop2, length: 6}
  - {name: pool, type: pool, bottom: drop2, top: pool, method: max, kernel: 2, stride: 2}
  - {name: fc, type: fc, bottom: pool, top: fc, num_output: 7, weight_filler: {type: xavier}}
  - {name: loss, type: softmax_loss, bottom: [fc, label], top: loss}
)";

std::vector<float> train_on_gpu(GradientReducer* reducer, Device dev) {
  LoadedConfig cfg = load_config_text(kNet, "nccl.yaml");
  SolverOptions so;
  so.net.device = dev;
  so.net.source_factory = make_batch_source;
  so.reducer = reducer;
  so.net.seed = 3;
  so.quiet = true;
  Solver s(cfg, so);
  s.step(10);
  return s.train_net().param_values().to_host();
}

TEST(Nccl, OneGpuTrainsLikeLocalComm) {
  DN_REQUIRE_CUDA();
  if (dist::launched_under_mpi()) GTEST_SKIP() << "the single-process NCCL communicator is tested without mpirun";
  auto nccl = nccl_or_skip();
  if (!nccl) GTEST_SKIP() << "built without NCCL";
  EXPECT_EQ(nccl->kind(), "nccl");
  EXPECT_EQ(nccl->world(), 1);
  dist::LocalComm local(nccl->device());
  std::vector<float> a = train_on_gpu(&local, nccl->device());
  std::vector<float> b = train_on_gpu(nccl.get(), nccl->device());
  EXPECT_TRUE(all_close(a, b, 1e-6f, 1e-6f));
  EXPECT_GT(nccl->last_reduction().buckets, 1);  // bucket_mb 0.001: one bucket per layer
  EXPECT_GT(nccl->last_reduction().comm_seconds, 0.0);
}

TEST(Nccl, CollectivesOnDeviceBuffers) {
  DN_REQUIRE_CUDA();
  auto comm = nccl_or_skip();
  if (!comm) GTEST_SKIP() << "built without NCCL";
  const int w = comm->world(), r = comm->rank();
  const int64_t n = 100003;
  std::vector<float> host = dropnet::testing::random_vector(n, 17);
  std::vector<float> mine(host.size());
  for (size_t i = 0; i < host.size(); ++i) mine[i] = host[i] * static_cast<float>(r + 1);
  // On the communicator's device (cuda:local_rank under a launcher): NCCL runs collectives on
  // the buffers of the device it was created on.
  EXPECT_TRUE(comm->device().is_cuda()) << comm->device().str();
  Tensor t(Shape({n}), comm->device());
  t.from_host(mine);
  comm->allreduce_sum(t.data(), n, t.device());
  std::vector<float> want(host.size());
  for (size_t i = 0; i < host.size(); ++i) want[i] = host[i] * static_cast<float>(w * (w + 1) / 2);
  EXPECT_TRUE(all_close(want, t.to_host(), 1e-6f, 1e-6f));
  // Buckets over a device arena with padding between the "layers".
  t.from_host(mine);
  comm->begin_backward(t.data(), n, t.device(), 4096);
  for (int64_t off = n - 1000, k = 0; off >= 0; off -= 1024, ++k)
    comm->on_layer_grads_ready(static_cast<int>(1000 - k), t.data() + off, 1000);
  comm->finish();
  EXPECT_TRUE(all_close(want, t.to_host(), 1e-6f, 1e-6f));
  EXPECT_GT(comm->last_reduction().buckets, 10);
  if (r != 0) t.fill(-1.f);
  comm->broadcast(t.data(), n, t.device());
  std::vector<float> got = t.to_host();
  std::vector<float> root0(host.size());
  for (size_t i = 0; i < host.size(); ++i) root0[i] = host[i] * static_cast<float>(w * (w + 1) / 2);
  EXPECT_TRUE(all_close(root0, got, 1e-6f, 1e-6f));
}

// MpiComm with CUDA tensors: staged through host memory (needs a launcher: mpirun -np 1 or more).
TEST(Mpi, StagesCudaBuffersThroughHost) {
  DN_REQUIRE_CUDA();
  if (!dist::mpi_compiled() || !dist::launched_under_mpi()) GTEST_SKIP() << "needs mpirun";
  auto comm = dist::make_mpi_communicator(Device::cuda(0));
  const int w = comm->world(), r = comm->rank();
  const int64_t n = 4099;
  std::vector<float> host = dropnet::testing::random_vector(n, 3);
  std::vector<float> mine(host.size()), want(host.size());
  for (size_t i = 0; i < host.size(); ++i) {
    mine[i] = host[i] * static_cast<float>(r + 1);
    want[i] = host[i] * static_cast<float>(w * (w + 1) / 2);
  }
  Tensor t(Shape({n}), comm->device());
  t.from_host(mine);
  comm->allreduce_sum(t.data(), n, t.device());
  EXPECT_TRUE(all_close(want, t.to_host(), 1e-6f, 1e-6f));
  t.from_host(mine);
  comm->begin_backward(t.data(), n, t.device(), 1024);
  comm->on_layer_grads_ready(1, t.data() + 2048, n - 2048);
  comm->on_layer_grads_ready(0, t.data(), 2000);
  comm->finish();
  EXPECT_TRUE(all_close(want, t.to_host(), 1e-6f, 1e-6f));
}

}  // namespace
