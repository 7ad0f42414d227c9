// The kinds of data source (`source:` in a data.train / data.test section), one table like the
// layer registry: each kind reads its own keys, says how its data is loaded, and knows the sample
// shape a config declares without loading anything. make_batch_source (data/sources.cpp) reads the
// keys all sources share and asks the kind for the rest; use_synthetic_data (tools/) asks it for
// the shape of a stand-in synthetic set.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/batch_source.h"
#include "core/config.h"
#include "data/dataset.h"
#include "data/transform.h"

namespace dropnet::data {

// What the keys all sources share leave to a kind.
struct SourceContext {
  const SourceRequest& req;
  TransformSpec& transform;      // crop and pad are read; cifar10's `mean_file: auto` sets the mean on load
  const std::string& mean_file;  // none | auto | PATH
};

// What a kind's keys describe. Every key is read before any file is touched (`load` runs after
// finish()), so a misspelt key is reported as such rather than as the missing file it causes.
struct SourcePlan {
  std::function<std::shared_ptr<const Dataset>()> load;
  std::string what;                                         // for the log: a path, "N samples"
  std::vector<std::pair<std::string, std::string>> inputs;  // (key, path) of the files it reads
  int num_classes = 0;
  // Shapes only: the stored sample's (C, H, W) without reading the data (H = W = 0: the images
  // vary, the crop decides); no function: the data must be opened to tell.
  std::function<std::vector<int64_t>()> stored_shape;
};

struct SourceKind {
  const char* name;
  SourcePlan (*read)(ConfigNode& cfg, const SourceContext& ctx);
  // The sample (C, H, W) a section of this kind declares, from its YAML as written (nothing checked,
  // nothing read, before any transform; H = W = 0: the images vary, the crop decides); empty, or no
  // function: only the data can tell.
  std::vector<int64_t> (*declared_shape)(const YAML::Node& section);
  bool computes_mean;  // `mean_file: auto` (the mean of the training files)
};

const std::vector<SourceKind>& source_kinds();
const SourceKind* find_source_kind(const std::string& name);  // nullptr if unknown

// An integer key in [lo, hi]; the message names the range.
int int_in(ConfigNode& cfg, const std::string& key, int64_t def, int64_t lo, int64_t hi);

}  // namespace dropnet::data
