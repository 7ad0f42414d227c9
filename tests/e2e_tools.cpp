// The practitioner CLIs end to end (run as processes from DROPNET_TOOLS_DIR, which ctest sets):
// dropnet-summary (= dropnet-train --dry-run), dropnet-time on every shipped config, dropnet-test
// on a fresh snapshot, the progress output of dropnet-train (TTY line, log lines, Caffe-style
// lines that Caffe's parse_log.sh can read), a deeper net started from a shallower one's weights
// (--weights, --weights-map, the config's weights_map), plot_metrics.py and both dropnet-probe
// modes on a small Fashion-MNIST schedule.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "core/npy.h"
#include "core/safetensors.h"

namespace fs = std::filesystem;

namespace {

const std::string kSrc = DROPNET_SOURCE_DIR;
const std::string kFashion = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

std::string tools_dir() {
  if (const char* d = std::getenv("DROPNET_TOOLS_DIR")) return d;
  // Run by hand from the build tree: <build>/tests/e2e_tools -> <build>/tools.
  return (fs::canonical("/proc/self/exe").parent_path().parent_path() / "tools").string();
}

std::string tool(const std::string& name) { return tools_dir() + "/" + name; }

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct ProcResult {
  int rc = -1;
  std::string out, err;
};

// Runs `cmd` through the shell; stdout and stderr are captured separately.
ProcResult run(const std::string& cmd) {
  static int counter = 0;
  const fs::path err = fs::temp_directory_path() / ("dropnet_e2e_tools_" + std::to_string(getpid()) + "_" +
                                                    std::to_string(counter++) + ".err");
  ProcResult r;
  std::FILE* p = popen((cmd + " 2>" + err.string()).c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = slurp(err);
  fs::remove(err);
  return r;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A number from flat JSON text: the value after "key": (NaN when absent).
double json_number(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\": ";
  const size_t at = json.find(k);
  if (at == std::string::npos) return NAN;
  return std::strtod(json.c_str() + at + k.size(), nullptr);
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);) out.push_back(l);
  return out;
}

std::vector<std::string> fields(const std::string& line) {
  std::vector<std::string> f;
  std::stringstream ss(line);
  for (std::string w; ss >> w;) f.push_back(w);
  return f;
}

class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(fs::temp_directory_path() / ("dropnet_e2e_tools_" + std::to_string(getpid()) + "_" + name)) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }
  fs::path operator/(const std::string& s) const { return path_ / s; }

 private:
  fs::path path_;
};

#define REQUIRE_FASHION() \
  if (!fs::exists(kFashion)) GTEST_SKIP() << "Fashion-MNIST not installed (dataset-fashion-mnist)"

// ---- dropnet-summary ---------------------------------------------------------------------------

TEST(SummaryCli, LenetMatchesDryRun) {
  REQUIRE_FASHION();
  const std::string cfg = kSrc + "/configs/lenet.yaml";
  ProcResult s = run(tool("dropnet-summary") + " " + cfg);
  ASSERT_EQ(s.rc, 0) << s.err;
  EXPECT_TRUE(contains(s.out, "TRAIN net 'lenet' (batch 64): 431,080 parameters")) << s.out;
  EXPECT_TRUE(contains(s.out, "TEST net 'lenet' (batch 100): 431,080 parameters")) << s.out;
  EXPECT_TRUE(contains(s.out, "defaults filled in:")) << s.out;
  ProcResult d = run(tool("dropnet-train") + " " + cfg + " --dry-run device=cpu");
  ASSERT_EQ(d.rc, 0) << d.err;
  EXPECT_EQ(s.out, d.out) << "dropnet-summary and dropnet-train --dry-run print the same summary";
}

// A summary needs shapes, not data (issue 16): AlexNet-13 without ImageNet on disk, LeNet with a
// missing data file; each missing file is a warning naming its key, and nothing is read.
TEST(SummaryCli, NeedsNoData) {
  ProcResult a = run(tool("dropnet-summary") + " " + kSrc +
                     "/configs/alexnet13.yaml data.train.list=/nonexistent/train.txt data.test.list=/nonexistent/val.txt");
  ASSERT_EQ(a.rc, 0) << a.err;
  EXPECT_TRUE(contains(a.out, "TRAIN net 'alexnet13' (batch 256)")) << a.out;
  EXPECT_TRUE(contains(a.out, "(256, 3, 227, 227)")) << a.out;
  EXPECT_TRUE(contains(a.err, "data.train.list: '/nonexistent/train.txt' does not exist (shapes come from the config "
                              "here; training needs the data)"))
      << a.err;
  ProcResult d = run(tool("dropnet-train") + " " + kSrc +
                     "/configs/lenet.yaml --dry-run device=cpu data.train.images=/nonexistent/img.gz");
  ASSERT_EQ(d.rc, 0) << d.err;
  EXPECT_TRUE(contains(d.out, "(64, 1, 28, 28)")) << d.out;
  EXPECT_TRUE(contains(d.err, "data.train.images: '/nonexistent/img.gz' does not exist")) << d.err;
  EXPECT_TRUE(contains(d.err, "shapes only, nothing read, sample (1, 28, 28), batch 64")) << d.err;
  // A misspelt data key is still an error.
  ProcResult k = run(tool("dropnet-train") + " " + kSrc + "/configs/lenet.yaml --dry-run data.train.shufle=true");
  EXPECT_EQ(k.rc, 2) << k.err;
  EXPECT_TRUE(contains(k.err, "shufle")) << k.err;
}

