// Snapshots: resuming is bit-identical to training straight through (parameters, momentum, loss
// window, data cursors of both phases); weights load by name with shape checks, and a deeper net
// starts from a shallower one's (matching names, a layer map, strict mode); another net's,
// another seed's, a truncated or a mislabelled snapshot is refused with a message and leaves the
// solver untouched; keep_last and `latest`; CUDA nets restore CPU snapshots.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fileio.h"
#include "core/safetensors.h"
#include "data/sources.h"
#include "optim/snapshot.h"
#include "optim/solver.h"
#include "tests/testing/files.h"
#include "tests/testing/harness.h"
#include "tests/testing/solvers.h"
#include "tools/cli_common.h"

namespace dropnet {
namespace {

namespace fs = std::filesystem;

using testing::input_error_of;
using testing::TempDir;

std::string net_yaml(int conv_out = 4, bool extra_fc = false) {
  std::string y = fmt::format(R"(name: snapnet
data:
  train: {{source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 64, batch_size: 8, shuffle: true,
          scale: 0.00390625}}
  test: {{source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 40, batch_size: 8, scale: 0.00390625}}
solver:
  base_lr: 0.05
  momentum: 0.9
  weight_decay: 0.0005
  lr_policy: inv
  gamma: 0.01
  power: 0.75
  max_iter: 1000
  display: 0
  average_loss: 5
  test_iter: 2
layers:
  - {{name: data, type: data, top: [data, label]}}
  - {{name: conv1, type: conv, bottom: data, top: conv1, num_output: {}, kernel: 3, weight_filler: {{type: xavier}},
     bias_filler: {{type: constant, value: 0.1}}}}
  - {{name: relu1, type: relu, bottom: conv1, top: relu1}}
  - {{name: fc1, type: fc, bottom: relu1, top: fc1, num_output: {}, weight_filler: {{type: xavier}}}}
)",
                              conv_out, extra_fc ? 6 : 4);
  if (extra_fc) y += "  - {name: fc2, type: fc, bottom: fc1, top: fc2, num_output: 4, weight_filler: {type: xavier}}\n";
  y += fmt::format("  - {{name: loss, type: softmax_loss, bottom: [{}, label], top: loss}}\n", extra_fc ? "fc2" : "fc1");
  return y;
}

std::unique_ptr<Solver> make_solver(const std::string& yaml = net_yaml(), uint64_t seed = 1,
                                    Device dev = Device::cpu()) {
  return testing::quiet_solver(yaml, "snapnet.yaml", seed, dev);
}

bool bits_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Everything a resumed run must reproduce.
struct SolverImage {
  int64_t iter;
  std::vector<float> params, history, losses;
  std::vector<std::vector<int64_t>> sources;

  explicit SolverImage(Solver& s) : iter(s.iter()) {
    params = s.train_net().param_values().to_host();
    history = s.history().to_host();
    losses = s.loss_window();
    for (BatchSource* b : s.train_net().sources()) sources.push_back(b->state());
    if (s.test_net())
      for (BatchSource* b : s.test_net()->sources()) sources.push_back(b->state());
  }
  void expect_eq(const SolverImage& o, const std::string& what) const {
    EXPECT_EQ(iter, o.iter) << what;
    EXPECT_TRUE(bits_equal(params, o.params)) << what << ": parameters differ";
    EXPECT_TRUE(bits_equal(history, o.history)) << what << ": momentum history differs";
    EXPECT_TRUE(bits_equal(losses, o.losses)) << what << ": loss window differs";
    EXPECT_EQ(sources, o.sources) << what << ": data cursors differ";
  }
};

constexpr int64_t kN = 11;  // crosses an epoch boundary (64 samples / batch 8)

// B: N iterations, a test pass (moves the TEST cursor), snapshot.
std::unique_ptr<Solver> trained_and_saved(const TempDir& dir, int64_t keep_last = 0) {
  auto b = make_solver();
  b->step(kN);
  b->test(3);
  save_snapshot(*b, dir.str(), "snap", keep_last);
  return b;
}

TEST(Snapshot, ResumeIsBitIdenticalToStraightTraining) {
  TempDir dir;
  auto a = make_solver();
  a->step(kN);
  a->test(3);
  a->step(kN);
  const SolverImage straight(*a);
  const auto straight_test = a->test(2);

  auto b = trained_and_saved(dir);
  const SolverImage saved(*b);
  ASSERT_EQ(saved.losses.size(), 5u);

  for (const std::string& from : {dir.str(), dir.file("snap_iter_11.solverstate"), dir.file("snap_iter_11.safetensors")}) {
    SCOPED_TRACE(from);
    auto c = make_solver();
    const SolverImage fresh(*c);
    ASSERT_FALSE(bits_equal(fresh.params, saved.params)) << "the test needs a state that differs from the init";
    restore_snapshot(*c, from);
    SolverImage(*c).expect_eq(saved, "right after restore");
    c->step(kN);
    SolverImage(*c).expect_eq(straight, "after N more iterations");
    EXPECT_EQ(c->test(2), straight_test);
  }
  // Without the restore the runs differ (the comparison above can fail).
  auto d = make_solver();
  d->step(kN);
  EXPECT_FALSE(bits_equal(SolverImage(*d).params, straight.params));
}

// A DropIn layer in the middle of its gradual schedule (p = 0.3 at the snapshot) and a dropout
// layer: their masks are functions of (seed, layer, iteration), so the resumed run reproduces them.
std::string dropin_yaml() {
  return R"(name: dropinnet
data:
  train: {source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 64, batch_size: 8, shuffle: true,
          scale: 0.00390625}
solver: {base_lr: 0.05, momentum: 0.9, lr_policy: inv, gamma: 0.01, power: 0.75, max_iter: 1000, display: 0,
         average_loss: 3}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 4, kernel: 3, pad: 1, weight_filler: {type: xavier}}
  - {name: relu1, type: relu, bottom: conv1, top: relu1}
  - {name: conv2, type: conv, bottom: relu1, top: conv2, num_output: 4, kernel: 3, pad: 1,
     weight_filler: {type: xavier}}
  - {name: relu2, type: relu, bottom: conv2, top: relu2}
  - {name: grow, type: dropin, bottom: [relu1, relu2], top: grow, mode: gradual, start: 5, length: 20}
  - {name: drop, type: dropout, bottom: grow, top: drop, ratio: 0.3}
  - {name: fc1, type: fc, bottom: drop, top: fc1, num_output: 4, weight_filler: {type: xavier}}
  - {name: loss, type: softmax_loss, bottom: [fc1, label], top: loss}
)";
}

