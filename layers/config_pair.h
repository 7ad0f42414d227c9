// The `kernel`, `stride` and `pad` style keys of the spatial layers (conv, pool): an int, or [h, w].
#pragma once

namespace dropnet {

class ConfigNode;

struct Pair {
  int h, w;
};

// read_pair: `def` for both when the key is absent; read_pair_required: an absent key is an error.
// Each value must lie in [min_value, 2^20]; a bad value or list length is a config error at `key`.
Pair read_pair(ConfigNode& cfg, const char* key, int def, int min_value);
Pair read_pair_required(ConfigNode& cfg, const char* key, int min_value);

}  // namespace dropnet