// The `precision` key from the command line: bf16 is accepted, an unknown value is a config error
// (exit 2) naming the key and the value.
TEST(TrainCli, PrecisionBf16OverrideAndUnknownValueExits2) {
  const std::string cfg = kSrc + "/configs/lenet.yaml";
  ProcResult ok = run(tool("dropnet-train") + " " + cfg + " --dry-run precision=bf16");
  EXPECT_EQ(ok.rc, 0) << ok.err;
  ProcResult bad = run(tool("dropnet-train") + " " + cfg + " --dry-run precision=fp16");
  EXPECT_EQ(bad.rc, 2) << bad.err;
  EXPECT_TRUE(contains(bad.err, "precision")) << bad.err;
  EXPECT_TRUE(contains(bad.err, "'fp16' is not one of: fp32, tf32, bf16")) << bad.err;
}

TEST(SummaryCli, MarkdownBatchAndErrors) {
  const std::string cfg = kSrc + "/configs/lenet10.yaml";
  ProcResult m = run(tool("dropnet-summary") + " " + cfg + " --markdown --synthetic --batch 2 --no-defaults");
  ASSERT_EQ(m.rc, 0) << m.err;
  EXPECT_TRUE(contains(m.out, "**TRAIN net 'lenet10' (batch 2): 535,760 parameters")) << m.out;
  EXPECT_TRUE(contains(m.out, "| conv1_2 | conv | (2, 20, 24, 24) | 3,620 |")) << m.out;
  EXPECT_FALSE(contains(m.out, "defaults filled in")) << m.out;
  ProcResult missing = run(tool("dropnet-summary") + " /nonexistent.yaml");
  EXPECT_EQ(missing.rc, 2);
  EXPECT_TRUE(contains(missing.err, "dropnet-summary: error:")) << missing.err;
  ProcResult bad = run(tool("dropnet-summary") + " " + cfg + " --bogus");
  EXPECT_EQ(bad.rc, 2);
  EXPECT_TRUE(contains(bad.err, "unknown option '--bogus'")) << bad.err;
}

// ---- every shipped config: summary and time (synthetic data, batch 2) -------------------------

std::vector<std::string> shipped_configs() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(kSrc + "/configs", ec))
    if (e.path().extension() == ".yaml") out.push_back(e.path().stem().string());
  std::sort(out.begin(), out.end());
  return out;
}

class EveryConfig : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryConfig, SummaryAndTime) {
  const std::string cfg = kSrc + "/configs/" + GetParam() + ".yaml";
  ProcResult s = run(tool("dropnet-summary") + " " + cfg + " --synthetic --batch 2 --no-defaults");
  ASSERT_EQ(s.rc, 0) << s.err;
  EXPECT_TRUE(contains(s.out, "TRAIN net")) << s.out;
  ProcResult t = run(tool("dropnet-time") + " " + cfg + " --synthetic --batch 2 --iterations 1 --threads 1 --device cpu");
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_TRUE(contains(t.out, "batch 2, 1 iterations")) << t.out;
  EXPECT_TRUE(std::regex_search(t.out, std::regex("Average Forward-Backward: [0-9.]+ ms per iteration, [0-9.]+ images/s")))
      << t.out;
}