TEST(Snapshot, ResumeMidDropinScheduleIsBitIdentical) {
  TempDir dir;
  auto a = make_solver(dropin_yaml());
  a->step(2 * kN);
  auto b = make_solver(dropin_yaml());
  b->step(kN);
  save_snapshot(*b, dir.str(), "dropin", 0);
  auto c = make_solver(dropin_yaml());
  restore_snapshot(*c, dir.str());
  SolverImage(*c).expect_eq(SolverImage(*b), "right after restore");
  c->step(kN);
  SolverImage(*c).expect_eq(SolverImage(*a), "after N more iterations");
}

TEST(Snapshot, WeightsFileIsPlainSafetensorsNamedByParameter) {
  TempDir dir;
  auto b = trained_and_saved(dir);
  SafeTensors w = SafeTensors::read(dir.file("snap_iter_11.safetensors"));
  w.verify_checksums(true);
  EXPECT_EQ(w.meta("format"), "dropnet-weights-v1");
  std::vector<float> arena = b->train_net().param_values().to_host();
  ASSERT_EQ(w.tensors().size(), b->train_net().params().size());
  for (const ParamRef& r : b->train_net().params()) {
    const StTensorInfo* t = w.find(r.name);
    ASSERT_NE(t, nullptr) << r.name;
    EXPECT_EQ(t->shape, b->train_net().layer(r.layer).param_specs()[r.index].shape.dims());
    std::vector<float> v = w.floats(*t);
    EXPECT_TRUE(bits_equal(v, std::vector<float>(arena.begin() + r.offset, arena.begin() + r.offset + r.count)));
  }
  EXPECT_NE(w.find("conv1.weight"), nullptr);
  EXPECT_EQ(w.find("conv1.weight")->shape, (std::vector<int64_t>{4, 1, 3, 3}));
  EXPECT_EQ(read_file(dir.file("latest")), "snap_iter_11.solverstate\n");
  for (const auto& e : fs::directory_iterator(dir.str())) EXPECT_FALSE(is_temp_file_name(e.path().filename().string()));
}

