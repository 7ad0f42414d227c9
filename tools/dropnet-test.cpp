// dropnet-test RUN_DIR|SNAPSHOT [key.path=value ...] [options]     (--help: every option)
// dropnet-test CONFIG --weights FILE [key.path=value ...] [options]
// Evaluates a weights snapshot on the TEST net, by default over exactly one pass of the TEST set
// (the last batch partial: its wrapped-around tail is not counted): every net output (loss,
// accuracy layers) averaged over the batches, plus top-1 / top-5, per-class accuracy and the
// confusion matrix computed from the loss layer's score input (Caffe's accuracy rule), so nets
// without accuracy layers are covered too. DropIn layers see the snapshot's iteration (from the
// weights file; --iter overrides), as they did in training. --predict INPUT classifies other
// samples (IDX, .npy or an image list, data/predict_input.h) through the TEST net's transform and
// writes one CSV row per sample.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/fileio.h"
#include "core/safetensors.h"
#include "data/predict_input.h"
#include "data/sources.h"
#include "layers/net.h"
#include "optim/snapshot.h"
#include "optim/solver.h"
#include "tools/cli_common.h"
#include "tools/run_support.h"

using namespace dropnet;

namespace {

std::string num(double v) { return std::isfinite(v) ? fmt::format("{:.9g}", v) : "null"; }

// A CSV field: quoted when it holds a comma, a quote or a line break.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// --predict: the TEST net's data layer reads these samples (the config's batch size and transform).
data::PredictionSamples g_predict;
std::string g_predict_path;
Shape g_predict_want;  // the sample shape of the config's TEST source
std::unique_ptr<BatchSource> predict_source(SourceRequest& req) {
  if (req.phase != Phase::Test || !g_predict.samples) return make_batch_source(req);
  std::unique_ptr<BatchSource> src = make_batch_source_over(req, g_predict.samples);
  if (src->sample_shape() != g_predict_want)
    input_error("--predict '{}': its samples are {} after the TEST transform, the net takes {} (as {} gives)",
                g_predict_path, src->sample_shape().str(), g_predict_want.str(), req.section.path());
  return src;
}

void print_report(const EvalResult& r, bool labeled) {
  if (!labeled) {
    std::printf("  (no labels: predictions only)\n");
    return;
  }
  for (const auto& kv : r.outputs) std::printf("  %s = %.6g\n", kv.first.c_str(), kv.second);
  if (r.scores_blob.empty()) {
    std::printf("  (no softmax_loss layer: top-1/top-5 not computed)\n");
    return;
  }
  std::printf("  top-1 = %.6g", r.top1);
  if (std::isfinite(r.top5)) std::printf(", top-5 = %.6g", r.top5);
  std::printf("  (from '%s', %lld classes, %lld samples)\n", r.scores_blob.c_str(), static_cast<long long>(r.classes),
              static_cast<long long>(r.counted));
  if (!r.confusion.empty() && r.classes <= 20) {
    const std::vector<double> pc = r.per_class_accuracy();
    std::printf("  per-class accuracy:");
    for (size_t c = 0; c < pc.size(); ++c) std::printf(" %zu:%.4g", c, pc[c]);
    std::printf("\n  confusion matrix (rows: true class, columns: predicted):\n");
    for (size_t t = 0; t < r.confusion.size(); ++t) {
      std::printf("  %4zu |", t);
      for (int64_t v : r.confusion[t]) std::printf(" %6lld", static_cast<long long>(v));
      if (r.unscored[t] > 0) std::printf("  (+%lld with non-finite scores)", static_cast<long long>(r.unscored[t]));
      std::printf("\n");
    }
  } else if (!r.confusion.empty()) {
    std::printf("  (%lld classes: per-class accuracy and the confusion matrix in --json and --csv only)\n",
                static_cast<long long>(r.classes));
  }
}

void write_json(const std::string& path, const std::string& net, const std::string& weights, int64_t iter,
                const EvalResult& r) {
  std::string f;
  f += fmt::format("{{\"net\": \"{}\", \"weights\": \"{}\", \"iteration\": {}, \"batches\": {}, \"samples\": {}",
                   json_escape(net), json_escape(weights), iter, r.batches, r.samples);
  f += fmt::format(", \"loss\": {}, \"top1\": {}, \"top5\": {}, \"outputs\": {{", num(r.loss), num(r.top1), num(r.top5));
  for (size_t i = 0; i < r.outputs.size(); ++i)
    f += fmt::format("{}\"{}\": {}", i ? ", " : "", json_escape(r.outputs[i].first), num(r.outputs[i].second));
  f += fmt::format("}}, \"counted\": {}", r.counted);
  if (!r.confusion.empty()) {
    const std::vector<double> pc = r.per_class_accuracy();
    f += ", \"per_class_accuracy\": [";
    for (size_t c = 0; c < pc.size(); ++c) f += fmt::format("{}{}", c ? ", " : "", num(pc[c]));
    f += "], \"confusion\": [";
    for (size_t t = 0; t < r.confusion.size(); ++t) {
      f += t ? ", [" : "[";
      for (size_t c = 0; c < r.confusion[t].size(); ++c) f += fmt::format("{}{}", c ? ", " : "", r.confusion[t][c]);
      f += "]";
    }
    f += "]";
  }
  f += "}\n";
  write_file_checked(path, f);
}

// One row per true class: its sample count, accuracy and the confusion matrix row.
void write_csv(const std::string& path, const EvalResult& r) {
  if (r.confusion.empty())
    input_error("--csv: no per-class table to write (the net has no softmax_loss layer over per-sample scores)");
  const std::vector<double> pc = r.per_class_accuracy();
  std::string f = "class,samples,accuracy";
  for (size_t c = 0; c < r.confusion.size(); ++c) f += fmt::format(",predicted_{}", c);
  f += ",non_finite\n";
  for (size_t t = 0; t < r.confusion.size(); ++t) {
    int64_t n = r.unscored[t];
    for (int64_t v : r.confusion[t]) n += v;
    f += fmt::format("{},{},{}", t, n, std::isfinite(pc[t]) ? fmt::format("{:.9g}", pc[t]) : "");
    for (int64_t v : r.confusion[t]) f += fmt::format(",{}", v);
    f += fmt::format(",{}\n", r.unscored[t]);
  }
  write_file_checked(path, f);
}

// A CSV row per sample: its index, the predicted class and its softmax probability, the top-5
// classes (best first), the true label when known, and what the sample is (file:line, path).
class PredictionWriter {
 public:
  explicit PredictionWriter(bool labeled) : labeled_(labeled) { out_ = "index,predicted,probability,top5,label,input\n"; }
  void add(int64_t i, const float* s, int64_t classes) {
    std::vector<int64_t> order(static_cast<size_t>(classes));
    for (int64_t c = 0; c < classes; ++c) order[static_cast<size_t>(c)] = c;
    const int64_t k = std::min<int64_t>(5, classes);
    // The first highest score wins a tie (as the confusion matrix); non-finite scores sort last.
    auto key = [&](int64_t c) { return std::isfinite(s[c]) ? s[c] : -INFINITY; };
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
      return key(a) > key(b) || (key(a) == key(b) && a < b);
    });
    double z = 0;
    const double top = key(order[0]);
    for (int64_t c = 0; c < classes; ++c) z += std::isfinite(s[c]) ? std::exp(static_cast<double>(s[c]) - top) : 0.0;
    const double p = std::isfinite(top) && z > 0 ? 1.0 / z : NAN;
    std::string top5;
    for (int64_t j = 0; j < k; ++j) top5 += fmt::format("{}{}", j ? " " : "", order[static_cast<size_t>(j)]);
    const std::string label = labeled_ ? std::to_string(g_predict.labels[static_cast<size_t>(i)]) : "";
    out_ += fmt::format("{},{},{},{},{},{}\n", i, order[0], std::isfinite(p) ? fmt::format("{:.6g}", p) : "", top5,
                        label, csv_field(g_predict.samples->describe(i)));
    ++rows_;
  }
  const std::string& text() const { return out_; }
  int64_t rows() const { return rows_; }

 private:
  bool labeled_;
  std::string out_;
  int64_t rows_ = 0;
};