INSTANTIATE_TEST_SUITE_P(Configs, EveryConfig, ::testing::ValuesIn(shipped_configs()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// ---- dropnet-time on real data -----------------------------------------------------------------

TEST(TimeCli, LenetPerLayerWithBatchOverride) {
  REQUIRE_FASHION();
  TempDir dir("time");
  const std::string json = (dir / "time.json").string();
  ProcResult t = run(tool("dropnet-time") + " " + kSrc + "/configs/lenet.yaml data.train.batch_size=2 --iterations 3 " +
              "--threads 1 --device cpu --json " + json);
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_TRUE(contains(t.out, "lenet on cpu: batch 2, 3 iterations")) << t.out;
  for (const char* layer : {"data", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "loss"})
    EXPECT_TRUE(std::regex_search(t.out, std::regex(std::string("\n  ") + layer + " +[a-z_]+ +[0-9.]+ ")))
        << layer << "\n" << t.out;
  // ip1's ReLU runs inside ip1's bias pass (Net::fuse_activations); its backward is its own.
  EXPECT_TRUE(std::regex_search(t.out, std::regex("\n  relu1 +relu +fused +[0-9.]+ "))) << t.out;
  const std::string j = slurp(json);
  EXPECT_EQ(json_number(j, "batch"), 2);
  EXPECT_EQ(json_number(j, "iterations"), 3);
  EXPECT_GT(json_number(j, "images_per_s"), 0);
  EXPECT_NEAR(json_number(j, "total_ms"), json_number(j, "forward_ms") + json_number(j, "backward_ms"), 1e-3);
  ProcResult bad = run(tool("dropnet-time") + " " + kSrc + "/configs/lenet.yaml --iterations 0");
  EXPECT_EQ(bad.rc, 2);
}

// dropnet-time --model: AlexNet-13 and VGG16 modelled on an H100 / H200 without their data (no GPU
// here: nothing is timed); every layer has a row; DropIn's deep layers are skipped at iteration 0.
TEST(TimeCli, ModelsAlexnetAndVggWithoutData) {
  for (const std::string net : {"alexnet13", "vgg16"}) {
    SCOPED_TRACE(net);
    ProcResult m = run(tool("dropnet-time") + " " + kSrc + "/configs/" + net + ".yaml --model h100 --device cpu");
    ASSERT_EQ(m.rc, 0) << m.err;
    EXPECT_TRUE(contains(m.out, "modelled on H100 SXM at fp32")) << m.out;
    EXPECT_TRUE(std::regex_search(m.out, std::regex("\nmodelled: forward [0-9.]+ ms, backward [0-9.]+ ms, total [0-9.]+ ms "
                                                     "per iteration, [0-9]+ images/s\n")))
        << m.out;
    EXPECT_TRUE(std::regex_search(m.out, std::regex("\nconv1_1 +conv +[0-9.]+ +[0-9.]+ +compute +[0-9.]+\n"))) << m.out;
  }
  // --device cpu: in the emulated build the default device is the emulated GPU, which would measure.
  ProcResult a =
      run(tool("dropnet-time") + " " + kSrc + "/configs/alexnet13.yaml --model h200 --precision bf16 --device cpu");
  ASSERT_EQ(a.rc, 0) << a.err;
  EXPECT_TRUE(contains(a.out, "modelled on H200 SXM at bf16")) << a.out;
  // Without --precision the model takes the config's `precision`.
  ProcResult t =
      run(tool("dropnet-time") + " " + kSrc + "/configs/alexnet13.yaml precision=tf32 --model h100 --device cpu");
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_TRUE(contains(t.out, "modelled on H100 SXM at tf32")) << t.out;
  EXPECT_TRUE(std::regex_search(a.out, std::regex("\nconv1_2 +conv +skipped +skipped"))) << a.out;
  ProcResult bad =
      run(tool("dropnet-time") + " " + kSrc + "/configs/alexnet13.yaml --model h100 --precision fp16 --device cpu");
  EXPECT_EQ(bad.rc, 2);
  EXPECT_TRUE(contains(bad.err, "--precision must be fp32, tf32 or bf16")) << bad.err;
}

// The tools re-execute themselves once with GOMP_SPINCOUNT=10000 unless the user chose how OpenMP
// threads wait (cli::tune_openmp_waiting); dropnet-time reports what its threads run with.
TEST(TimeCli, OpenMpWaitingTunedUnlessSet) {
  REQUIRE_FASHION();
  const std::string cmd = tool("dropnet-time") + " " + kSrc + "/configs/lenet.yaml data.train.batch_size=2 " +
                          "--iterations 1 --threads 2 --device cpu";
  const std::pair<std::string, std::string> cases[] = {
      {"env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY ", "2 OpenMP threads (GOMP_SPINCOUNT 10000)"},
      {"env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=5000 ", "(GOMP_SPINCOUNT 5000)"},
      {"env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=passive ", "(OMP_WAIT_POLICY passive)"}};
  for (const auto& [env, want] : cases) {
    ProcResult r = run(env + cmd);
    ASSERT_EQ(r.rc, 0) << env << r.err;
    EXPECT_TRUE(contains(r.err, want)) << env << "\n" << r.err;
  }
}

// ---- dropnet-train progress + dropnet-test on its snapshot --------------------------------------

std::string train_cmd(const TempDir& dir, const std::string& extra) {
  return tool("dropnet-train") + " " + kSrc + "/configs/lenet.yaml --threads 1 --device cpu --out " + dir.str() +
         " solver.max_iter=40 solver.display=10 solver.test_interval=20 solver.test_iter=3 solver.snapshot=40 "
         "data.train.limit=640 data.test.limit=300 " + extra;
}

TEST(TrainProgress, LogLinesWithoutTty) {
  REQUIRE_FASHION();
  TempDir dir("progress_log");
  ProcResult r = run(train_cmd(dir, "--progress log"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_FALSE(contains(r.err, "\r")) << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex("Iteration 10, loss = [0-9.]+, lr = [0-9.e-]+, [0-9]+ img/s \\(25% of "
                                                  "40, ETA [0-9hms?]+\\)")))
      << r.err;
  EXPECT_TRUE(contains(r.err, "Iteration 20, Testing net: accuracy = ")) << r.err;
  EXPECT_TRUE(contains(r.err, "snapshot: ")) << r.err;
  // One display line per display record: 0, 10, 20, 30.
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '%'), 4) << r.err;
  // RunDirectory keeps writing the metrics.
  const std::string m = slurp(dir / "metrics.jsonl");
  EXPECT_TRUE(contains(m, "{\"kind\": \"train\", \"iter\": 30, \"loss\": ")) << m;
  EXPECT_TRUE(contains(m, "{\"kind\": \"test\", \"iter\": 40, \"accuracy\": ")) << m;
}

TEST(TrainProgress, UpdatingLineOnTty) {
  REQUIRE_FASHION();
  TempDir dir("progress_tty");
  ProcResult r = run(train_cmd(dir, "--progress tty"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "\riter 10/40  25% | loss ")) << r.err;
  EXPECT_TRUE(contains(r.err, "\riter 40/40 100%")) << r.err;
  EXPECT_TRUE(contains(r.err, "| ETA ")) << r.err;
  // The display log lines are replaced by the line; test results and milestones stay log lines,
  // each starting on a cleared line.
  EXPECT_FALSE(contains(r.err, "Iteration 10, loss")) << r.err;
  EXPECT_TRUE(contains(r.err, "\r\x1b[K")) << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex("\n[0-9:.]+ .*Iteration 20, Testing net: accuracy = ")) ||
              std::regex_search(r.err, std::regex("\x1b\\[K[0-9:.]+ .*Iteration 20, Testing net: accuracy = ")))
      << r.err;
  EXPECT_TRUE(contains(r.err, "done: 40 iterations")) << r.err;
  EXPECT_EQ(r.err.back(), '\n');
}