TEST(Snapshot, AnotherNetsSnapshotIsRefusedNamingTheParameter) {
  TempDir dir;
  trained_and_saved(dir);
  auto other = make_solver(net_yaml(6));
  const SolverImage before(*other);
  std::string msg = input_error_of([&] { restore_snapshot(*other, dir.str()); });
  EXPECT_NE(msg.find("another net"), std::string::npos) << msg;
  EXPECT_NE(msg.find("conv1.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 1, 3, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[6, 1, 3, 3]"), std::string::npos) << msg;
  SolverImage(*other).expect_eq(before, "after a refused restore");

  auto deeper = make_solver(net_yaml(4, true));
  msg = input_error_of([&] { restore_snapshot(*deeper, dir.str()); });
  EXPECT_NE(msg.find("another net"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fc1.weight"), std::string::npos) << msg;  // fc1 is 4x... vs 6x...
}

TEST(Snapshot, SeedMismatchIsRefused) {
  TempDir dir;
  trained_and_saved(dir);
  auto c = make_solver(net_yaml(), 2);
  std::string msg = input_error_of([&] { restore_snapshot(*c, dir.str()); });
  EXPECT_NE(msg.find("seed 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("seed 2"), std::string::npos) << msg;
}

TEST(Snapshot, WeightsWhereSolverStateIsExpectedAreRefused) {
  TempDir dir;
  trained_and_saved(dir);
  auto c = make_solver();
  const SolverImage before(*c);
  fs::copy_file(dir.file("snap_iter_11.safetensors"), dir.file("renamed.solverstate"));
  std::string msg = input_error_of([&] { restore_snapshot(*c, dir.file("renamed.solverstate")); });
  EXPECT_NE(msg.find("is a weights file"), std::string::npos) << msg;
  fs::copy_file(dir.file("snap_iter_11.safetensors"), dir.file("alone.safetensors"));
  msg = input_error_of([&] { restore_snapshot(*c, dir.file("alone.safetensors")); });
  EXPECT_NE(msg.find("is a weights file"), std::string::npos) << msg;
  EXPECT_NE(msg.find("alone.solverstate"), std::string::npos) << msg;
  msg = input_error_of([&] { load_weights(c->train_net(), dir.file("snap_iter_11.solverstate")); });
  EXPECT_NE(msg.find("is a solver state"), std::string::npos) << msg;
  msg = input_error_of([&] { restore_snapshot(*c, dir.file("nothing.solverstate")); });
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
  SolverImage(*c).expect_eq(before, "after refused restores");
}

TEST(Snapshot, TruncatedFilesAreRefused) {
  TempDir dir;
  trained_and_saved(dir);
  const std::string state = read_file(dir.file("snap_iter_11.solverstate"));
  const std::string weights = read_file(dir.file("snap_iter_11.safetensors"));
  auto c = make_solver();
  const SolverImage before(*c);
  for (bool cut_state : {true, false}) {
    const std::string& full = cut_state ? state : weights;
    const std::string path = dir.file(cut_state ? "snap_iter_11.solverstate" : "snap_iter_11.safetensors");
    for (size_t len : {size_t{0}, size_t{5}, size_t{8}, size_t{40}, full.size() / 2, full.size() - 1}) {
      SCOPED_TRACE(fmt::format("{} cut to {} bytes", path, len));
      write_file_atomic(path, std::string_view(full).substr(0, len));
      std::string msg = input_error_of([&] { restore_snapshot(*c, dir.str()); });
      EXPECT_NE(msg.find(path), std::string::npos) << "the message names the file: " << msg;
    }
    write_file_atomic(path, full);
  }
  SolverImage(*c).expect_eq(before, "after refused restores");
  restore_snapshot(*c, dir.str());  // the intact pair still loads
  EXPECT_EQ(c->iter(), kN);
}

// Issue 17: a corrupt newest snapshot was refused without a word about the older intact one.
// Resuming from the run directory now falls back to the newest intact snapshot (with a warning
// naming the refused one); an explicit file is exactly that file, and its error says how to fall back.
TEST(Snapshot, ResumeFallsBackToTheNewestIntactSnapshot) {
  TempDir dir;
  auto b = trained_and_saved(dir);  // snap_iter_11
  const SolverImage at11(*b);
  b->step(4);
  save_snapshot(*b, dir.str(), "snap", 0);  // snap_iter_15, `latest`
  const std::string newest = dir.file("snap_iter_15.solverstate");
  std::string bytes = read_file(newest);
  bytes[bytes.size() / 2] ^= 0x20;
  write_file_atomic(newest, bytes);
  auto c = make_solver();
  restore_snapshot(*c, dir.str());
  SolverImage(*c).expect_eq(at11, "fell back to snap_iter_11");
  // The explicit corrupt file is refused, naming it and the way to fall back.
  auto d = make_solver();
  std::string msg = input_error_of([&] { restore_snapshot(*d, newest); });
  EXPECT_NE(msg.find(newest), std::string::npos) << msg;
  EXPECT_NE(msg.find("pass the run directory to --resume"), std::string::npos) << msg;
  // Nothing intact: the newest's error, and that no older one is intact.
  bytes = read_file(dir.file("snap_iter_11.safetensors"));
  bytes[bytes.size() - 3] ^= 0x01;
  write_file_atomic(dir.file("snap_iter_11.safetensors"), bytes);
  auto e = make_solver();
  msg = input_error_of([&] { restore_snapshot(*e, dir.str()); });
  EXPECT_NE(msg.find(newest), std::string::npos) << msg;
  EXPECT_NE(msg.find("and no older snapshot in"), std::string::npos) << msg;
}

TEST(Snapshot, StateAndWeightsFromDifferentSnapshotsAreRefused) {
  TempDir dir;
  auto b = trained_and_saved(dir);
  b->step(1);
  save_snapshot(*b, dir.str(), "snap", 0);
  fs::copy_file(dir.file("snap_iter_12.safetensors"), dir.file("snap_iter_11.safetensors"),
                fs::copy_options::overwrite_existing);
  auto c = make_solver();
  std::string msg = input_error_of([&] { restore_snapshot(*c, dir.file("snap_iter_11.solverstate")); });
  EXPECT_NE(msg.find("does not match the solver state"), std::string::npos) << msg;
}

// A source that refuses its cursor fails the restore after validation; nothing may change.
TEST(Snapshot, RefusedSourceStateLeavesTheSolverUntouched) {
  TempDir dir;
  trained_and_saved(dir);
  const std::string path = dir.file("snap_iter_11.solverstate");
  SafeTensors s = SafeTensors::read(path);
  std::vector<float> history = s.floats(*s.find("history")), losses = s.floats(*s.find("loss_window"));
  std::vector<std::vector<int64_t>> srcs;
  std::vector<StTensorOut> out{{"history", StDtype::F32, {static_cast<int64_t>(history.size())}, history.data()},
                               {"loss_window", StDtype::F32, {static_cast<int64_t>(losses.size())}, losses.data()}};
  for (const auto& t : s.tensors())
    if (t.name.rfind("source.", 0) == 0) srcs.push_back(s.int64s(t));
  ASSERT_EQ(srcs.size(), 2u);
  srcs[1] = {0, 1000000};  // the TEST cursor (restored last) far past the shard
  out.push_back({"source.train.0", StDtype::I64, {static_cast<int64_t>(srcs[0].size())}, srcs[0].data()});
  out.push_back({"source.test.0", StDtype::I64, {static_cast<int64_t>(srcs[1].size())}, srcs[1].data()});
  auto meta = s.metadata();
  meta.erase("crc32");
  meta.erase("file_crc32");
  write_safetensors(path, out, meta);

  auto c = make_solver();
  c->step(2);
  const SolverImage before(*c);
  input_error_of([&] { restore_snapshot(*c, dir.str()); });
  SolverImage(*c).expect_eq(before, "after a restore refused by a source");
}

TEST(Snapshot, LoadWeightsByNameWithShapeChecks) {
  TempDir dir;
  auto b = trained_and_saved(dir);
  const std::string wpath = dir.file("snap_iter_11.safetensors");
  auto c = make_solver(net_yaml(), 7);  // another init
  load_weights(c->train_net(), wpath);
  EXPECT_TRUE(bits_equal(c->train_net().param_values().to_host(), b->train_net().param_values().to_host()));
  EXPECT_EQ(c->iter(), 0);

  // Shape mismatch: names the layer, the parameter and both shapes; nothing is loaded.
  auto wide = make_solver(net_yaml(6));
  const std::vector<float> init = wide->train_net().param_values().to_host();
  std::string msg = input_error_of([&] { load_weights(wide->train_net(), wpath); });
  EXPECT_NE(msg.find("'conv1.weight' of layer 'conv1'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 1, 3, 3] in the file but [6, 1, 3, 3] in the net"), std::string::npos) << msg;
  EXPECT_TRUE(bits_equal(wide->train_net().param_values().to_host(), init));

  // Missing parameters are listed.
  auto deeper = make_solver(net_yaml(4, true));
  // fc1 is 6 wide there; give it a file with fc1 4x... -> shape error first. Use a file without fc1/fc2.
  SafeTensors w = SafeTensors::read(wpath);
  std::vector<float> cw = w.floats(*w.find("conv1.weight")), cb = w.floats(*w.find("conv1.bias"));
  std::vector<float> extra(3, 1.f);
  write_safetensors(dir.file("partial.safetensors"),
                    {{"conv1.weight", StDtype::F32, {4, 1, 3, 3}, cw.data()}, {"conv1.bias", StDtype::F32, {4}, cb.data()}},
                    {});
  msg = input_error_of([&] { load_weights(deeper->train_net(), dir.file("partial.safetensors")); });
  EXPECT_NE(msg.find("lacks 4 parameter(s)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fc1.weight, fc1.bias, fc2.weight, fc2.bias"), std::string::npos) << msg;

  // Extra tensors are ignored (logged).
  std::vector<StTensorOut> all;
  std::vector<std::vector<float>> keep;
  for (const auto& t : w.tensors()) {
    keep.push_back(w.floats(t));
    all.push_back({t.name, StDtype::F32, t.shape, keep.back().data()});
  }
  all.push_back({"unused.weight", StDtype::F32, {3}, extra.data()});
  write_safetensors(dir.file("extra.safetensors"), all, {});
  auto e = make_solver(net_yaml(), 9);
  load_weights(e->train_net(), dir.file("extra.safetensors"));
  EXPECT_TRUE(bits_equal(e->train_net().param_values().to_host(), b->train_net().param_values().to_host()));
}

TEST(Snapshot, KeepLastLatestAndTemporaryFiles) {
  TempDir dir;
  auto b = make_solver();
  for (int i = 0; i < 5; ++i) {
    b->step(1);
    save_snapshot(*b, dir.str(), "snap", 2);
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.str())) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"latest", "snap_iter_4.safetensors", "snap_iter_4.solverstate",
                                             "snap_iter_5.safetensors", "snap_iter_5.solverstate"}));
  EXPECT_EQ(read_file(dir.file("latest")), "snap_iter_5.solverstate\n");

  // A temporary file left by a crash is never taken for a snapshot.
  fs::copy_file(dir.file("snap_iter_4.solverstate"), dir.file(".tmp-1-0-snap_iter_9.solverstate"));
  auto c = make_solver();
  restore_snapshot(*c, dir.str());
  EXPECT_EQ(c->iter(), 5);
  // A `latest` that names a temporary file, a path outside, or is missing: refused (with a warning
  // naming why) in favour of the newest intact snapshot, never the temporary file (iteration 9).
  for (const char* latest : {".tmp-1-0-snap_iter_9.solverstate\n", "../elsewhere.solverstate\n", ""}) {
    SCOPED_TRACE(latest);
    if (*latest) write_file_atomic(dir.file("latest"), latest);
    else fs::remove(dir.file("latest"));
    auto r = make_solver();
    restore_snapshot(*r, dir.str());
    EXPECT_EQ(r->iter(), 5);
  }
  // With no intact snapshot left, the pointer's own error.
  write_file_atomic(dir.file("latest"), ".tmp-1-0-snap_iter_9.solverstate\n");
  fs::remove(dir.file("snap_iter_4.solverstate"));
  fs::remove(dir.file("snap_iter_5.solverstate"));
  std::string msg = input_error_of([&] { restore_snapshot(*c, dir.str()); });
  EXPECT_NE(msg.find("temporary file"), std::string::npos) << msg;
  EXPECT_NE(msg.find("and no older snapshot"), std::string::npos) << msg;
  fs::remove(dir.file("latest"));
  msg = input_error_of([&] { restore_snapshot(*c, dir.str()); });
  EXPECT_NE(msg.find("has no 'latest'"), std::string::npos) << msg;
}

