// The practitioner tools' library parts: the net summary (LeNet's parameter count and hand-computed
// FLOPs), synthetic data substitution, per-layer timing without an update, evaluation (top-1/top-5
// against accuracy layers), the progress reporter (TTY line, Caffe-style lines) and the dropout
// ratio schedule used by the width probe.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "data/sources.h"
#include "layers/net.h"
#include "optim/snapshot.h"
#include "optim/solver.h"
#include "kernels/softmax_loss.h"
#include "tests/testing/files.h"
#include "kernels/tile_plan.h"
#include "tools/perf_model.h"
#include "tools/progress.h"
#include "tools/run_support.h"

using namespace dropnet;

namespace {

const std::string kSrc = DROPNET_SOURCE_DIR;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Caffe's LeNet with a synthetic source of MNIST's shape (no dataset needed).
LoadedConfig lenet_synthetic(std::vector<std::string> overrides = {}) {
  overrides.push_back("device=cpu");
  LoadedConfig cfg = load_config_file(kSrc + "/configs/lenet.yaml", overrides);
  use_synthetic_data(cfg);
  return cfg;
}

std::unique_ptr<Solver> make_solver(const LoadedConfig& cfg) {
  SolverOptions so;
  so.net.source_factory = make_batch_source;
  so.quiet = true;
  return std::make_unique<Solver>(cfg, so);
}

const LayerSummary& row(const NetSummary& s, const std::string& name) {
  for (const auto& l : s.layers)
    if (l.name == name) return l;
  throw std::runtime_error("no layer " + name);
}

TEST(Summary, LenetParametersAndHandComputedFlops) {
  LoadedConfig cfg = lenet_synthetic();
  auto solver = make_solver(cfg);
  const NetSummary train = summarize_net(solver->train_net());
  EXPECT_EQ(train.phase, "TRAIN");
  EXPECT_EQ(train.batch, 64);
  EXPECT_EQ(train.total.params, 431080);
  EXPECT_EQ(row(train, "conv1").params, 20 * 1 * 5 * 5 + 20);
  EXPECT_EQ(row(train, "conv2").params, 50 * 20 * 5 * 5 + 50);
  EXPECT_EQ(row(train, "ip1").params, 500 * 800 + 500);
  EXPECT_EQ(row(train, "ip2").params, 10 * 500 + 10);
  // Forward FLOPs per image, multiply-add = 2.
  const double conv1 = 2.0 * 20 * 24 * 24 * 25;       // 576,000
  const double conv2 = 2.0 * 50 * 8 * 8 * (20 * 25);  // 3,200,000
  const double ip1 = 2.0 * 800 * 500;
  const double ip2 = 2.0 * 500 * 10;
  const double pool1 = 20.0 * 12 * 12 * 4;  // one comparison per window element
  const double pool2 = 50.0 * 4 * 4 * 4;
  EXPECT_DOUBLE_EQ(row(train, "conv1").flops_per_image, conv1);
  EXPECT_DOUBLE_EQ(row(train, "conv2").flops_per_image, conv2);
  EXPECT_DOUBLE_EQ(row(train, "ip1").flops_per_image, ip1);
  EXPECT_DOUBLE_EQ(row(train, "ip2").flops_per_image, ip2);
  EXPECT_DOUBLE_EQ(row(train, "pool1").flops_per_image, pool1);
  EXPECT_DOUBLE_EQ(row(train, "pool2").flops_per_image, pool2);
  EXPECT_DOUBLE_EQ(row(train, "conv1").flops, 64 * conv1);
  EXPECT_DOUBLE_EQ(row(train, "relu1").flops, 0.0);
  EXPECT_GE(train.total.flops_per_image, conv1 + conv2 + ip1 + ip2 + pool1 + pool2);
  EXPECT_EQ(row(train, "conv1").top_shape, "(64, 20, 24, 24)");
  EXPECT_EQ(row(train, "data").top_shape, "(64, 1, 28, 28) (64)");
  // TRAIN activations: values + gradients of conv1's top; parameters: 4 bytes each.
  EXPECT_DOUBLE_EQ(row(train, "conv1").act_bytes, 2.0 * 64 * 20 * 24 * 24 * 4);
  EXPECT_DOUBLE_EQ(row(train, "ip1").param_bytes, 400500.0 * 4);
  EXPECT_DOUBLE_EQ(train.total.param_bytes, 431080.0 * 4);

  ASSERT_NE(solver->test_net(), nullptr);
  const NetSummary test = summarize_net(*solver->test_net());
  EXPECT_EQ(test.phase, "TEST");
  EXPECT_EQ(test.batch, 100);
  EXPECT_EQ(test.total.params, 431080);
  EXPECT_DOUBLE_EQ(row(test, "conv2").flops, 100 * conv2);
  EXPECT_DOUBLE_EQ(row(test, "conv1").act_bytes, 100.0 * 20 * 24 * 24 * 4);  // no gradients at TEST
  EXPECT_EQ(row(test, "accuracy").type, "accuracy");
}

TEST(Summary, TextMarkdownAndDefaultsListedOnce) {
  LoadedConfig cfg = lenet_synthetic();
  auto solver = make_solver(cfg);
  const std::string text = format_net_summary(solver->train_net(), solver->test_net(), *cfg.defaults);
  EXPECT_TRUE(contains(text, "TRAIN net 'lenet' (batch 64): 431,080 parameters")) << text;
  EXPECT_TRUE(contains(text, "TEST net 'lenet' (batch 100)")) << text;
  EXPECT_TRUE(contains(text, "defaults filled in:")) << text;
  // Every default appears once: the conv stride default is grouped over both convs.
  EXPECT_TRUE(contains(text, "layers.stride = [1]: conv1, conv2")) << text;
  EXPECT_EQ(text.find("layers.stride"), text.rfind("layers.stride"));
  EXPECT_TRUE(contains(text, "solver.iter_size = 1")) << text;
  SummaryOptions md;
  md.markdown = true;
  md.defaults = false;
  const std::string m = format_net_summary(solver->train_net(), nullptr, *cfg.defaults, md);
  EXPECT_TRUE(contains(m, "| layer | type | top shape | params |")) << m;
  EXPECT_TRUE(contains(m, "| conv1 | conv | (64, 20, 24, 24) | 520 | 576K |")) << m;
  EXPECT_TRUE(contains(m, "| **total** |  |  | 431,080 |")) << m;
  EXPECT_FALSE(contains(m, "defaults filled in"));
  EXPECT_FALSE(contains(m, "TEST net"));
}

TEST(Summary, CompactDefaultsGroupsLayerKeys) {
  DefaultsLog d;
  d.add("solver.iter_size", "1");
  d.add("layers[1](conv1).pad", "[0]");
  d.add("layers[3](conv2).pad", "[0]");
  d.add("layers[3](conv2).group", "1");
  d.add("layers[1](conv1).pad", "[0]");  // a second phase reads it again: listed once
  const std::vector<std::string> c = compact_defaults(d);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0], "solver.iter_size = 1");
  EXPECT_EQ(c[1], "layers.pad = [0]: conv1, conv2");
  EXPECT_EQ(c[2], "layers.group = 1: conv2");
}