TEST(TrainProgress, CaffeLogParsesLikeCaffe) {
  REQUIRE_FASHION();
  TempDir dir("progress_caffe");
  ProcResult r = run(train_cmd(dir, "--progress log --caffe-log"));
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::regex glog("^[IWEDC][0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6} [0-9]+ dropnet\\] ");
  std::vector<std::string> ls = lines_of(r.err);
  bool solving = false;
  int loss_lines = 0, lr_lines = 0, test0 = 0, glog_lines = 0;
  bool after_solving_all_glog = true;
  for (size_t i = 0; i < ls.size(); ++i) {
    const std::string& l = ls[i];
    if (std::regex_search(l, glog)) ++glog_lines;
    else if (solving) after_solving_all_glog = false;
    if (contains(l, "] Solving lenet")) solving = true;
    // parse_log.sh: grep ', loss = ' | awk '{print $9}'; grep ', lr = ' | awk '{print $9}'.
    if (contains(l, ", loss = ")) {
      ++loss_lines;
      auto f = fields(l);
      ASSERT_GE(f.size(), 9u) << l;
      EXPECT_EQ(f[4], "Iteration") << l;
      EXPECT_GT(std::strtod(f[8].c_str(), nullptr), 0.0) << l;
    }
    if (contains(l, ", lr = ")) {
      ++lr_lines;
      auto f = fields(l);
      ASSERT_GE(f.size(), 9u) << l;
      EXPECT_GT(std::strtod(f[8].c_str(), nullptr), 0.0) << l;
    }
    if (contains(l, "Test net output #0: accuracy = ")) {
      ++test0;
      auto f = fields(l);
      ASSERT_GE(f.size(), 11u) << l;
      const double acc = std::strtod(f[10].c_str(), nullptr);
      EXPECT_GE(acc, 0.0);
      EXPECT_LE(acc, 1.0);
      // parse_log.sh: grep -B 1 'Test ' | grep 'Iteration ': the line before output #0 names the
      // iteration, as in Caffe's own logs.
      ASSERT_GE(i, 1u);
      EXPECT_TRUE(std::regex_search(ls[i - 1], std::regex("Iteration [0-9]+, Testing net \\(#0\\)$"))) << ls[i - 1];
    }
  }
  EXPECT_TRUE(solving) << r.err;
  EXPECT_TRUE(after_solving_all_glog) << r.err;
  EXPECT_EQ(loss_lines, 4) << r.err;  // iterations 0, 10, 20, 30
  EXPECT_EQ(lr_lines, 4) << r.err;
  EXPECT_EQ(test0, 3) << r.err;  // iterations 0, 20, 40
  EXPECT_FALSE(contains(r.err, "Testing net: accuracy")) << "the solver's own test lines are replaced";
  EXPECT_TRUE(contains(r.err, "] Optimization Done.")) << r.err;
}

TEST(TestCli, EvaluatesSnapshot) {
  REQUIRE_FASHION();
  TempDir dir("testcli");
  ProcResult t = run(train_cmd(dir, "--progress log"));
  ASSERT_EQ(t.rc, 0) << t.err;
  const std::string weights = (dir / "lenet_iter_40.safetensors").string();
  ASSERT_TRUE(fs::exists(weights)) << t.err;
  const std::string json = (dir / "test.json").string();
  ProcResult r = run(tool("dropnet-test") + " " + kSrc + "/configs/lenet.yaml --weights " + weights +
              " --iterations 3 --threads 1 --device cpu --json " + json);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "3 batches x 100 = 300 TEST samples of the 10000 in the set")) << r.out;
  EXPECT_TRUE(contains(r.out, "(iteration 40)")) << r.out;
  EXPECT_TRUE(contains(r.out, "top-1 = ")) << r.out;
  EXPECT_TRUE(contains(r.out, "(from 'ip2', 10 classes, 300 samples)")) << r.out;
  const std::string j = slurp(json);
  EXPECT_EQ(json_number(j, "samples"), 300);
  EXPECT_EQ(json_number(j, "iteration"), 40);
  const double top1 = json_number(j, "top1"), top5 = json_number(j, "top5"), acc = json_number(j, "accuracy");
  EXPECT_NEAR(top1, acc, 1e-6) << j;
  EXPECT_GE(top5, top1);
  EXPECT_GT(top1, 0.3) << "40 iterations of LeNet on Fashion-MNIST beat chance (0.1) clearly";
  EXPECT_GT(json_number(j, "loss"), 0.0);
  // The same test batches as the training run's final test (test_iter 3): same accuracy.
  const std::string m = slurp(dir / "metrics.jsonl");
  const size_t at = m.find("{\"kind\": \"test\", \"iter\": 40");
  ASSERT_NE(at, std::string::npos) << m;
  EXPECT_NEAR(json_number(m.substr(at), "accuracy"), acc, 1e-6);
  // A snapshot of another net is an input error naming the differences (the snapshot carries its
  // config; without one, load_weights names the missing parameters: unit_snapshot).
  ProcResult bad = run(tool("dropnet-test") + " " + kSrc + "/configs/lenet10.yaml --weights " + weights + " --iterations 1");
  EXPECT_EQ(bad.rc, 2);
  EXPECT_TRUE(contains(bad.err, "describes another net than the one '" + weights + "' was trained with")) << bad.err;
  EXPECT_TRUE(contains(bad.err, "layers.conv1_1: (absent) vs (a map of 8 keys)")) << bad.err;
  ProcResult noweights = run(tool("dropnet-test") + " " + kSrc + "/configs/lenet.yaml");
  EXPECT_EQ(noweights.rc, 2);
  EXPECT_TRUE(contains(noweights.err, "--weights")) << noweights.err;
}