// ---- starting from another net's weights (dropnet-train --weights, Caffe's fine-tuning) --------

// A deeper relative of net_yaml(): its conv1 is called conv1_1 (num_output `conv_out`), a conv1_2
// follows it, fc1 as there, and an fc2 before the loss.
std::string deeper_yaml(int conv_out = 4) {
  std::string y = net_yaml();
  y = y.substr(0, y.find("layers:\n"));
  y += fmt::format(R"(layers:
  - {{name: data, type: data, top: [data, label]}}
  - {{name: conv1_1, type: conv, bottom: data, top: conv1_1, num_output: {}, kernel: 3,
     weight_filler: {{type: xavier}}, bias_filler: {{type: constant, value: 0.1}}}}
  - {{name: relu1, type: relu, bottom: conv1_1, top: relu1}}
  - {{name: conv1_2, type: conv, bottom: relu1, top: conv1_2, num_output: 4, kernel: 3, pad: 1,
     weight_filler: {{type: gaussian, std: 0.1}}, bias_filler: {{type: constant, value: 0.2}}}}
  - {{name: relu1_2, type: relu, bottom: conv1_2, top: relu1_2}}
  - {{name: fc1, type: fc, bottom: relu1_2, top: fc1, num_output: 4, weight_filler: {{type: xavier}}}}
  - {{name: fc2, type: fc, bottom: fc1, top: fc2, num_output: 4, weight_filler: {{type: xavier}}}}
  - {{name: loss, type: softmax_loss, bottom: [fc2, label], top: loss}}
)",
                   conv_out);
  return y;
}

