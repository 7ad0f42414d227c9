// The explicit layer registry: YAML `type` -> factory. An unknown type is an error that lists
// the known ones.
#pragma once

#include <memory>
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
std::unique_ptr<Layer> make_layer(LayerInfo info, ConfigNode& cfg);

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