// ---- dropnet-train --weights: a deeper net from a shallower one's weights ----------------------

// A tiny synthetic-data net: `layers` after the data layer, the loss on `top`.
std::string tiny_config(const std::string& name, const std::string& layers, const std::string& top,
                        const std::string& extra = "") {
  return "name: " + name + "\n" + extra + R"(data:
  train: {source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 64, batch_size: 8, scale: 0.00390625}
solver: {base_lr: 0.05, momentum: 0.9, max_iter: 4, display: 0, snapshot: 4}
layers:
  - {name: data, type: data, top: [data, label]}
)" + layers + "  - {name: loss, type: softmax_loss, bottom: [" + top + ", label], top: loss}\n";
}

TEST(TrainWeights, DeeperNetStartsFromShallowerWeightsWithMap) {
  TempDir dir("weights_map");
  // The shallow net: conv1, fc1, and a head the deeper net does not have.
  const std::string shallow = (dir / "shallow.yaml").string();
  std::ofstream(shallow) << tiny_config("shallow", R"(  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 4, kernel: 3}
  - {name: relu1, type: relu, bottom: conv1, top: relu1}
  - {name: fc1, type: fc, bottom: relu1, top: fc1, num_output: 8}
  - {name: head, type: fc, bottom: fc1, top: head, num_output: 4}
)", "head");
  const std::string common = " --threads 1 --device cpu --progress log";
  ProcResult s = run(tool("dropnet-train") + " " + shallow + common + " --out " + (dir / "shallow").string());
  ASSERT_EQ(s.rc, 0) << s.err;
  const std::string weights = (dir / "shallow" / "shallow_iter_4.safetensors").string();
  ASSERT_TRUE(fs::exists(weights)) << s.err;

  // The deeper net: conv1 is conv1_1 there, conv1_2 and fc2 are new. Its config maps a layer the
  // file lacks (conv9) onto conv1_1; the command line's entry for conv1_1 replaces it.
  const std::string deep = (dir / "deep.yaml").string();
  const std::string deep_layers = R"(  - {name: conv1_1, type: conv, bottom: data, top: conv1_1, num_output: 4, kernel: 3}
  - {name: relu1, type: relu, bottom: conv1_1, top: relu1}
  - {name: conv1_2, type: conv, bottom: relu1, top: conv1_2, num_output: 4, kernel: 3, pad: 1}
  - {name: relu2, type: relu, bottom: conv1_2, top: relu2}
  - {name: fc1, type: fc, bottom: relu2, top: fc1, num_output: 8}
  - {name: fc2, type: fc, bottom: fc1, top: fc2, num_output: 4}
)";
  std::ofstream(deep) << tiny_config("deep", deep_layers, "fc2", "weights_map: {conv9: conv1_1}\n");
  const std::string train_deep = tool("dropnet-train") + " " + deep + common + " --weights " + weights;
  ProcResult d = run(train_deep + " --weights-map conv1=conv1_1 --out " + (dir / "deep").string());
  ASSERT_EQ(d.rc, 0) << d.err;
  EXPECT_TRUE(contains(d.err, "weights: loaded from '" + weights + "': 4 parameters of 2 layers: conv1_1 <- conv1, fc1"))
      << d.err;
  EXPECT_TRUE(contains(d.err, "weights: new (left at their filler init): 4 parameters of 2 layers: conv1_2, fc2"))
      << d.err;
  EXPECT_TRUE(contains(d.err, "weights: unused in the file: 2 tensors of 1 layer: head")) << d.err;
  EXPECT_TRUE(contains(d.err, "done: 4 iterations")) << d.err;

  // The config's own entry, not overridden: a config error at its file:line.
  ProcResult c = run(train_deep + " --out " + (dir / "deep_cfg").string());
  EXPECT_EQ(c.rc, 2) << c.err;
  EXPECT_TRUE(contains(c.err, deep + ":2:22: weights_map.conv9: the weights file '" + weights +
                                 "' has no layer 'conv9'"))
      << c.err;
  // A command-line entry naming a layer the file lacks, one the net lacks, a malformed map,
  // strict loading of another net, and a map without --weights: input errors naming the entry.
  const std::pair<std::string, std::string> bad[] = {
      {" --weights-map conv7=conv1_1",
       "--weights-map 'conv7=conv1_1': the weights file '" + weights + "' has no layer 'conv7' (its layers: conv1, fc1, head)"},
      {" --weights-map conv1=conv1_1,fc1=fc9", "--weights-map 'fc1=fc9': the net has no layer 'fc9'"},
      {" --weights-map conv1", "--weights-map: entry 'conv1' has no '='"},
      {" --weights-map conv1=conv1_1,fc1=conv1_1", "the net's layer 'conv1_1' is the target of two entries"},
      {" --weights-map conv1=conv1_1 --weights-strict", "lacks 4 parameters of the net"},
  };
  for (const auto& [args, want] : bad) {
    ProcResult b = run(train_deep + args + " --out " + (dir / "deep_bad").string());
    EXPECT_EQ(b.rc, 2) << args << "\n" << b.err;
    EXPECT_TRUE(contains(b.err, "dropnet-train: error: ")) << args << "\n" << b.err;
    EXPECT_TRUE(contains(b.err, want)) << args << "\n" << b.err;
    EXPECT_FALSE(fs::exists(dir / "deep_bad" / "metrics.jsonl")) << args << ": refused before the run starts";
  }
  ProcResult nofile = run(tool("dropnet-train") + " " + deep + common + " --weights-map conv1=conv1_1");
  EXPECT_EQ(nofile.rc, 2);
  EXPECT_TRUE(contains(nofile.err, "--weights-map applies to --weights FILE")) << nofile.err;
}

