// Snapshots: weights as .safetensors (readable by PyTorch / NumPy) and the solver state beside
// them (iteration, momentum, data cursors, loss window, config fingerprint), each written to a
// temporary file in the same directory, fsync'd and renamed, with checksums; a `latest` pointer.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/safetensors.h"
#include "optim/solver.h"

namespace dropnet {

// What a snapshot says about the run that wrote it, in the weights file's safetensors metadata
// (readable by any safetensors reader): the resolved config ("config", YAML), what it was loaded
// from ("config_source" and "config_override.<i>": LoadedConfig::source and ::overrides, so it
// can be loaded again and changed by more overrides) and the invocation record ("run", JSON:
// command line, host, threads, version, commit, device, ranks).
struct RunDescription {
  std::string config, config_source, run;
  std::vector<std::string> config_overrides;
};
// The description of a run trained with `cfg`, invoked as `run_record` says.
RunDescription describe_run(const LoadedConfig& cfg, const std::string& run_record);

// Writes <dir>/<prefix>_iter_<N>.safetensors and <dir>/<prefix>_iter_<N>.solverstate, then
// updates <dir>/latest; removes older snapshots beyond keep_last (0 = keep all). Returns the
// weights path. Data parallel (the solver has a reducer of world > 1): a collective that every
// rank calls at the same iteration; it gathers every rank's data-source positions (shards of
// unequal size are at different positions after an epoch end), rank 0 alone writes and returns
// the path, the others return "". `run` (optional) goes into the weights file's metadata.
std::string save_snapshot(Solver& solver, const std::string& dir, const std::string& prefix, int64_t keep_last,
                          const RunDescription* run = nullptr);

// A snapshot found and read without a net: its files, iteration and run description.
struct SnapshotInfo {
  std::string weights_path;
  std::string state_path;  // "" for a weights file without its solver state beside it
  int64_t iteration = 0;
  RunDescription run;  // empty for snapshots written before dropnet stored it (and other tools' files)
  bool has_config() const { return !run.config_source.empty(); }
  // The files as read and verified, so that a restore or a load reads them once: the weights
  // always, the solver state when the snapshot was named by a run directory or a state file.
  std::shared_ptr<const SafeTensors> weights_file, state_file;
};
// `path`: a run directory (its latest snapshot, or the newest intact older one, with a warning
// naming the refused one), a .solverstate file (and the weights it names) or a weights file.
// Checksums are verified; a file that is not a snapshot is an input error naming it.
SnapshotInfo read_snapshot_info(const std::string& path);
// The config the snapshot's run was trained with (its source and overrides), with `overrides`
// applied after the run's own. An input error when the snapshot carries no config.
LoadedConfig snapshot_config(const SnapshotInfo& info, const std::vector<std::string>& overrides = {});
// Restores weights + solver state from a .solverstate file, a .safetensors file with its
// .solverstate beside it, or a directory (its `latest`). Bit-exact continuation. Every rank
// restores its own data-source positions when the snapshot was written by as many ranks; with
// another world size, every rank takes rank 0's (the shards differ anyway).
void restore_snapshot(Solver& solver, const std::string& path);
// The same from a snapshot read_snapshot_info found, without reading its files again.
void restore_snapshot(Solver& solver, const SnapshotInfo& info);
// Initializes every parameter by name from a .safetensors file (shape-checked): a parameter the
// file lacks is an error, a tensor the net does not take is logged and ignored. For evaluating a
// snapshot (dropnet-test), where a partly loaded net would be wrong.
void load_weights(Net& net, const std::string& path);
void load_weights(Net& net, const SafeTensors& weights);  // a file already read

// Starting a run from another net's weights (dropnet-train --weights, Caffe's fine-tuning):
// every parameter whose name is in the file is loaded, the others keep their filler init.
//
// A map entry renames a layer: the file's layer `file_layer` initializes the net's layer
// `net_layer`, all its parameters (conv1.weight -> conv1_1.weight, conv1.bias -> conv1_1.bias).
// Written FILE_LAYER=NET_LAYER (`--weights-map conv1=conv1_1`) or `weights_map: {conv1: conv1_1}`.
// The map only changes where the named net layers read from; every other net layer reads the
// file's layer of its own name. A net layer is the target of at most one entry (it has one
// source); one file layer may initialize several net layers.
struct WeightsMapEntry {
  std::string file_layer, net_layer;
  // Where the entry was written, the prefix of its errors: "run.yaml:3:21: weights_map.conv1"
  // (ConfigNode::where, what ConfigNode::fail prints) or "--weights-map 'conv1=conv1_1'".
  std::string origin;
};

struct WeightsOptions {
  std::vector<WeightsMapEntry> map;
  // All or nothing: every net parameter must come from the file and every file tensor be taken.
  bool strict = false;
};

// What a load did; every name list is a list of parameter (tensor) names.
struct WeightTransfer {
  std::string path;
  std::vector<std::string> loaded;   // net parameters set from the file, in net order
  std::vector<std::string> sources;  // the file tensor loaded[i] came from (another name where mapped)
  std::vector<std::string> fresh;    // "new": net parameters the file lacks, left at their filler init
  std::vector<std::string> unused;   // file tensors no net parameter took, in file order
  // Three log lines (loaded, new, unused), grouped by layer ("conv1_1 <- conv1" for a whole renamed
  // layer, "fc1.bias" where a layer is split across lists), each list cut after `max_groups` layers
  // so a 200-layer net does not print 400 names.
  std::vector<std::string> summary(size_t max_groups = 12) const;
};

// Loads what matches (see WeightsMapEntry). Refused before anything is written to the net: a map
// entry naming a layer the file or the net does not have (or a net layer twice), a file tensor
// whose shape differs from the net parameter it maps to (both names, both shapes), a dtype other
// than F32, and under `strict` any new or unused parameter.
WeightTransfer load_weights(Net& net, const std::string& path, const WeightsOptions& opts);

// "conv1=conv1_1,conv2=conv2_1" (spaces around names allowed) as map entries whose origin names
// `option` and the entry. A missing '=', an empty name or the same net layer twice is an error.
std::vector<WeightsMapEntry> parse_weights_map(const std::string& text, const std::string& option = "--weights-map");
// `base` (the config's) with `over` (the command line's) on top: an entry of `over` replaces the
// entries of `base` that name the same file layer or the same net layer.
std::vector<WeightsMapEntry> merge_weights_maps(const std::vector<WeightsMapEntry>& base,
                                                const std::vector<WeightsMapEntry>& over);

}  // namespace dropnet