TEST(Summary, WithCommas) {
  EXPECT_EQ(with_commas(0), "0");
  EXPECT_EQ(with_commas(999), "999");
  EXPECT_EQ(with_commas(1000), "1,000");
  EXPECT_EQ(with_commas(431080), "431,080");
  EXPECT_EQ(with_commas(-1234567), "-1,234,567");
}

TEST(SyntheticData, KeepsBatchShapeAndTransforms) {
  LoadedConfig cfg = load_config_file(kSrc + "/configs/lenet.yaml", {"data.train.crop=24"});
  use_synthetic_data(cfg);
  YAML::Node tr = cfg.root["data"]["train"];
  EXPECT_EQ(tr["source"].as<std::string>(), "synthetic");
  EXPECT_EQ(tr["batch_size"].as<int>(), 64);
  EXPECT_EQ(tr["crop"].as<int>(), 24);
  EXPECT_DOUBLE_EQ(tr["scale"].as<double>(), 0.00390625);
  EXPECT_EQ(tr["shape"][0].as<int>(), 1);
  EXPECT_EQ(tr["shape"][1].as<int>(), 28);
  EXPECT_FALSE(tr["images"].IsDefined());
  // An explicit shape wins; a source whose shape cannot be known without reading it is an error.
  LoadedConfig c2 = load_config_file(kSrc + "/configs/lenet.yaml");
  use_synthetic_data(c2, "3,32,32");
  EXPECT_EQ(c2.root["data"]["test"]["shape"][0].as<int>(), 3);
  EXPECT_THROW(use_synthetic_data(c2, "3,32"), Error);
  LoadedConfig c3 = load_config_text(
      "name: x\nsolver: {base_lr: 0.1, max_iter: 1}\ndata:\n  train: {source: packed, path: /nonexistent, "
      "batch_size: 2}\nlayers:\n  - {name: data, type: data, top: [data, label]}\n");
  EXPECT_THROW(use_synthetic_data(c3), Error);
  use_synthetic_data(c3, "1,8,8");
  EXPECT_EQ(c3.root["data"]["train"]["source"].as<std::string>(), "synthetic");
}

