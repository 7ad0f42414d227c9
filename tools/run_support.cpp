#include "tools/run_support.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"

namespace dropnet {

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      o += fmt::format("\\u{:04x}", c);
      continue;
    }
    o += c;
  }
  return o;
}

RunDirectory::RunDirectory(const std::string& dir, const LoadedConfig& cfg) : dir_(dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) input_error("cannot create run directory '{}': {}", dir, ec.message());
  std::ofstream c(dir + "/config.yaml");
  if (!c) input_error("cannot write '{}/config.yaml'", dir);
  c << "# resolved config (repeat blocks expanded, overrides applied) from " << *cfg.file << "\n" << dump_config(cfg);
  jsonl_.open(dir + "/metrics.jsonl", std::ios::app);
  csv_.open(dir + "/metrics.csv", std::ios::app);
  if (!jsonl_ || !csv_) input_error("cannot write metrics into '{}'", dir);
}

void RunDirectory::write_record(const TrainRecord& r) {
  std::string line = fmt::format("{{\"kind\": \"{}\", \"iter\": {}", r.kind, r.iter);
  for (const auto& kv : r.values) {
    if (std::isfinite(kv.second)) line += fmt::format(", \"{}\": {:.9g}", json_escape(kv.first), kv.second);
    else line += fmt::format(", \"{}\": null", json_escape(kv.first));
  }
  jsonl_ << line << "}\n";
  jsonl_.flush();
  // CSV: kind, iter, name, value (long format: columns differ between train and test rows).
  if (csv_.tellp() == 0) csv_ << "kind,iter,name,value\n";
  for (const auto& kv : r.values) csv_ << r.kind << "," << r.iter << "," << kv.first << "," << fmt::format("{:.9g}", kv.second) << "\n";
  csv_.flush();
}

namespace {

std::string human(double v, const char* unit) {
  const char* p[] = {"", "K", "M", "G", "T"};
  int i = 0;
  while (std::fabs(v) >= 1000 && i < 4) {
    v /= 1000;
    ++i;
  }
  return fmt::format("{:.3g}{}{}", v, p[i], unit);
}

void print_one(const Net& net) {
  std::printf("%s net '%s' (batch %lld)\n", phase_name(net.phase()), net.name().c_str(),
              static_cast<long long>(net.batch_size()));
  std::printf("  %-18s %-13s %-20s %12s %10s %10s %10s\n", "layer", "type", "top shape", "params", "fwd FLOPs",
              "act mem", "param mem");
  double total_params = 0, total_flops = 0, total_act = 0;
  for (int i = 0; i < net.num_layers(); ++i) {
    const Layer& l = net.layer(i);
    double params = 0;
    for (const auto& s : l.param_specs()) params += static_cast<double>(s.shape.count());
    double act = 0;
    std::string shape;
    for (Blob* t : net.tops(i)) {
      act += static_cast<double>(t->shape().count()) * 4;
      shape += (shape.empty() ? "" : " ") + t->shape().str();
    }
    const double flops = l.forward_flops();
    total_params += params;
    total_flops += flops;
    total_act += act;
    std::printf("  %-18s %-13s %-20s %12.0f %10s %10s %10s\n", l.name().c_str(), l.type().c_str(), shape.c_str(),
                params, human(flops, "").c_str(), human(act, "B").c_str(), human(params * 4, "B").c_str());
  }
  std::printf("  %-18s %-13s %-20s %12.0f %10s %10s %10s\n", "total", "", "", total_params,
              human(total_flops, "").c_str(), human(total_act, "B").c_str(), human(total_params * 4, "B").c_str());
}

}  // namespace

void print_net_summary(const Net& train, const Net* test, const DefaultsLog& defaults) {
  print_one(train);
  if (test) print_one(*test);
  if (!defaults.entries.empty()) {
    std::printf("defaults filled in:\n");
    for (const auto& d : defaults.entries) std::printf("  %s\n", d.c_str());
  }
}

}  // namespace dropnet