// ---- self-describing snapshots (issue 16) --------------------------------------------------------

// A snapshot carries its config: `dropnet-test RUN_DIR` and `dropnet-train --resume RUN_DIR` need
// no config file; a config given beside the snapshot that describes another net (dropnet-test) or
// another run (dropnet-train) is refused with the differences; overrides change the run's config.
TEST(SelfDescribing, ResumeAndTestUseTheSnapshotsOwnConfig) {
  TempDir dir("selfdesc");
  const std::string cfg = (dir / "net.yaml").string();
  std::ofstream(cfg) << R"(name: selfdesc
vars: {K: 3}
data:
  train: {source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 64, batch_size: 8}
  test: {source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 16, batch_size: 8}
solver: {base_lr: 0.05, momentum: 0.9, max_iter: 100, display: 0, snapshot: 4}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 4, kernel: "{K}", weight_filler: {type: xavier}}
  - {name: fc1, type: fc, bottom: conv1, top: fc1, num_output: 4, weight_filler: {type: xavier}}
  - {name: loss, type: softmax_loss, bottom: [fc1, label], top: loss}
)";
  const std::string common = " --threads 1 --device cpu --progress log";
  const std::string run_dir = (dir / "run").string();
  ProcResult t = run(tool("dropnet-train") + " " + cfg + " solver.max_iter=4 vars.K=5 --out " + run_dir + common);
  ASSERT_EQ(t.rc, 0) << t.err;
  const std::string w4 = run_dir + "/selfdesc_iter_4.safetensors";

  ProcResult e = run(tool("dropnet-test") + " " + run_dir + " --threads 1 --device cpu");
  EXPECT_EQ(e.rc, 0) << e.err;
  EXPECT_TRUE(contains(e.out, "one pass over the 16 TEST samples")) << e.out;
  EXPECT_TRUE(contains(e.out, "weights " + w4 + " (iteration 4)")) << e.out;
  ProcResult f = run(tool("dropnet-test") + " " + w4 + " --threads 1 --device cpu");
  EXPECT_EQ(f.rc, 0) << f.err;
  // The file without the override is another net: refused, naming the difference.
  ProcResult other = run(tool("dropnet-test") + " " + cfg + " --weights " + w4 + " --device cpu");
  EXPECT_EQ(other.rc, 2) << other.err;
  EXPECT_TRUE(contains(other.err, "layers.conv1.kernel: 5 vs 3")) << other.err;
  EXPECT_TRUE(contains(other.err, "give the snapshot or run directory instead of CONFIG")) << other.err;
  // With it, the same net: the solver's settings may differ.
  ProcResult same = run(tool("dropnet-test") + " " + cfg + " vars.K=5 --weights " + w4 + " --device cpu");
  EXPECT_EQ(same.rc, 0) << same.err;
  ProcResult both = run(tool("dropnet-test") + " " + run_dir + " --weights " + w4);
  EXPECT_EQ(both.rc, 2);
  EXPECT_TRUE(contains(both.err, "give one of them")) << both.err;
  ProcResult no_weights = run(tool("dropnet-test") + " " + cfg);
  EXPECT_EQ(no_weights.rc, 2);
  EXPECT_TRUE(contains(no_weights.err, "a CONFIG needs --weights FILE")) << no_weights.err;

  // Resume without a config: the run's own, with the override logged.
  ProcResult r = run(tool("dropnet-train") + " --resume " + run_dir + " solver.max_iter=6 solver.snapshot=6" + common);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "solver.max_iter: 4 vs 6")) << r.err;
  EXPECT_TRUE(contains(r.err, "done: 6 iterations")) << r.err;
  EXPECT_TRUE(fs::exists(run_dir + "/selfdesc_iter_6.safetensors")) << r.err;
  // The file as shipped is not the run's config.
  ProcResult wrong = run(tool("dropnet-train") + " " + cfg + " solver.max_iter=8 --resume " + run_dir + common);
  EXPECT_EQ(wrong.rc, 2) << wrong.err;
  EXPECT_TRUE(contains(wrong.err, "is not the config the run was trained with")) << wrong.err;
  EXPECT_TRUE(contains(wrong.err, "vars.K: 5 vs 3")) << wrong.err;
  EXPECT_TRUE(contains(wrong.err, "layers.conv1.kernel: 5 vs 3")) << wrong.err;
  EXPECT_TRUE(contains(wrong.err, "leave CONFIG out")) << wrong.err;
  EXPECT_FALSE(fs::exists(run_dir + "/selfdesc_iter_8.safetensors"));
  // With the run's settings it is the same config, and resumes.
  ProcResult right = run(tool("dropnet-train") + " " + cfg + " vars.K=5 solver.max_iter=8 solver.snapshot=4 --resume " +
                         run_dir + common);
  EXPECT_EQ(right.rc, 0) << right.err;
  EXPECT_TRUE(contains(right.err, "done: 8 iterations")) << right.err;
  ProcResult none = run(tool("dropnet-train") + " solver.max_iter=8" + common);
  EXPECT_EQ(none.rc, 2);
  EXPECT_TRUE(contains(none.err, "missing CONFIG")) << none.err;

  // dropnet-dump takes --weights (and --threads): the dumped parameters are the snapshot's.
  const std::string x = (dir / "x.npy").string();
  dropnet::write_npy(x, dropnet::Tensor(dropnet::Shape({2, 1, 8, 8})));
  const std::string w6 = run_dir + "/selfdesc_iter_6.safetensors";
  const std::string dump = tool("dropnet-dump") + " " + cfg + " vars.K=5 --input " + x + " --threads 1 --out ";
  ProcResult dw = run(dump + (dir / "dump_w").string() + " --weights " + w6);
  ASSERT_EQ(dw.rc, 0) << dw.err;
  const dropnet::SafeTensors st = dropnet::SafeTensors::read(w6);
  const std::vector<float> want = st.floats(*st.find("conv1.weight"));
  EXPECT_EQ(dropnet::read_npy((dir / "dump_w" / "param.conv1.weight.npy").string()).to_host(), want);
  ProcResult dn = run(dump + (dir / "dump_fill").string());
  ASSERT_EQ(dn.rc, 0) << dn.err;
  EXPECT_NE(dropnet::read_npy((dir / "dump_fill" / "param.conv1.weight.npy").string()).to_host(), want)
      << "without --weights the parameters are the fillers'";
}

