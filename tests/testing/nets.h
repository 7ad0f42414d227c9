// A small net that exercises activation fusion (Net::fuse_activations), and one forward + backward
// pass of a net collected on the host, for the fusion tests on the CPU (unit_fusion) and on CUDA
// (cuda_fusion).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/device.h"
#include "layers/net.h"

namespace dropnet::testing {

// conv -> relu (fused), conv -> leaky relu (fused), conv whose output also feeds a DropIn next to
// its relu (two consumers: not fused), fc -> relu with a negative slope (not fusable), fc without
// bias -> relu (fused), fc -> softmax loss. Synthetic data, batch 4. The convs use `engine` and
// `algo` (implicit_gemm | im2col), the fcs `engine` too unless it is cudnn (fc has no cuDNN engine).
std::string fusion_net_yaml(const std::string& engine = "native", const std::string& algo = "implicit_gemm");

// The ReLU layers of fusion_net_yaml and whether the Net fuses each.
const std::map<std::string, bool>& fusion_net_expected();

struct NetPass {
  float loss = 0.f;
  std::map<std::string, std::vector<float>> values;  // every blob's value after forward
  std::vector<float> param_grads;                    // the arena after one backward
  std::map<std::string, bool> fused;                 // layer name -> Net::forward_fused
  std::map<std::string, const float*> storage;       // blob name -> value storage (aliasing)
};

// Builds the TRAIN net of `yaml` on `dev` (seed 7, fusion on or off) and runs one forward and backward.
NetPass run_net_pass(const std::string& yaml, Device dev, bool fuse);

}  // namespace dropnet::testing