TEST(TimeNet, PerLayerTimesAndNoUpdate) {
  LoadedConfig cfg = lenet_synthetic({"data.train.batch_size=2"});
  NetOptions no;
  no.source_factory = make_batch_source;
  Net net(cfg, no);
  const std::vector<float> before = net.param_values().to_host();
  NetTiming t = time_net(net, 3, 0, 1);
  EXPECT_EQ(t.batch, 2);
  EXPECT_EQ(t.iterations, 3);
  ASSERT_EQ(static_cast<int>(t.layers.size()), net.num_layers());
  EXPECT_EQ(t.layers[0].name, "data");
  double fwd = 0, bwd = 0;
  for (const auto& l : t.layers) {
    EXPECT_GE(l.forward_ms, 0.0);
    EXPECT_GE(l.backward_ms, 0.0);
    fwd += l.forward_ms;
    bwd += l.backward_ms;
  }
  EXPECT_DOUBLE_EQ(t.forward_ms, fwd);
  EXPECT_DOUBLE_EQ(t.backward_ms, bwd);
  EXPECT_GT(t.total_ms(), 0.0);
  EXPECT_NEAR(t.images_per_s(), 2000.0 / t.total_ms(), 1e-9);
  EXPECT_FALSE(t.layers[0].has_backward);  // the data layer
  EXPECT_TRUE(t.layers[1].has_backward);   // conv1
  EXPECT_EQ(net.param_values().to_host(), before);  // no solver update
  for (float g : net.param_grads().to_host()) ASSERT_EQ(g, 0.f);
  const std::string table = format_timing(t);
  EXPECT_TRUE(contains(table, "Average Forward-Backward")) << table;
  EXPECT_TRUE(contains(table, "conv1")) << table;
  EXPECT_THROW(time_net(net, 0, 0, 1), Error);
}

// A net with accuracy layers for top-1 and top-5 next to the softmax loss, on synthetic data.
const char* kEvalNet = R"(
name: evalnet
solver: {base_lr: 0.1, max_iter: 10, test_iter: 4, test_interval: 0}
data:
  train: {source: synthetic, shape: [3, 4, 4], num_classes: 20, num_samples: 64, batch_size: 8}
  test: {source: synthetic, shape: [3, 4, 4], num_classes: 20, num_samples: 64, batch_size: 16}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: fc, type: fc, bottom: data, top: fc, num_output: 20, weight_filler: {type: gaussian, std: 0.1}}
  - {name: acc1, type: accuracy, bottom: [fc, label], top: acc1, phase: test}
  - {name: acc5, type: accuracy, bottom: [fc, label], top: acc5, top_k: 5, phase: test}
  - {name: loss, type: softmax_loss, bottom: [fc, label], top: loss}
)";

TEST(Evaluate, TopKMatchesAccuracyLayers) {
  LoadedConfig cfg = load_config_text(kEvalNet, "evalnet.yaml");
  auto solver = make_solver(cfg);
  solver->step(10);
  EvalResult r = evaluate_net(*solver->test_net(), 4, solver->iter(), 1);
  EXPECT_EQ(r.batches, 4);
  EXPECT_EQ(r.samples, 64);
  EXPECT_EQ(r.scores_blob, "fc");
  EXPECT_EQ(r.classes, 20);
  ASSERT_TRUE(std::isfinite(r.top1));
  ASSERT_TRUE(std::isfinite(r.top5));
  EXPECT_NEAR(r.top1, r.output("acc1"), 1e-6);
  EXPECT_NEAR(r.top5, r.output("acc5"), 1e-6);
  EXPECT_GE(r.top5, r.top1);
  EXPECT_GT(r.top5, r.top1 + 1e-9) << "top-5 over 20 classes should beat top-1 on random-ish scores";
  EXPECT_NEAR(r.loss, r.output("loss"), 0.0);
  // The mean of the per-batch losses matches the solver's own test loop.
  auto t = solver->test(4);
  for (auto& kv : t) EXPECT_NEAR(kv.second, r.output(kv.first), 1e-6) << kv.first;
  EXPECT_TRUE(std::isnan(r.output("nonexistent")));
}

