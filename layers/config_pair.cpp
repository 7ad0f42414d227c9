#include "layers/config_pair.h"

#include <fmt/format.h>

#include "core/config.h"

namespace dropnet {

namespace {
Pair to_pair(ConfigNode& cfg, const char* key, const std::vector<int64_t>& v, int min_value) {
  if (v.size() != 1 && v.size() != 2) cfg.fail(key, "expected an integer or [h, w]");
  Pair p{static_cast<int>(v[0]), static_cast<int>(v.size() == 2 ? v[1] : v[0])};
  for (int64_t x : v)
    if (x < min_value || x > (1 << 20)) cfg.fail(key, fmt::format("value {} out of range (must be >= {})", x, min_value));
  return p;
}
}  // namespace

Pair read_pair(ConfigNode& cfg, const char* key, int def, int min_value) {
  return to_pair(cfg, key, cfg.get_int_list(key, {def}), min_value);
}

Pair read_pair_required(ConfigNode& cfg, const char* key, int min_value) {
  if (!cfg.has(key)) cfg.fail("", fmt::format("missing required key '{}'", key));
  return to_pair(cfg, key, cfg.get_int_list(key, {}), min_value);
}

}  // namespace dropnet
