// Fused activations on CUDA (the implicit-GEMM epilogue, the im2col path's and cuDNN's bias pass, the
// fc bias pass) against the unfused CPU net: loss, every blob and every parameter gradient after one
// forward and backward, for each conv engine.
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "kernels/conv_cudnn.h"
#include "tests/testing/harness.h"
#include "tests/testing/nets.h"

using namespace dropnet;
using namespace dropnet::testing;

namespace {

class CudaFusion : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(CudaFusion, MatchesUnfusedCpu) {
  DN_REQUIRE_CUDA();
  const auto& [engine, algo] = GetParam();
  if (engine == "cudnn" && !cudnn_compiled()) GTEST_SKIP() << "built without cuDNN";
  const NetPass ref = run_net_pass(fusion_net_yaml(), Device::cpu(), false);
  const NetPass got = run_net_pass(fusion_net_yaml(engine, algo), Device::cuda(), true);
  for (const auto& [layer, want] : fusion_net_expected()) EXPECT_EQ(got.fused.at(layer), want) << layer;
  EXPECT_NEAR(got.loss, ref.loss, 1e-5 + 1e-4 * std::abs(ref.loss));
  for (const auto& [name, v] : ref.values) {
    // A fused producer's top holds its ReLU's output.
    std::string want = name == "c1" ? "r1" : name == "c2" ? "r2" : name == "f2" ? "r5" : name;
    EXPECT_TRUE(all_close(ref.values.at(want), got.values.at(name), 1e-4f, 1e-4f)) << name;
  }
  EXPECT_TRUE(all_close(ref.param_grads, got.param_grads, 1e-4f, 1e-3f)) << "parameter gradients";
}

INSTANTIATE_TEST_SUITE_P(ConvEngines, CudaFusion,
                         ::testing::Values(std::pair<std::string, std::string>{"native", "implicit_gemm"},
                                           std::pair<std::string, std::string>{"native", "im2col"},
                                           std::pair<std::string, std::string>{"cublas", "implicit_gemm"},
                                           std::pair<std::string, std::string>{"cudnn", "implicit_gemm"}),
                         [](const auto& i) { return i.param.first + "_" + i.param.second; });

}  // namespace