TEST(Evaluate, NoLossLayerMeansNoTopK) {
  std::string text = kEvalNet;
  text = text.substr(0, text.find("  - {name: loss"));
  LoadedConfig cfg = load_config_text(text, "evalnet_noloss.yaml");
  NetOptions no;
  no.phase = Phase::Test;
  no.source_factory = make_batch_source;
  Net net(cfg, no);
  EvalResult r = evaluate_net(net, 2, 0, 1);
  EXPECT_TRUE(r.scores_blob.empty());
  EXPECT_TRUE(std::isnan(r.top1));
  EXPECT_TRUE(std::isnan(r.loss));
  EXPECT_TRUE(std::isfinite(r.output("acc1")));
}

// Issue 17: NaN scores counted as correct (every comparison with NaN is false, so no class beat
// the true one): a safetensors file with a NaN bias, written by another tool (no dropnet checksum),
// gave top-1 = top-5 = 1. Non-finite scores are wrong answers, and the loss stays NaN.
TEST(Evaluate, NanScoresAreWrongAnswers) {
  dropnet::testing::TempDir dir;
  const std::string path = dir.file("nan_bias.safetensors");
  {
    std::vector<float> w(20 * 48, 0.01f), b(20, std::numeric_limits<float>::quiet_NaN());
    const std::string header =
        "{\"fc.weight\": {\"dtype\": \"F32\", \"shape\": [20, 48], \"data_offsets\": [0, 3840]}, "
        "\"fc.bias\": {\"dtype\": \"F32\", \"shape\": [20], \"data_offsets\": [3840, 3920]}}";
    const uint64_t n = header.size();
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << header;
    f.write(reinterpret_cast<const char*>(w.data()), static_cast<std::streamsize>(w.size() * 4));
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size() * 4));
  }
  LoadedConfig cfg = load_config_text(kEvalNet, "evalnet.yaml");
  NetOptions no;
  no.phase = Phase::Test;
  no.source_factory = make_batch_source;
  Net net(cfg, no);
  load_weights(net, path);
  EvalResult r = evaluate_net(net, 2, 0, 1);
  EXPECT_EQ(r.top1, 0.0);
  EXPECT_EQ(r.top5, 0.0);
  EXPECT_EQ(r.output("acc1"), 0.0);
  EXPECT_EQ(r.output("acc5"), 0.0);
  EXPECT_TRUE(std::isnan(r.loss)) << r.loss;
}

TEST(Evaluate, NonFiniteScoreKernels) {
  // 2 positions x 3 classes, labels 0 and 2.
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  SoftmaxParams p{2, 3, 1, 0, false};
  const std::vector<float> labels = {0.f, 2.f};
  auto acc = [&](std::vector<float> x, int k) {
    float a = -1.f;
    accuracy_forward_cpu(p, k, x.data(), labels.data(), &a);
    return a;
  };
  EXPECT_EQ(acc({3, 1, 2, 0, 1, 5}, 1), 1.f);        // both right
  EXPECT_EQ(acc({nan, nan, nan, 0, 1, 5}, 1), 0.5f); // all-NaN position: wrong
  EXPECT_EQ(acc({3, nan, 2, 0, 1, 5}, 1), 0.5f);     // a NaN rival: wrong too
  EXPECT_EQ(acc({inf, 1, 2, 0, 1, 5}, 1), 0.5f);     // an infinite score: wrong
  EXPECT_EQ(acc({nan, nan, nan, nan, nan, nan}, 3), 0.f);
  std::vector<float> x = {nan, nan, nan, 0, 1, 5}, prob(6);
  float loss = 0.f;
  softmax_loss_forward_cpu(p, x.data(), labels.data(), prob.data(), &loss);
  EXPECT_TRUE(std::isnan(loss)) << "was -log(FLT_MIN) = 87.3 for an all-NaN position: " << loss;
}

