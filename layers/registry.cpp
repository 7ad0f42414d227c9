#include "layers/registry.h"

#include <fmt/format.h>

#include "core/error.h"

namespace dropnet {

const std::vector<LayerType>& layer_types() {
  static const std::vector<LayerType> types = {
      {"data", make_data_layer, "batches from the config's data section (tops: data, label)"},
      {"conv", make_conv_layer, "2-D convolution (num_output, kernel, stride, pad, group, bias)"},
      {"fc", make_fc_layer, "fully connected (num_output, bias)"},
      {"relu", make_relu_layer, "rectified linear unit (negative_slope)"},
      {"pool", make_pool_layer, "max / average pooling with Caffe's ceil-mode output size"},
      {"softmax_loss", make_softmax_loss_layer, "softmax + multinomial logistic loss"},
      {"accuracy", make_accuracy_layer, "top-k accuracy"},
      {"lrn", make_lrn_layer, "local response normalization (across_channels | within_channel)"},
      {"dropout", make_dropout_layer, "inverted dropout (ratio)"},
      {"dropin", make_dropin_layer, "DropIn: y = r * new + (1 - r) * skip (gradual | regularize)"},
      {"grow", make_grow_layer, "width growth: the first channels pass, more on a schedule (thin-to-wide)"},
      {"resize", make_resize_layer, "parameter-free reshape of channels and spatial size"},
  };
  return types;
}

uint32_t name_hash(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

LayerInfo read_layer_info(ConfigNode& cfg, Device device, const std::string& default_engine,
                          std::set<std::string>* names) {
  LayerInfo info;
  info.name = cfg.get_string("name");
  if (info.name.empty() || info.name.size() > kMaxNameLength)
    cfg.fail("name", fmt::format("a layer name has 1 to {} bytes, got {}", kMaxNameLength, info.name.size()));
  if (names != nullptr && !names->insert(info.name).second)
    cfg.fail("name", fmt::format("duplicate layer name '{}'", info.name));
  info.type = cfg.get_string("type");
  info.phase = cfg.get_choice("phase", {"train", "test", "both"}, "both");
  info.bottoms = cfg.has("bottom") ? cfg.get_string_list("bottom") : std::vector<std::string>{};
  info.tops = cfg.has("top") ? cfg.get_string_list("top") : std::vector<std::string>{};
  info.engine = cfg.get_choice("engine", {"native", "cublas", "cudnn"}, default_engine);
  info.device = device;
  info.rng_stream = name_hash(info.name);
  return info;
}

bool in_phase(const LayerInfo& info, Phase phase) {
  return info.phase == "both" || info.phase == (phase == Phase::Train ? "train" : "test");
}

std::unique_ptr<Layer> make_layer(LayerInfo info, ConfigNode& cfg) {
  std::vector<std::string> names;
  for (const auto& t : layer_types()) {
    if (info.type == t.name) return t.make(std::move(info), cfg);
    names.push_back(t.name);
  }
  cfg.fail("type", fmt::format("unknown layer type '{}' (known types: {})", info.type, fmt::join(names, ", ")));
}

}  // namespace dropnet
