// Finite-difference gradient checks of single layers (Caffe's GradientChecker semantics):
// objective L = sum_k c_k * top_k with fixed random c (loss layers: L = loss), central differences
// with `step`, |analytic - numeric| <= threshold * max(|analytic|, |numeric|, 1). The RunContext is
// the same for every evaluation, so RNG masks are fixed during the check.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "layers/layer.h"
#include "tests/testing/harness.h"

namespace dropnet::testing {

// Builds one layer from a YAML map (name, type, bottom, top, keys...) on `dev`, reshapes it for
// `bottom_shapes` and allocates/fills its parameters with uniform(-1, 1) values from `seed`.
struct LayerUnderTest {
  std::unique_ptr<Layer> layer;
  std::vector<Blob> bottoms, tops;
  std::vector<Tensor> param_values, param_grads;
  void forward(const RunContext& ctx);
  // Runs backward with the given top grads; bottom grads overwritten (beta 0) unless beta given.
  void backward(const RunContext& ctx, float beta = 0.f);
};
LayerUnderTest make_layer_under_test(const std::string& yaml, const std::vector<Shape>& bottom_shapes,
                                     uint64_t seed = 1, Device dev = Device::cpu());

struct GradCheckOptions {
  float step = 1e-2f;
  float threshold = 1e-3f;
  // Skip elements whose input lies within `kink` of a non-differentiable point at 0 (ReLU).
  float kink = 0.f;
  std::vector<int> check_bottoms;  // empty: every bottom the layer can backprop to
  bool check_params = true;
  RunContext ctx{};
};

::testing::AssertionResult check_gradients(LayerUnderTest& t, const GradCheckOptions& opts);

}  // namespace dropnet::testing