// A parameter's values, by name.
std::vector<float> param_values(Net& net, const std::string& name) {
  const std::vector<float> arena = net.param_values().to_host();
  for (const ParamRef& r : net.params())
    if (r.name == name) return std::vector<float>(arena.begin() + r.offset, arena.begin() + r.offset + r.count);
  ADD_FAILURE() << "no parameter " << name;
  return {};
}

using Names = std::vector<std::string>;

WeightsMapEntry entry(const std::string& from, const std::string& to) {
  return {from, to, fmt::format("--weights-map '{}={}'", from, to)};
}

TEST(WeightTransfer, DeeperNetTakesWhatMatchesAndKeepsTheRestAtItsFillerInit) {
  TempDir dir;
  auto small = trained_and_saved(dir);
  const std::string wpath = dir.file("snap_iter_11.safetensors");
  auto init = make_solver(deeper_yaml(), 7);  // what the fillers give the deeper net
  auto deep = make_solver(deeper_yaml(), 7);

  // By name alone: only fc1 matches; the file's conv1 goes unused.
  WeightTransfer t = load_weights(deep->train_net(), wpath, {});
  EXPECT_EQ(t.loaded, (Names{"fc1.weight", "fc1.bias"}));
  EXPECT_EQ(t.sources, (Names{"fc1.weight", "fc1.bias"}));
  EXPECT_EQ(t.fresh, (Names{"conv1_1.weight", "conv1_1.bias", "conv1_2.weight", "conv1_2.bias", "fc2.weight",
                            "fc2.bias"}));
  EXPECT_EQ(t.unused, (Names{"conv1.weight", "conv1.bias"}));
  EXPECT_TRUE(bits_equal(param_values(deep->train_net(), "fc1.weight"), param_values(small->train_net(), "fc1.weight")));
  EXPECT_TRUE(bits_equal(param_values(deep->train_net(), "conv1_1.weight"),
                         param_values(init->train_net(), "conv1_1.weight")));

  // With the map conv1=conv1_1: the file's conv1 (weight and bias) starts the net's conv1_1.
  deep = make_solver(deeper_yaml(), 7);
  WeightsOptions wo;
  wo.map = {entry("conv1", "conv1_1")};
  t = load_weights(deep->train_net(), wpath, wo);
  EXPECT_EQ(t.loaded, (Names{"conv1_1.weight", "conv1_1.bias", "fc1.weight", "fc1.bias"}));
  EXPECT_EQ(t.sources, (Names{"conv1.weight", "conv1.bias", "fc1.weight", "fc1.bias"}));
  EXPECT_EQ(t.fresh, (Names{"conv1_2.weight", "conv1_2.bias", "fc2.weight", "fc2.bias"}));
  EXPECT_TRUE(t.unused.empty());
  for (const auto& [to, from] : {std::pair{"conv1_1.weight", "conv1.weight"}, {"conv1_1.bias", "conv1.bias"},
                                 {"fc1.weight", "fc1.weight"}, {"fc1.bias", "fc1.bias"}})
    EXPECT_TRUE(bits_equal(param_values(deep->train_net(), to), param_values(small->train_net(), from))) << to;
  for (const char* n : {"conv1_2.weight", "conv1_2.bias", "fc2.weight", "fc2.bias"})
    EXPECT_TRUE(bits_equal(param_values(deep->train_net(), n), param_values(init->train_net(), n))) << n;
  // The trained values are not the filler's (else the checks above prove nothing).
  EXPECT_FALSE(bits_equal(param_values(deep->train_net(), "conv1_1.weight"),
                          param_values(init->train_net(), "conv1_1.weight")));

  const std::vector<std::string> lines = t.summary();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "loaded from '" + wpath + "': 4 parameters of 2 layers: conv1_1 <- conv1, fc1");
  EXPECT_EQ(lines[1], "new (left at their filler init): 4 parameters of 2 layers: conv1_2, fc2");
  EXPECT_EQ(lines[2], "unused in the file: none");
}

