// Run directories (resolved config, metrics.jsonl + metrics.csv) and the net summary table.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include "layers/config.h"
#include "layers/net.h"
#include "optim/solver.h"

namespace dropnet {

class RunDirectory {
 public:
  // Creates `dir` (and parents), writes config.yaml (the resolved config).
  RunDirectory(const std::string& dir, const LoadedConfig& cfg);
  // Appends one JSON line to metrics.jsonl and one row to metrics.csv; flushed per record.
  void write_record(const TrainRecord& r);
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::ofstream jsonl_, csv_;
  std::vector<std::string> csv_columns_;
};

// Per layer: type, top shape, parameters, forward FLOPs, activation and parameter memory; totals;
// for TRAIN and (if present) TEST; then the defaults that were filled in.
void print_net_summary(const Net& train, const Net* test, const DefaultsLog& defaults);

std::string json_escape(const std::string& s);

}  // namespace dropnet
