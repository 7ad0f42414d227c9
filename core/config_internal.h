// What the files implementing core/config.h share; not for users of the config. The files:
//   config_node.cpp      ConfigNode, the strict key accessor, and the helpers declared first below
//   config_expand.cpp    `vars` and `repeat:` blocks with their `{EXPR}` placeholders
//   config_override.cpp  command-line overrides (a.b.c=value)
//   config_load.cpp      parsing (duplicate keys, size limits), `base:` inheritance, the load steps
//   config_dump.cpp      dump_config and config_differences
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>

#include "core/config.h"

namespace dropnet {

// ---- config_node.cpp

// The name of a list item that is a map with a scalar `name` (a layer), "" otherwise: how messages
// (layers[1](conv1)), overrides (layers.conv1.kernel) and config differences address list items.
std::string item_name(const YAML::Node& n);
// Whether s is a whole decimal integer that fits int64_t (then in *out).
bool parse_int(const std::string& s, int64_t* out);
// An input error "file:line:col: msg" at n's mark ("file: msg" when n has none).
[[noreturn]] void fail_at(const std::string& file, const YAML::Node& n, const std::string& msg);

// ---- config_expand.cpp

// Reads root's integer `vars` and replaces root's `layers` by the list with every `repeat:` block
// expanded and every {EXPR} substituted; each layer's source mark goes into marks->layers.
void expand_layers(YAML::Node root, const std::string& file, MarkTable* marks);

// ---- config_override.cpp

// Sets the node at spec's key path (`key.path=value`) to its YAML value, creating sections on the
// way; every node of the value is noted in marks->overrides.
void apply_override(YAML::Node root, const std::string& spec, MarkTable* marks);
// Whether spec addresses a layer (layers.NAME...): those apply after repeat expansion, the others
// before it (they may set vars).
bool is_layer_override(const std::string& spec);

}  // namespace dropnet
