#include "layers/layer.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"

namespace dropnet {

int64_t num_channels(const Shape& s) { return s.ndim() >= 2 ? s[1] : 1; }

ChannelRange intersect(ChannelRange a, ChannelRange b) {
  ChannelRange r{std::max(a.begin, b.begin), std::min(a.end, b.end)};
  return r.empty() ? ChannelRange{} : r;
}

ChannelRange hull(ChannelRange a, ChannelRange b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return {std::min(a.begin, b.begin), std::max(a.end, b.end)};
}

FillerSpec parse_filler(ConfigNode node) {
  FillerSpec f;
  if (!node.valid()) return f;
  f.type = node.get_choice("type", {"constant", "uniform", "gaussian", "xavier", "msra"}, "constant");
  if (f.type == "constant") f.value = static_cast<float>(node.get_float("value", 0.0));
  if (f.type == "uniform") {
    f.min = static_cast<float>(node.get_float("min", 0.0));
    f.max = static_cast<float>(node.get_float("max", 1.0));
    if (f.max < f.min) node.fail("max", "uniform filler needs min <= max");
  }
  if (f.type == "gaussian") {
    f.mean = static_cast<float>(node.get_float("mean", 0.0));
    f.std = static_cast<float>(node.get_float("std", 1.0));
    if (f.std < 0) node.fail("std", "must be >= 0");
  }
  node.finish();
  return f;
}

void read_param_mults(ConfigNode& cfg, std::vector<double>* lr_mult, std::vector<double>* decay_mult) {
  *lr_mult = cfg.get_float_list("lr_mult", {});
  *decay_mult = cfg.get_float_list("decay_mult", {});
}

void Layer::declare_params(std::vector<ParamSpec> specs) {
  if (params_declared()) {
    DN_CHECK(specs.size() == param_specs_.size(), "layer {} changed its parameter count", name());
    for (size_t i = 0; i < specs.size(); ++i)
      if (specs[i].shape != param_specs_[i].shape)
        input_error("layer '{}': parameter '{}' would change shape from {} to {} (input shape changed?)", name(),
                    specs[i].name, param_specs_[i].shape.str(), specs[i].shape.str());
    return;
  }
  if (lr_mult_cfg_.size() > specs.size())
    input_error("layer '{}': lr_mult has {} values but the layer has {} parameters", name(), lr_mult_cfg_.size(),
                specs.size());
  if (decay_mult_cfg_.size() > specs.size())
    input_error("layer '{}': decay_mult has {} values but the layer has {} parameters", name(),
                decay_mult_cfg_.size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    if (i < lr_mult_cfg_.size()) specs[i].lr_mult = static_cast<float>(lr_mult_cfg_[i]);
    if (i < decay_mult_cfg_.size()) specs[i].decay_mult = static_cast<float>(decay_mult_cfg_[i]);
  }
  param_specs_ = std::move(specs);
}

}  // namespace dropnet