int test_main(int argc, char** argv) {
  cli::Parser args("dropnet-test",
                   "dropnet-test RUN_DIR|SNAPSHOT [key.path=value ...] [options]\n"
                   "       dropnet-test CONFIG --weights FILE [key.path=value ...] [options]",
                   "Evaluates a snapshot on the TEST net, by default over exactly one pass of the TEST set (the last "
                   "batch partial): every net output averaged over the batches, top-1 / top-5, per-class accuracy and "
                   "the confusion matrix (from the loss layer's scores). DropIn layers see the snapshot's iteration. "
                   "--predict classifies other samples through the TEST net's transform and writes one CSV row each "
                   "(index, predicted class, its probability, the top 5, the label when known, the input).",
                   "  RUN_DIR|SNAPSHOT  a run directory (its latest intact snapshot), a .safetensors or .solverstate\n"
                   "                    file: evaluated with the config stored in it\n"
                   "  CONFIG            a net description, with --weights: its net must be the one the weights\n"
                   "                    were trained with, when they say\n"
                   "  key.path=value    changes a setting (e.g. data.test.images=...)");
  std::string weights, device_arg, json, csv, predict, labels_path, out;
  int64_t iterations = 0, batch = 0, iter = -1, threads = 0;
  args.option("--weights", weights, "FILE", "the weights file, with a CONFIG");
  args.option("--iterations", iterations, "N",
              "TEST batches (default: 0, one pass over the TEST set, the last batch partial)");
  args.device(device_arg);
  args.option("--batch", batch, "N", "TEST batch size (default: 0, as configured)");
  args.option("--iter", iter, "T", "the training iteration the layers see (default: the snapshot's)");
  args.threads(threads);
  args.option("--json", json, "FILE", "also write the results as JSON");
  args.option("--csv", csv, "FILE",
              "also write the per-class table as CSV: class, samples, accuracy, the confusion matrix row");
  args.option("--predict", predict, "INPUT",
              "classify INPUT instead of the TEST set: IDX images, a .npy of pixels (N, [C,] H, W; integers 0-255) "
              "or an image list (`path [label]` lines; images resized to the net's input)");
  args.option("--labels", labels_path, "FILE", "with --predict: the true labels of an IDX or .npy input (IDX or .npy)");
  args.option("--out", out, "FILE", "with --predict: the predictions CSV (required)");
  std::vector<std::string> pos = args.parse(argc, argv);
  const std::string usage = args.usage();
  if (pos.empty()) input_error("missing RUN_DIR, SNAPSHOT or CONFIG\n{}", usage);
  // A run directory or snapshot file carries its config; a CONFIG needs --weights.
  std::error_code ec;
  const bool snapshot_arg = std::filesystem::is_directory(pos[0], ec) || pos[0].ends_with(".safetensors") ||
                            pos[0].ends_with(".solverstate");
  if (snapshot_arg && !weights.empty())
    input_error("'{}' is a snapshot, and --weights names another ('{}'): give one of them (a snapshot carries its "
                "config; --weights goes with a CONFIG file)",
                pos[0], weights);
  if (!snapshot_arg && weights.empty())
    input_error("'{}' is not a run directory or snapshot: a CONFIG needs --weights FILE\n{}", pos[0], usage);
  if (iterations < 0) input_error("--iterations must be > 0, got {}", iterations);
  if (batch < 0) input_error("--batch must be > 0, got {}", batch);
  if (predict.empty() && (!labels_path.empty() || !out.empty()))
    input_error("{} goes with --predict INPUT", !labels_path.empty() ? "--labels" : "--out");
  if (!predict.empty() && out.empty()) input_error("--predict needs --out FILE (the predictions CSV)");
  if (!predict.empty() && iterations > 0)
    input_error("--predict classifies every sample of INPUT once; --iterations does not apply");
  std::vector<std::string> overrides(pos.begin() + 1, pos.end());
  for (const auto& o : overrides)
    if (o.find('=') == std::string::npos) input_error("unexpected argument '{}' (overrides are key.path=value)", o);

  cli::set_threads(threads);
  cli::init_logging();
  SnapshotInfo snap = read_snapshot_info(snapshot_arg ? pos[0] : weights);
  const std::string weights_path = snap.weights_path;
  LoadedConfig cfg = evaluation_config(snap, snapshot_arg ? "" : pos[0], overrides);
  cli::RunSettings run = cli::read_run_settings(cfg);
  if (iter < 0) iter = snap.iteration;
  const Device dev = parse_device(device_arg.empty() ? run.device : device_arg);
  if (dev.is_cuda()) cuda_set_device(dev.index);
  NetOptions no = cli::net_options(run, dev, Phase::Test, batch);
  if (!predict.empty()) {
    // The samples come in the stored shape the TEST transform expects; an image list is resized to
    // the shape the net's TEST source delivers (without a crop, the same).
    ConfigNode test_section = cfg.node().child("data").child("test");
    SourceRequest shapes{test_section, Phase::Test, run.seed, 0, 1, true};
    const Shape want = make_batch_source(shapes)->sample_shape();
    data::PredictionInput in;
    in.path = predict;
    in.labels = labels_path;
    in.channels = static_cast<int>(want[0]);
    in.height = static_cast<int>(want[1]);
    in.width = static_cast<int>(want[2]);
    in.bgr = test_section.raw()["channel_order"].IsScalar() ? test_section.raw()["channel_order"].Scalar() != "rgb"
                                                             : true;
    g_predict = data::load_prediction_input(in);
    g_predict_path = predict;
    g_predict_want = want;
    no.source_factory = predict_source;
  }
  Net net(cfg, no);
  load_weights(net, *snap.weights_file);
  snap.weights_file.reset();  // its bytes are not kept through the evaluation
  snap.state_file.reset();
  // The TEST set's size: the first data layer's source (it sets the pace).
  const int64_t set_size = net.sources().empty() ? 0 : net.sources().front()->num_samples();
  const bool one_pass = iterations == 0;
  if (one_pass) {
    if (set_size <= 0) input_error("the TEST net has no data source to count: give --iterations N");
    iterations = (set_size + net.batch_size() - 1) / net.batch_size();
  }
  PredictionWriter predictions(g_predict.labeled);
  SampleScores on_sample;
  if (!predict.empty()) on_sample = [&](int64_t i, const float* s, int64_t c) { predictions.add(i, s, c); };
  EvalResult r = evaluate_net(net, iterations, iter, run.seed, one_pass ? set_size : 0, on_sample);

  std::fflush(stderr);
  if (!predict.empty()) {
    if (r.scores_blob.empty()) input_error("--predict: the TEST net has no softmax_loss layer to take scores from");
    if (predictions.rows() != set_size)
      input_error("--predict: the loss layer's scores are per position, not per sample: no per-sample predictions");
    write_file_checked(out, predictions.text());
    std::printf("%s: %lld predictions for %s (%s, %s), weights %s (iteration %lld), written to %s\n",
                net.name().c_str(), static_cast<long long>(set_size), predict.c_str(), g_predict.format.c_str(),
                g_predict.labeled ? "labeled" : "no labels", weights_path.c_str(), static_cast<long long>(iter),
                out.c_str());
  } else if (one_pass) {
    std::printf("%s: one pass over the %lld TEST samples (%lld batches of %lld%s), weights %s (iteration %lld)\n",
                net.name().c_str(), static_cast<long long>(set_size), static_cast<long long>(r.batches),
                static_cast<long long>(net.batch_size()),
                r.samples > set_size ? fmt::format(", the last one {} samples", set_size % net.batch_size()).c_str()
                                     : "",
                weights_path.c_str(), static_cast<long long>(iter));
    if (r.samples > set_size)
      std::printf("  (top-1, top-5 and the confusion matrix count each sample once; the net's own outputs below "
                  "average whole batches)\n");
  } else {
    std::printf("%s: %lld batches x %lld = %lld TEST samples%s, weights %s (iteration %lld)\n", net.name().c_str(),
                static_cast<long long>(r.batches), static_cast<long long>(net.batch_size()),
                static_cast<long long>(r.samples),
                set_size > 0 && r.samples > set_size
                    ? fmt::format(" (the set has {}: {} were read twice or more)", set_size, r.samples - set_size).c_str()
                    : set_size > r.samples ? fmt::format(" of the {} in the set", set_size).c_str() : "",
                weights_path.c_str(), static_cast<long long>(iter));
  }
  print_report(r, predict.empty() || g_predict.labeled);
  std::fflush(stdout);
  if (!json.empty()) write_json(json, net.name(), weights_path, iter, r);
  if (!csv.empty()) write_csv(csv, r);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cli::tune_openmp_waiting(argv);
  return cli::run_main("dropnet-test", [&] { return test_main(argc, argv); });
}
