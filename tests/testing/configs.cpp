#include "tests/testing/configs.h"

#include <algorithm>
#include <filesystem>

#include "core/config.h"

namespace dropnet::testing {

std::vector<std::pair<std::string, std::string>> shipped_configs_synthetic(int batch, int samples) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : std::filesystem::directory_iterator(std::string(DROPNET_SOURCE_DIR) + "/configs")) {
    if (e.path().extension() != ".yaml") continue;
    LoadedConfig cfg = load_config_file(e.path().string());
    YAML::Node train = cfg.root["data"]["train"];
    std::string src = train["source"].as<std::string>();
    std::string shape = src == "mnist" ? "[1, 28, 28]" : src == "cifar10" ? "[3, 32, 32]" : "[3, 227, 227]";
    if (train["crop"].IsDefined() && train["crop"].as<int>() == 224) shape = "[3, 224, 224]";
    const std::string classes = src == "mnist" || src == "cifar10" ? "10" : "1000";
    for (const char* phase : {"train", "test"})
      cfg.root["data"][phase] = YAML::Load("{source: synthetic, shape: " + shape + ", num_classes: " + classes +
                                           ", num_samples: " + std::to_string(samples) +
                                           ", batch_size: " + std::to_string(batch) + "}");
    cfg.root.remove("vars");  // already substituted
    out.emplace_back(e.path().filename().string(), dump_config(cfg));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string indent_lines(const std::string& text, const std::string& indent) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    out += indent + text.substr(pos, nl - pos) + "\n";
    pos = nl + 1;
  }
  return out;
}

}  // namespace dropnet::testing