TEST(Progress, FormatDuration) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(45.4), "45s");
  EXPECT_EQ(format_duration(192), "3m12s");
  EXPECT_EQ(format_duration(3720), "1h02m");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_duration(NAN), "?");
}

TEST(Progress, CaffeLines) {
  TrainRecord train{"train", 100, {{"loss", 0.3}, {"lr", 0.00992565}, {"images_per_s", 2500}}};
  auto l = Progress::caffe_lines(train);
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[0], "Iteration 100, loss = 0.3");
  EXPECT_EQ(l[1], "    Train net output #0: loss = 0.3 (* 1 = 0.3 loss)");
  EXPECT_EQ(l[2], "Iteration 100, lr = 0.00992565");
  TrainRecord test{"test", 500, {{"accuracy", 0.98}, {"loss", 0.05}}};
  l = Progress::caffe_lines(test);
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[0], "Iteration 500, Testing net (#0)");
  EXPECT_EQ(l[1], "    Test net output #0: accuracy = 0.98");
  EXPECT_EQ(l[2], "    Test net output #1: loss = 0.05");
}

std::string read_all(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  return s;
}

TEST(Progress, TtyLineRedrawsInPlace) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressOptions o;
    o.max_iter = 1000;
    o.tty = true;
    o.width = 200;
    o.out = f;
    Progress p(o);
    p.on_record(TrainRecord{"test", 0, {{"accuracy", 0.1}, {"loss", 2.3}}});
    p.on_record(TrainRecord{"train", 100, {{"loss", 0.25}, {"lr", 0.01}, {"images_per_s", 2400}, {"d1.p", 0.2},
                                           {"d2.p", 0.4}}});
    const std::string line = p.status_line();
    EXPECT_TRUE(contains(line, "iter 100/1000  10%")) << line;
    EXPECT_TRUE(contains(line, "loss 0.2500")) << line;
    EXPECT_TRUE(contains(line, "2400 img/s")) << line;
    EXPECT_TRUE(contains(line, "p 0.20..0.40")) << line;
    EXPECT_TRUE(contains(line, "test acc 0.1000")) << line;
    EXPECT_TRUE(contains(line, "ETA")) << line;
    p.tick(150);
    EXPECT_TRUE(contains(p.status_line(), "iter 150/1000")) << p.status_line();
    // A test in progress moves the line; its record ends it.
    p.testing(3, 50);
    EXPECT_TRUE(contains(p.status_line(), "testing 3/50")) << p.status_line();
    p.on_record(TrainRecord{"test", 150, {{"accuracy", 0.5}}});
    EXPECT_FALSE(contains(p.status_line(), "testing")) << p.status_line();
    EXPECT_TRUE(contains(p.status_line(), "test acc 0.5000")) << p.status_line();
    p.finish();
  }
  const std::string out = read_all(f);
  std::fclose(f);
  EXPECT_EQ(out.rfind("\riter 100/1000", 0), 0u) << out;
  EXPECT_TRUE(contains(out, "\x1b[K")) << out;
  EXPECT_EQ(out.back(), '\n');  // finish() ends the line
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

TEST(Progress, NarrowTerminalTruncates) {
  ProgressOptions o;
  o.max_iter = 10;
  o.tty = true;
  o.width = 30;
  o.out = std::tmpfile();
  Progress p(o);
  p.on_record(TrainRecord{"train", 5, {{"loss", 0.25}, {"lr", 0.01}, {"images_per_s", 2400}}});
  EXPECT_LE(p.status_line().size(), 29u);
  p.finish();
  std::fclose(o.out);
}

TEST(Progress, FiltersSolverTestLinesOnlyInCaffeMode) {
  ProgressOptions o;
  o.out = std::tmpfile();
  Progress plain(o);
  EXPECT_FALSE(plain.filtered("Iteration 500, Testing net: accuracy = 0.98"));
  o.caffe_log = true;
  Progress caffe(o);
  EXPECT_TRUE(caffe.filtered("Iteration 500, Testing net: accuracy = 0.98"));
  EXPECT_FALSE(caffe.filtered("Iteration 500, Testing net (#0)"));
  EXPECT_FALSE(caffe.filtered("snapshot: x"));
  std::fclose(o.out);
}