TEST(WeightTransfer, SummaryGroupsByLayerAndClipsLongLists) {
  WeightTransfer t;
  t.path = "w.safetensors";
  for (int i = 0; i < 200; ++i)
    for (const char* p : {"weight", "bias"}) {
      t.loaded.push_back(fmt::format("conv{}.{}", i, p));
      t.sources.push_back(fmt::format("conv{}.{}", i, p));
    }
  // fc1 split: its weight in the file, its bias not; the file's fc9 unused, and fc8's bias only.
  t.loaded.push_back("fc1.weight");
  t.sources.push_back("fc0.weight");
  t.fresh = {"fc1.bias", "fc2.weight", "fc2.bias"};
  t.unused = {"fc9.weight", "fc9.bias", "fc0.bias"};
  const std::vector<std::string> lines = t.summary(3);
  EXPECT_EQ(lines[0], "loaded from 'w.safetensors': 401 parameters of 201 layers: conv0, conv1, conv2, ... (+198 more)");
  EXPECT_LT(lines[0].size(), 120u);
  const std::string all = t.summary(1000)[0], tail = "conv198, conv199, fc1.weight <- fc0.weight";
  ASSERT_GT(all.size(), tail.size());
  EXPECT_EQ(all.substr(all.size() - tail.size()), tail);
  EXPECT_EQ(lines[1], "new (left at their filler init): 3 parameters of 2 layers: fc1.bias, fc2");
  EXPECT_EQ(lines[2], "unused in the file: 3 tensors of 2 layers: fc9, fc0.bias");
}

