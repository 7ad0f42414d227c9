// cuBLAS is loaded on first use, not linked (kernels/cublas_api.h): a CPU run never maps it
// (linking it cost every process ~150 MB resident at start); the first use loads it and resolves
// every function dropnet calls. Needs no GPU: loading and resolving do not touch a device.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "kernels/cublas_api.h"
#include "tests/testing/solvers.h"

namespace dropnet {
namespace {

std::string maps() {
  std::ifstream f("/proc/self/maps");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(CublasLazy, ACpuRunDoesNotLoadItTheFirstUseDoes) {
  auto s = testing::quiet_solver(R"(name: lazy
data:
  train: {source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 32, batch_size: 4}
solver: {base_lr: 0.05, max_iter: 4, display: 0}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 3, kernel: 3}
  - {name: fc1, type: fc, bottom: conv1, top: fc1, num_output: 4}
  - {name: loss, type: softmax_loss, bottom: [fc1, label], top: loss}
)",
                                 "lazy.yaml", 1);
  s->step(2);
  EXPECT_FALSE(cublas_loaded());
  EXPECT_EQ(maps().find("libcublas"), std::string::npos) << "a CPU run mapped cuBLAS";

  const CublasApi& api = cublas();
  EXPECT_TRUE(cublas_loaded());
  EXPECT_NE(api.create, nullptr);
  EXPECT_NE(api.set_math_mode, nullptr);
  EXPECT_NE(api.set_stream, nullptr);
  EXPECT_NE(api.sgemm, nullptr);
  ASSERT_NE(api.status_string, nullptr);
  EXPECT_NE(std::string(api.status_string(CUBLAS_STATUS_INVALID_VALUE)), "");
  EXPECT_EQ(&cublas(), &api) << "loaded once";
#if !DROPNET_CUDA_EMU
  EXPECT_NE(maps().find("libcublas.so"), std::string::npos) << "cuBLAS was not loaded from its library";
#endif
}

}  // namespace
}  // namespace dropnet