// dropout ratio_schedule (the width probe's sweep).
const char* kDropNet = R"(
name: dropnet_sched
solver: {base_lr: 0.1, max_iter: 10}
data:
  train: {source: synthetic, shape: [4, 16, 16], num_classes: 10, num_samples: 8, batch_size: 8}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: fc, type: fc, bottom: data, top: fc, num_output: 10, weight_filler: {type: gaussian, std: 0.1},
     bias_filler: {type: constant, value: 1}}
  - {name: drop, type: dropout, bottom: fc, top: dropped, ratio_schedule: {from: 0.9, to: 0.1, length: 100, start: 20}}
  - {name: loss, type: softmax_loss, bottom: [dropped, label], top: loss}
)";

TEST(DropoutSchedule, LinearRatioAndMaskRate) {
  LoadedConfig cfg = load_config_text(kDropNet, "drop.yaml");
  NetOptions no;
  no.source_factory = make_batch_source;
  Net net(cfg, no);
  auto ratio_at = [&](int64_t it) {
    for (auto& m : net.layer_metrics(RunContext{Phase::Train, it, 1, 0}))
      if (m.first == "drop.ratio") return m.second;
    return -1.0;
  };
  EXPECT_NEAR(ratio_at(0), 0.9, 1e-6);
  EXPECT_NEAR(ratio_at(20), 0.9, 1e-6);
  EXPECT_NEAR(ratio_at(70), 0.5, 1e-6);
  EXPECT_NEAR(ratio_at(120), 0.1, 1e-6);
  EXPECT_NEAR(ratio_at(1000), 0.1, 1e-6);
  // The dropped fraction of fc's output follows the schedule (80 outputs x many steps).
  for (auto [it, want] : {std::pair<int64_t, double>{0, 0.9}, {70, 0.5}, {120, 0.1}}) {
    int64_t zeros = 0, total = 0;
    for (uint32_t step = 0; step < 50; ++step) {
      net.forward(RunContext{Phase::Train, it, 1, step});
      for (float v : net.blob("dropped")->value.to_host()) {
        zeros += v == 0.f;
        ++total;
      }
    }
    const double rate = static_cast<double>(zeros) / static_cast<double>(total);
    const double sd = std::sqrt(want * (1 - want) / static_cast<double>(total));
    EXPECT_NEAR(rate, want, 5 * sd + 1e-3) << "iteration " << it;
  }
  // At TEST the layer is the identity.
  net.forward(RunContext{Phase::Test, 0, 1, 0});
  EXPECT_EQ(net.blob("dropped")->value.to_host(), net.blob("fc")->value.to_host());
}

TEST(DropoutSchedule, ConfigErrors) {
  auto load = [](const std::string& drop) {
    std::string t = kDropNet;
    const size_t a = t.find("ratio_schedule"), b = t.find('\n', a);
    t = t.substr(0, a) + drop + t.substr(b);
    LoadedConfig cfg = load_config_text(t, "drop.yaml");
    NetOptions no;
    no.source_factory = make_batch_source;
    Net net(cfg, no);
  };
  EXPECT_NO_THROW(load("ratio: 0.3}"));
  EXPECT_THROW(load("ratio: 0.3, ratio_schedule: {from: 0.9, to: 0.1, length: 10}}"), Error);
  EXPECT_THROW(load("ratio_schedule: {from: 1.0, to: 0.1, length: 10}}"), Error);
  EXPECT_THROW(load("ratio_schedule: {from: 0.9, to: -0.1, length: 10}}"), Error);
  EXPECT_THROW(load("ratio_schedule: {from: 0.9, to: 0.1}}"), Error);             // length required
  EXPECT_THROW(load("ratio_schedule: {from: 0.9, to: 0.1, length: 10, x: 1}}"), Error);  // strict keys
}


// ---- the GPU performance model (dropnet-time --model) ----------------------------------------

