#include "tests/testing/nets.h"

#include <fmt/format.h>

#include "data/sources.h"
#include "core/config.h"

namespace dropnet::testing {

std::string fusion_net_yaml(const std::string& engine, const std::string& algo) {
  return fmt::format(R"(
name: fusion
data:
  train: {{source: synthetic, shape: [3, 9, 7], num_classes: 5, num_samples: 8, batch_size: 4}}
layers:
  - {{name: data, type: data, top: [data, label]}}
  - {{name: conv1, type: conv, bottom: data, top: c1, num_output: 6, kernel: 3, pad: 1, engine: {e}, algo: {a},
     weight_filler: {{type: xavier}}, bias_filler: {{type: uniform, min: -0.5, max: 0.5}}}}
  - {{name: relu1, type: relu, bottom: c1, top: r1}}
  - {{name: conv2, type: conv, bottom: r1, top: c2, num_output: 5, kernel: 3, stride: 2, engine: {e}, algo: {a},
     weight_filler: {{type: xavier}}, bias_filler: {{type: uniform, min: -0.5, max: 0.5}}}}
  - {{name: relu2, type: relu, bottom: c2, top: r2, negative_slope: 0.1}}
  - {{name: conv3, type: conv, bottom: r2, top: c3, num_output: 5, kernel: 3, pad: 1, engine: {e}, algo: {a},
     weight_filler: {{type: xavier}}}}
  - {{name: relu3, type: relu, bottom: c3, top: r3}}
  - {{name: mix, type: dropin, bottom: [c3, r3], top: m3, mode: regularize, p: 0.5}}
  - {{name: fc1, type: fc, engine: {fe}, bottom: m3, top: f1, num_output: 12, weight_filler: {{type: xavier}}}}
  - {{name: relu4, type: relu, bottom: f1, top: r4, negative_slope: -0.5}}
  - {{name: fc2, type: fc, engine: {fe}, bottom: r4, top: f2, num_output: 8, bias: false, weight_filler: {{type: xavier}}}}
  - {{name: relu5, type: relu, bottom: f2, top: r5}}
  - {{name: fc3, type: fc, engine: {fe}, bottom: r5, top: f3, num_output: 5, weight_filler: {{type: xavier}}}}
  - {{name: loss, type: softmax_loss, bottom: [f3, label], top: loss}}
)",
                     fmt::arg("e", engine), fmt::arg("a", algo), fmt::arg("fe", engine == "cudnn" ? "native" : engine));
}

const std::map<std::string, bool>& fusion_net_expected() {
  static const std::map<std::string, bool> m = {
      {"relu1", true}, {"relu2", true}, {"relu3", false}, {"relu4", false}, {"relu5", true}};
  return m;
}

NetPass run_net_pass(const std::string& yaml, Device dev, bool fuse) {
  LoadedConfig cfg = load_config_text(yaml, "fusion.yaml");
  NetOptions no;
  no.device = dev;
  no.seed = 7;
  no.source_factory = make_batch_source;
  no.fuse_activations = fuse;
  Net net(cfg, no);
  const RunContext ctx{Phase::Train, 0, 7, 0};
  NetPass r;
  r.loss = net.forward(ctx);
  net.backward(ctx);
  for (const auto& b : net.blobs()) {
    r.values[b->name] = b->value.to_host();
    r.storage[b->name] = b->value.data();
  }
  r.param_grads = net.param_grads().to_host();
  for (int i = 0; i < net.num_layers(); ++i) r.fused[net.layer(i).name()] = net.forward_fused(i);
  return r;
}

}  // namespace dropnet::testing
