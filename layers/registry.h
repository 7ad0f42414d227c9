// The explicit layer registry: YAML `type` -> factory. An unknown type is an error that lists
// the known ones. A layer's config node is read in two steps: read_layer_info (the keys every
// layer has), then make_layer (its type's own keys).
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "layers/layer.h"

namespace dropnet {

using LayerMaker = std::unique_ptr<Layer> (*)(LayerInfo info, ConfigNode& cfg);

struct LayerType {
  const char* name;
  LayerMaker make;
  const char* summary;
};

const std::vector<LayerType>& layer_types();

// The keys every layer has: name (1 to kMaxNameLength bytes; unique among `names` when given, and
// added to them), type, phase (train | test | both), bottom, top, engine (native | cublas | cudnn,
// default_engine when absent). The RNG stream is the name's hash. Used by the Net and by the test
// harness that builds a single layer.
LayerInfo read_layer_info(ConfigNode& cfg, Device device, const std::string& default_engine,
                          std::set<std::string>* names = nullptr);
// Whether a layer is in the net of `phase`.
bool in_phase(const LayerInfo& info, Phase phase);
std::unique_ptr<Layer> make_layer(LayerInfo info, ConfigNode& cfg);

// Stable 32-bit id of a layer name (FNV-1a): the layer's RNG stream.
uint32_t name_hash(const std::string& s);

// One factory per layer file (defined there).
std::unique_ptr<Layer> make_data_layer(LayerInfo, ConfigNode&);
std::unique_ptr<Layer> make_conv_layer(LayerInfo, ConfigNode&);
std::unique_ptr<Layer> make_fc_layer(LayerInfo, ConfigNode&);
std::unique_ptr<Layer> make_relu_layer(LayerInfo, ConfigNode&);
std::unique_ptr<Layer> make_pool_layer(LayerInfo, ConfigNode&);
std::unique_ptr<Layer> make_softmax_loss_layer(LayerInfo, ConfigNode&);
std::unique_ptr<Layer> make_accuracy_layer(LayerInfo, ConfigNode&);
std::unique_ptr<Layer> make_dropin_layer(LayerInfo, ConfigNode&);
std::unique_ptr<Layer> make_grow_layer(LayerInfo, ConfigNode&);
std::unique_ptr<Layer> make_dropout_layer(LayerInfo, ConfigNode&);
std::unique_ptr<Layer> make_resize_layer(LayerInfo, ConfigNode&);
std::unique_ptr<Layer> make_lrn_layer(LayerInfo, ConfigNode&);

}  // namespace dropnet
