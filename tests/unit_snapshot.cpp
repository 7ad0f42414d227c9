// Snapshots: resuming is bit-identical to training straight through (parameters, momentum, loss
// window, data cursors of both phases); weights load by name with shape checks; another net's,
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