// Tile efficiency: full 128 tiles filling exactly one wave of 132 SMs are 1; a row more than a tile
// wastes the rest of its tile row.
TEST(PerfModel, TileEfficiency) {
  const GemmExtent full{GemmPass::Fwd, 128 * 12, 128 * 11, 128, 1, false};  // 132 tiles of 128, K < 512: no split
  EXPECT_DOUBLE_EQ(tile_efficiency(full, 132), 1.0);
  const GemmExtent ragged{GemmPass::Fwd, 128 * 12 + 1, 128 * 11, 128, 1, false};  // 13 tile rows, one almost empty
  const tile_plan::GemmPlan pl = tile_plan::plan_gemm(ragged.m, ragged.n, ragged.k, 132);
  ASSERT_EQ(pl.tile, 128);
  const double useful = (128.0 * 12 + 1) / (128.0 * 13);
  const double blocks = 13.0 * 11, fill = blocks / (2 * 132);  // two waves of 132 resident blocks
  EXPECT_NEAR(tile_efficiency(ragged, 132), useful * fill, 1e-12);
  EXPECT_LT(tile_efficiency(GemmExtent{GemmPass::Fwd, 10, 10, 10, 1, false}, 132), 0.01);  // one tiny block
}

// A net of one large fc and a ReLU: the fc is compute-bound at FLOPs / (peak x 0.75 x tile
// efficiency), the (unfused) ReLU memory-bound at its bytes / (bandwidth x 0.85); bf16 halves the
// bytes and doubles the tensor-core peak of tf32.
TEST(PerfModel, ComputeAndMemoryBoundLayers) {
  const char* text = R"(name: m
data:
  train: {source: synthetic, shape: [1, 48, 32], num_classes: 10, num_samples: 8, batch_size: 1408}
solver: {base_lr: 0.01, max_iter: 1}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: fc, type: fc, bottom: data, top: fc, num_output: 1536}
  - {name: relu, type: relu, bottom: fc, top: r}
  - {name: fc2, type: fc, bottom: r, top: fc2, num_output: 10}
  - {name: loss, type: softmax_loss, bottom: [fc2, label], top: loss}
)";
  LoadedConfig cfg = load_config_text(text, "m.yaml");
  NetOptions no;
  no.source_factory = make_batch_source;
  no.shapes_only = true;
  no.fuse_activations = false;
  Net net(cfg, no);
  const GpuSpec h100 = gpu_spec("h100");
  const NetModel m = model_net(net, h100, Precision::FP32, 0);
  ASSERT_EQ(m.layers.size(), 5u);
  const ModelLayer& fc = m.layers[1];
  const double flops = 2.0 * 1408 * 1536 * 1536;
  const double eff = tile_efficiency(GemmExtent{GemmPass::Fwd, 1408, 1536, 1536, 1, false}, 132);
  EXPECT_TRUE(fc.fwd.compute_bound);
  EXPECT_NEAR(fc.fwd.ms, 1e3 * flops / (67.0e12 * kAttainable * eff), 1e-9);
  EXPECT_NEAR(fc.fwd.flops, flops, 1.0);
  // fc's input comes from the data layer: no data gradient, only the weight gradient.
  EXPECT_NEAR(fc.bwd.flops, flops, 1.0);
  const ModelLayer& relu = m.layers[2];
  EXPECT_FALSE(relu.fwd.compute_bound);
  EXPECT_NEAR(relu.fwd.ms, 1e3 * 2.0 * 1408 * 1536 * 4 / (3350e9 * kAttainableBw), 1e-9);
  EXPECT_NEAR(relu.bwd.ms, 2 * relu.fwd.ms, 1e-12);
  // fc2's data gradient is needed (relu and fc learn below it).
  EXPECT_NEAR(m.layers[3].bwd.flops, 2 * 2.0 * 1408 * 10 * 1536, 1.0);
  const NetModel b = model_net(net, h100, Precision::BF16, 0);
  EXPECT_NEAR(b.layers[2].fwd.ms, relu.fwd.ms / 2, 1e-12);
  EXPECT_NEAR(b.layers[1].fwd.ms, model_net(net, h100, Precision::TF32, 0).layers[1].fwd.ms / 2, 1e-9);
  EXPECT_NEAR(m.total_ms(), m.forward_ms + m.backward_ms, 1e-12);
  const std::string table = format_model(m);
  EXPECT_TRUE(contains(table, "modelled on H100 SXM at fp32 (batch 1408")) << table;
  EXPECT_TRUE(contains(table, "modelled: forward")) << table;
  EXPECT_THROW(gpu_spec("a100"), Error);
}

}  // namespace