TEST(WeightTransfer, ShapeMismatchNamesBothParametersAndShapesAndLoadsNothing) {
  TempDir dir;
  trained_and_saved(dir);
  const std::string wpath = dir.file("snap_iter_11.safetensors");
  auto wide = make_solver(deeper_yaml(6), 7);
  const std::vector<float> before = wide->train_net().param_values().to_host();
  WeightsOptions wo;
  wo.map = {entry("conv1", "conv1_1")};
  std::string msg = input_error_of([&] { load_weights(wide->train_net(), wpath, wo); });
  EXPECT_NE(msg.find("the file's 'conv1.weight' has shape [4, 1, 3, 3] but the net's 'conv1_1.weight' has shape "
                     "[6, 1, 3, 3]"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("(mapped by --weights-map 'conv1=conv1_1')"), std::string::npos) << msg;
  EXPECT_TRUE(bits_equal(wide->train_net().param_values().to_host(), before)) << "fc1 matched, yet nothing loads";

  // By name: the same names, and how to start that layer afresh instead.
  auto w6 = make_solver(net_yaml(6), 7);
  msg = input_error_of([&] { load_weights(w6->train_net(), wpath, {}); });
  EXPECT_NE(msg.find("the file's 'conv1.weight' has shape [4, 1, 3, 3] but the net's 'conv1.weight' has shape "
                     "[6, 1, 3, 3]"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("to start layer 'conv1' from its filler instead"), std::string::npos) << msg;

  // fc1 [4, 144] mapped onto fc2 [4, 4].
  auto deep = make_solver(deeper_yaml(), 7);
  wo.map = {entry("fc1", "fc2")};
  msg = input_error_of([&] { load_weights(deep->train_net(), wpath, wo); });
  EXPECT_NE(msg.find("'fc1.weight' has shape [4, 144] but the net's 'fc2.weight' has shape [4, 4]"), std::string::npos)
      << msg;
}

TEST(WeightTransfer, MapNamingAMissingLayerIsAnError) {
  TempDir dir;
  trained_and_saved(dir);
  const std::string wpath = dir.file("snap_iter_11.safetensors");
  auto deep = make_solver(deeper_yaml(), 7);
  const std::vector<float> before = deep->train_net().param_values().to_host();
  auto fails = [&](std::vector<WeightsMapEntry> map) {
    WeightsOptions wo;
    wo.map = std::move(map);
    return input_error_of([&] { load_weights(deep->train_net(), wpath, wo); });
  };
  std::string msg = fails({entry("conv1", "conv1_1"), entry("conv9", "conv1_2")});
  EXPECT_NE(msg.find("--weights-map 'conv9=conv1_2': the weights file '" + wpath +
                     "' has no layer 'conv9' (its layers: conv1, fc1)"),
            std::string::npos)
      << msg;
  msg = fails({entry("conv1", "conv9_9")});
  EXPECT_NE(msg.find("--weights-map 'conv1=conv9_9': the net has no layer 'conv9_9' (its layers with parameters: "
                     "conv1_1, conv1_2, fc1, fc2)"),
            std::string::npos)
      << msg;
  msg = fails({entry("conv1", "relu1")});
  EXPECT_NE(msg.find("the net's layer 'relu1' has no parameters"), std::string::npos) << msg;
  // Written the other way round: said so.
  msg = fails({entry("conv1_1", "conv1")});
  EXPECT_NE(msg.find("the net has no layer 'conv1'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("reversed?"), std::string::npos) << msg;
  // A net layer with two sources.
  msg = fails({entry("conv1", "conv1_1"), entry("fc1", "conv1_1")});
  EXPECT_NE(msg.find("the net's layer 'conv1_1' is already mapped by --weights-map 'conv1=conv1_1'"),
            std::string::npos)
      << msg;
  EXPECT_TRUE(bits_equal(deep->train_net().param_values().to_host(), before));
}

TEST(WeightTransfer, StrictRefusesMissingAndUnusedParameters) {
  TempDir dir;
  auto small = trained_and_saved(dir);
  const std::string wpath = dir.file("snap_iter_11.safetensors");
  WeightsOptions strict;
  strict.strict = true;
  // The same net: everything loads.
  auto same = make_solver(net_yaml(), 7);
  WeightTransfer t = load_weights(same->train_net(), wpath, strict);
  EXPECT_EQ(t.loaded.size(), 4u);
  EXPECT_TRUE(bits_equal(same->train_net().param_values().to_host(), small->train_net().param_values().to_host()));

  // A deeper net: its new parameters are refused; nothing is loaded.
  auto deep = make_solver(deeper_yaml(), 7);
  const std::vector<float> before = deep->train_net().param_values().to_host();
  std::string msg = input_error_of([&] { load_weights(deep->train_net(), wpath, strict); });
  EXPECT_NE(msg.find("lacks 6 parameters of the net"), std::string::npos) << msg;
  EXPECT_NE(msg.find("conv1_1.weight, conv1_1.bias, conv1_2.weight, conv1_2.bias, fc2.weight, fc2.bias"),
            std::string::npos)
      << msg;
  EXPECT_TRUE(bits_equal(deep->train_net().param_values().to_host(), before));

  // A file with a tensor the net does not take.
  SafeTensors w = SafeTensors::read(wpath);
  std::vector<StTensorOut> all;
  std::vector<std::vector<float>> keep;
  for (const auto& st : w.tensors()) keep.push_back(w.floats(st));
  for (size_t i = 0; i < w.tensors().size(); ++i)
    all.push_back({w.tensors()[i].name, StDtype::F32, w.tensors()[i].shape, keep[i].data()});
  const std::vector<float> extra(3, 1.f);
  all.push_back({"old_head.weight", StDtype::F32, {3}, extra.data()});
  write_safetensors(dir.file("extra.safetensors"), all, {});
  msg = input_error_of([&] { load_weights(same->train_net(), dir.file("extra.safetensors"), strict); });
  EXPECT_NE(msg.find("holds 1 tensor the net does not take"), std::string::npos) << msg;
  EXPECT_NE(msg.find("old_head.weight"), std::string::npos) << msg;
  // Not strict: the extra tensor is only reported.
  t = load_weights(same->train_net(), dir.file("extra.safetensors"), {});
  EXPECT_EQ(t.unused, (Names{"old_head.weight"}));
  EXPECT_TRUE(t.fresh.empty());
}

TEST(WeightTransfer, CommandLineMapIsParsedStrictly) {
  const auto m = parse_weights_map("conv1=conv1_1, conv2 = conv2_1");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[1].file_layer, "conv2");
  EXPECT_EQ(m[1].net_layer, "conv2_1");
  EXPECT_EQ(m[1].origin, "--weights-map 'conv2=conv2_1'");
  const std::pair<const char*, const char*> bad[] = {
      {"conv1", "entry 'conv1' has no '='"},
      {"conv1=conv1_1,,conv2=conv2_1", "an empty entry"},
      {"conv1=conv1_1,", "an empty entry"},
      {"=conv1_1", "entry '=conv1_1' has an empty file layer name"},
      {"conv1=", "entry 'conv1=' has an empty net layer name"},
      {"a=b=c", "more than one '='"},
      {"conv1=x,conv2=x", "the net's layer 'x' is the target of two entries, 'conv1=x' and 'conv2=x'"},
      {" ", "empty map"},
  };
  for (const auto& [text, want] : bad) {
    const std::string msg = input_error_of([&] { parse_weights_map(text); });
    EXPECT_NE(msg.find(want), std::string::npos) << text << ": " << msg;
    EXPECT_EQ(msg.rfind("--weights-map", 0), 0u) << msg;
  }
  // The command line on top of the config: an entry naming the same file or net layer replaces.
  const auto merged = merge_weights_maps({entry("conv1", "conv1_1"), entry("conv2", "conv2_1"), entry("fc1", "fc1")},
                                         {entry("conv1", "conv1_2"), entry("conv3", "conv2_1")});
  std::vector<std::string> got;
  for (const auto& e : merged) got.push_back(e.file_layer + "=" + e.net_layer);
  EXPECT_EQ(got, (Names{"fc1=fc1", "conv1=conv1_2", "conv3=conv2_1"}));
}

TEST(WeightTransfer, ConfigKeyWeightsMapWithFileLineErrors) {
  auto settings = [](const std::string& map_yaml) {
    std::string y = net_yaml();
    y.insert(y.find("layers:\n"), map_yaml);
    return cli::read_run_settings(load_config_text(y, "run.yaml"));
  };
  const cli::RunSettings s = settings("weights_map: {conv1: conv1_1, fc9: fc1}\n");
  ASSERT_EQ(s.weights_map.size(), 2u);
  EXPECT_EQ(s.weights_map[0].file_layer, "conv1");
  EXPECT_EQ(s.weights_map[0].net_layer, "conv1_1");
  EXPECT_EQ(s.weights_map[1].origin, "run.yaml:17:36: weights_map.fc9");
  EXPECT_TRUE(settings("").weights_map.empty());

  std::string msg = input_error_of([&] { settings("weights_map: {conv1: x, conv2: x}\n"); });
  EXPECT_NE(msg.find("run.yaml:17:32: "), std::string::npos) << msg;
  EXPECT_NE(msg.find("weights_map.conv2: the net's layer 'x' is already mapped by 'conv1'"), std::string::npos) << msg;
  msg = input_error_of([&] { settings("weights_map: [conv1, conv1_1]\n"); });
  EXPECT_NE(msg.find("run.yaml:17:14: weights_map: expected a map"), std::string::npos) << msg;
  msg = input_error_of([&] { settings("weights_map: {conv1: {a: b}}\n"); });
  EXPECT_NE(msg.find("weights_map.conv1: expected a string"), std::string::npos) << msg;
  msg = input_error_of([&] { settings("weights_map: {conv1: }\n"); });
  EXPECT_NE(msg.find("weights_map.conv1: expected the name of a layer"), std::string::npos) << msg;

  // A config entry naming a layer the file lacks: the error is its file:line.
  TempDir dir;
  trained_and_saved(dir);
  auto deep = make_solver(deeper_yaml(), 7);
  WeightsOptions wo;
  wo.map = settings("weights_map:\n  conv1: conv1_1\n  conv7: conv1_2\n").weights_map;
  msg = input_error_of([&] { load_weights(deep->train_net(), dir.file("snap_iter_11.safetensors"), wo); });
  EXPECT_EQ(msg.rfind("run.yaml:19:10: weights_map.conv7: the weights file", 0), 0u) << msg;
  EXPECT_NE(msg.find("has no layer 'conv7'"), std::string::npos) << msg;
}

// Issue 16: a snapshot carries the config it was trained with (resolved, and its source and
// overrides, so it loads again) and the run record; read back from the run directory, the state
// file or the weights file; an older snapshot without them says so.
TEST(SnapshotInfo, CarriesTheConfigAndTheRunRecord) {
  TempDir dir;
  const LoadedConfig cfg = load_config_text(net_yaml(), "snapnet.yaml", {"solver.base_lr=0.04", "layers.conv1.num_output=4"});
  SolverOptions so;
  so.net.source_factory = make_batch_source;
  so.quiet = true;
  Solver s(cfg, so);
  s.step(3);
  const RunDescription desc = describe_run(cfg, R"({"host": "h", "threads": 1})");
  const std::string weights = save_snapshot(s, dir.str(), "snap", 0, &desc);
  for (const std::string& path : {dir.str(), dir.file("snap_iter_3.solverstate"), weights}) {
    const SnapshotInfo info = read_snapshot_info(path);
    EXPECT_EQ(info.weights_path, weights) << path;
    EXPECT_EQ(info.state_path, dir.file("snap_iter_3.solverstate")) << path;
    EXPECT_EQ(info.iteration, 3) << path;
    ASSERT_TRUE(info.has_config()) << path;
    EXPECT_EQ(info.run.config, dump_config(cfg));
    EXPECT_EQ(info.run.run, R"({"host": "h", "threads": 1})");
    EXPECT_EQ(info.run.config_overrides, cfg.overrides);
    const LoadedConfig back = snapshot_config(info);
    EXPECT_TRUE(config_differences(cfg, back).empty()) << fmt::format("{}", fmt::join(config_differences(cfg, back), "\n"));
    // More overrides come after the run's own.
    const LoadedConfig changed = snapshot_config(info, {"solver.base_lr=0.03"});
    EXPECT_EQ(config_differences(cfg, changed), std::vector<std::string>{"solver.base_lr: 0.04 vs 0.03"});
  }
  // Any safetensors reader sees the config in the metadata.
  const SafeTensors w = SafeTensors::read(weights);
  EXPECT_EQ(w.meta("config"), dump_config(cfg));
  EXPECT_NE(w.meta("config").find("base_lr: 0.04"), std::string::npos);

  // A snapshot written without a description: no config, and asking for it is an input error.
  s.step(1);
  const std::string bare = save_snapshot(s, dir.str(), "snap", 0);
  const SnapshotInfo old = read_snapshot_info(dir.str());
  EXPECT_EQ(old.weights_path, bare);
  EXPECT_FALSE(old.has_config());
  const std::string msg = input_error_of([&] { snapshot_config(old); });
  EXPECT_NE(msg.find("does not carry the config it was trained with"), std::string::npos) << msg;
  // Not a snapshot: named.
  const std::string junk = dir.file("junk.safetensors");
  write_file_atomic(junk, "not a safetensors file at all");
  EXPECT_NE(input_error_of([&] { read_snapshot_info(junk); }).find(junk), std::string::npos);
  EXPECT_NE(input_error_of([&] { read_snapshot_info(dir.file("nothing.safetensors")); }).find("does not exist"),
            std::string::npos);
}

// A CUDA net restores a CPU snapshot exactly and resumes like a CUDA run straight through.
TEST(Snapshot, CudaRestoresCpuSnapshotAndResumes) {
  DN_REQUIRE_CUDA();
  TempDir dir;
  auto b = trained_and_saved(dir);
  auto g = make_solver(net_yaml(), 1, Device::cuda());
  restore_snapshot(*g, dir.str());
  SolverImage(*g).expect_eq(SolverImage(*b), "CUDA restore of a CPU snapshot");
  TempDir gdir;
  save_snapshot(*g, gdir.str(), "g", 0);
  auto a = make_solver(net_yaml(), 1, Device::cuda());
  restore_snapshot(*a, gdir.str());
  SolverImage(*a).expect_eq(SolverImage(*g), "CUDA save + CUDA restore");
  g->step(kN);
  a->step(kN);
  EXPECT_TRUE(testing::all_close(g->train_net().param_values().to_host(), a->train_net().param_values().to_host(),
                                 0.f, 0.f));
}

}  // namespace
}  // namespace dropnet