// ---- plot_metrics.py ----------------------------------------------------------------------------

TEST(PlotMetrics, WritesPngOfSaneSize) {
  if (run("/usr/bin/python3 -c 'import matplotlib' >/dev/null").rc != 0) GTEST_SKIP() << "no matplotlib";
  TempDir dir("plot");
  fs::create_directories(dir / "deep");
  {
    std::ofstream a(dir / "deep" / "metrics.jsonl");
    for (int it = 0; it <= 100; it += 10) {
      const double p = std::min(1.0, it / 50.0);
      a << "{\"kind\": \"train\", \"iter\": " << it << ", \"loss\": " << 2.3 / (1 + it / 20.0)
        << ", \"lr\": 0.01, \"dropin1_2.p\": " << p << ", \"dropin2_2.p\": " << p << "}\n";
      if (it % 50 == 0) a << "{\"kind\": \"test\", \"iter\": " << it << ", \"accuracy\": " << 0.1 + it / 150.0
                          << ", \"loss\": null}\n";
    }
    std::ofstream b(dir / "shallow.jsonl");
    for (int it = 0; it <= 100; it += 20) {
      b << "{\"kind\": \"train\", \"iter\": " << it << ", \"loss\": " << 2.3 / (1 + it / 30.0) << "}\n";
      b << "{\"kind\": \"test\", \"iter\": " << it << ", \"accuracy\": " << 0.1 + it / 200.0 << "}\n";
    }
  }
  const std::string png = (dir / "out" / "curves.png").string();
  ProcResult r = run("/usr/bin/python3 " + kSrc + "/tools/plot_metrics.py " + (dir / "deep").string() + " " +
              (dir / "shallow.jsonl").string() + " --labels 'LeNet(10)+DropIn,LeNet' --title test --out " + png);
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  const std::string bytes = slurp(png);
  ASSERT_GT(bytes.size(), 10000u) << "a two-panel figure with curves is not a few bytes";
  ASSERT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  ASSERT_EQ(bytes.substr(12, 4), "IHDR");
  auto be32 = [&](size_t o) {
    return (static_cast<uint32_t>(static_cast<unsigned char>(bytes[o])) << 24) |
           (static_cast<uint32_t>(static_cast<unsigned char>(bytes[o + 1])) << 16) |
           (static_cast<uint32_t>(static_cast<unsigned char>(bytes[o + 2])) << 8) |
           static_cast<uint32_t>(static_cast<unsigned char>(bytes[o + 3]));
  };
  EXPECT_EQ(be32(16), 900u);  // 9 x 7 inches at 100 dpi
  EXPECT_EQ(be32(20), 700u);
  // Seeds: deep_seed2 joins deep (one curve: mean and range); a diverged run is said to be; the
  // shallow net's final accuracy is the reference line.
  fs::create_directories(dir / "deep_seed2");
  {
    std::ofstream a(dir / "deep_seed2" / "metrics.jsonl");
    for (int it = 0; it <= 100; it += 50)
      a << "{\"kind\": \"train\", \"iter\": " << it << ", \"loss\": 1.0}\n{\"kind\": \"test\", \"iter\": " << it
        << ", \"accuracy\": " << 0.2 + it / 150.0 << "}\n";
    std::ofstream d(dir / "diverged.jsonl");
    d << "{\"kind\": \"train\", \"iter\": 0, \"loss\": 2.3}\n{\"kind\": \"test\", \"iter\": 0, \"accuracy\": 0.1}\n"
      << "{\"kind\": \"status\", \"iter\": 7, \"status\": \"diverged\"}\n";
  }
  ProcResult seeds = run("/usr/bin/python3 " + kSrc + "/tools/plot_metrics.py " + (dir / "deep").string() + " " +
                         (dir / "deep_seed2").string() + " " + (dir / "diverged.jsonl").string() + " --reference " +
                         (dir / "shallow.jsonl").string() + " --reference-label LeNet --out " + png);
  ASSERT_EQ(seeds.rc, 0) << seeds.err << seeds.out;
  EXPECT_TRUE(contains(seeds.out, "(3 run(s), 2 curve(s))")) << seeds.out;
  // deep ends at 0.1 + 100/150, deep_seed2 at 0.2 + 100/150: mean 0.8167, range 0.7667 - 0.8667.
  EXPECT_TRUE(contains(seeds.out, "deep (2 seeds: mean, range): final accuracy mean 0.8167, range 0.7667 - 0.8667"))
      << seeds.out;
  EXPECT_TRUE(contains(seeds.out, "(diverged at iteration 7): final accuracy none")) << seeds.out;
  EXPECT_TRUE(contains(seeds.out, "reference LeNet: final 0.6000")) << seeds.out;
  // Errors: a missing run, a label count that does not match.
  ProcResult missing = run("/usr/bin/python3 " + kSrc + "/tools/plot_metrics.py /nonexistent --out " + png);
  EXPECT_NE(missing.rc, 0);
  EXPECT_TRUE(contains(missing.err, "no metrics.jsonl")) << missing.err;
  ProcResult labels = run("/usr/bin/python3 " + kSrc + "/tools/plot_metrics.py " + (dir / "deep").string() +
                   " --labels a,b --out " + png);
  EXPECT_NE(labels.rc, 0);
}

