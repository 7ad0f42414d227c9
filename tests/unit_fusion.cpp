// Activation fusion (Net::fuse_activations) on the CPU: a ReLU that is the only reader of a conv's or
// an fc's output runs inside that layer's bias pass, its top aliases the producer's top, and the net
// computes exactly what the unfused net computes (loss, every activation, every parameter gradient:
// the ReLU's backward reads the activated value, whose sign is the input's). ReLUs whose input has
// another reader, or whose slope is negative, stay separate layers.
#include <gtest/gtest.h>

#include "tests/testing/nets.h"

using namespace dropnet;
using namespace dropnet::testing;

namespace {

TEST(ActivationFusion, FusesOnlyWhereTheReluIsTheOnlyReader) {
  const NetPass fused = run_net_pass(fusion_net_yaml(), Device::cpu(), true);
  for (const auto& [layer, want] : fusion_net_expected()) EXPECT_EQ(fused.fused.at(layer), want) << layer;
  // A fused ReLU's top is its producer's top; the others have their own storage.
  EXPECT_EQ(fused.storage.at("r1"), fused.storage.at("c1"));
  EXPECT_EQ(fused.storage.at("r2"), fused.storage.at("c2"));
  EXPECT_EQ(fused.storage.at("r5"), fused.storage.at("f2"));
  EXPECT_NE(fused.storage.at("r3"), fused.storage.at("c3"));
  EXPECT_NE(fused.storage.at("r4"), fused.storage.at("f1"));

  const NetPass plain = run_net_pass(fusion_net_yaml(), Device::cpu(), false);
  for (const auto& [layer, f] : plain.fused) EXPECT_FALSE(f) << layer;
}

TEST(ActivationFusion, SameLossActivationsAndGradientsAsUnfused) {
  const NetPass fused = run_net_pass(fusion_net_yaml(), Device::cpu(), true);
  const NetPass plain = run_net_pass(fusion_net_yaml(), Device::cpu(), false);
  EXPECT_EQ(fused.loss, plain.loss);
  // The ReLUs' outputs (and everything after them) are bit-identical; a fused producer's own top
  // now holds its activated output.
  for (const auto& [name, v] : plain.values) {
    if (name == "c1" || name == "c2" || name == "f2") continue;
    EXPECT_EQ(fused.values.at(name), v) << name;
  }
  for (const auto& [producer, relu] : {std::pair<const char*, const char*>{"c1", "r1"}, {"c2", "r2"}, {"f2", "r5"}})
    EXPECT_EQ(fused.values.at(producer), plain.values.at(relu)) << producer;
  // The net is not trivially dead: the leaky ReLU sees negative inputs and the plain ones zeros.
  int negatives = 0;
  for (float v : plain.values.at("c2")) negatives += v < 0.f;
  EXPECT_GT(negatives, 0);
  EXPECT_EQ(fused.param_grads, plain.param_grads);
  double norm = 0;
  for (float g : plain.param_grads) norm += static_cast<double>(g) * g;
  EXPECT_GT(norm, 0.0);
}

}  // namespace