// ---- dropnet-probe ----------------------------------------------------------------------------

const std::string kProbeData = " data.train.limit=2000 data.test.limit=1000 --test-iter 10 --threads 1 --device cpu";

TEST(ProbeCli, DepthDropinVsShallow) {
  REQUIRE_FASHION();
  TempDir dir("probe_depth");
  const std::string json = (dir / "depth.json").string();
  ProcResult r = run(tool("dropnet-probe") + " depth " + kSrc + "/configs/lenet10.yaml --iterations 60 --seeds 2 --length 30" +
              " data.train.batch_size=16 solver.base_lr=0.001" + kProbeData + " --json " + json);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "deep (DropIn, p = 1 at the end): mean accuracy")) << r.out;
  EXPECT_TRUE(contains(r.out, "shallow (every DropIn at p = 0): mean accuracy")) << r.out;
  EXPECT_TRUE(contains(r.out, "verdict: ")) << r.out;
  const std::string j = slurp(json);
  EXPECT_EQ(json_number(j, "seeds"), 2);
  EXPECT_EQ(json_number(j, "deep_p_min"), 1.0) << "length 30 of 60 iterations: fully grown";
  EXPECT_EQ(json_number(j, "shallow_p_max"), 0.0) << "the shallow net holds every DropIn at p = 0";
  const double md = json_number(j, "deep_mean"), ms = json_number(j, "shallow_mean");
  EXPECT_GT(md, 0.2);
  EXPECT_GT(ms, 0.2);
  EXPECT_NEAR(json_number(j, "difference"), md - ms, 1e-6);
  const double sd = json_number(j, "deep_std"), ss = json_number(j, "shallow_std");
  EXPECT_NEAR(json_number(j, "pooled_std"), std::sqrt((sd * sd + ss * ss) / 2), 1e-6);
  EXPECT_TRUE(contains(j, "\"helps\": true") || contains(j, "\"helps\": false")) << j;
  // A config without DropIn layers has nothing to probe.
  ProcResult none = run(tool("dropnet-probe") + " depth " + kSrc + "/configs/lenet.yaml --iterations 2 --seeds 1");
  EXPECT_EQ(none.rc, 2);
  EXPECT_TRUE(contains(none.err, "no dropin layer")) << none.err;
}

TEST(ProbeCli, WidthDropoutSweep) {
  REQUIRE_FASHION();
  TempDir dir("probe_width");
  const std::string json = (dir / "width.json").string();
  ProcResult r = run(tool("dropnet-probe") + " width " + kSrc + "/configs/lenet.yaml ip1 --iterations 60 --points 6" +
              kProbeData + " --json " + json);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "layer ip1 (500 units)")) << r.out;
  EXPECT_TRUE(contains(r.out, "estimated units needed: ")) << r.out;
  const std::string j = slurp(json);
  EXPECT_EQ(json_number(j, "width"), 500);
  const double units = json_number(j, "units_needed"), ratio = json_number(j, "plateau_ratio");
  EXPECT_GE(ratio, 0.1 - 1e-6);
  EXPECT_LE(ratio, 0.9);
  EXPECT_EQ(units, std::ceil((1 - ratio) * 500 - 1e-9));
  // Six test points, the ratio falling linearly from 0.9 toward 0.1 (iterations 10..60 of 60).
  std::vector<double> ratios, accs;
  for (size_t at = j.find("\"points\""); (at = j.find("\"ratio\": ", at)) != std::string::npos; ++at) {
    ratios.push_back(std::strtod(j.c_str() + at + 9, nullptr));
    accs.push_back(json_number(j.substr(at), "accuracy"));
  }
  ASSERT_EQ(ratios.size(), 6u) << j;
  for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(ratios[i], 0.9 - 0.8 * static_cast<double>(i + 1) / 6, 1e-6);
  EXPECT_GT(accs.back(), 0.4) << "60 iterations of LeNet on Fashion-MNIST";
  ProcResult nolayer = run(tool("dropnet-probe") + " width " + kSrc + "/configs/lenet.yaml nosuch --iterations 2 --points 2");
  EXPECT_EQ(nolayer.rc, 2);
  EXPECT_TRUE(contains(nolayer.err, "no layer named 'nosuch'")) << nolayer.err;
}

}  // namespace
