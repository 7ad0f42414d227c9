#include "data/sources.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>

#include "core/error.h"
#include "core/npy.h"
#include "data/prefetch.h"
#include "data/sampler.h"
#include "data/source_kinds.h"

namespace dropnet {

namespace fs = std::filesystem;
using namespace dropnet::data;

namespace {

// Reads a mean image file (.npy, float32, (C, H, W) or (1, C, H, W)) into the transform.
void load_mean_file(ConfigNode& cfg, const std::string& path, TransformSpec* t) {
  Tensor a = read_npy(path);
  std::vector<int64_t> s = a.shape().dims();
  if (s.size() == 4 && s[0] == 1) s.erase(s.begin());
  if (s.size() == 2) s.insert(s.begin(), 1);
  if (s.size() != 3 || s[0] <= 0 || s[1] <= 0 || s[2] <= 0)
    cfg.fail("mean_file", fmt::format("'{}' must hold a (C, H, W) float32 array, got shape {}", path,
                                      a.shape().str()));
  t->mean_c = static_cast<int>(s[0]);
  t->mean_h = static_cast<int>(s[1]);
  t->mean_w = static_cast<int>(s[2]);
  t->mean_image = a.to_host();
}

// A source that knows its sample shape and batch size but holds no data (SourceRequest::shapes_only).
class ShapeOnlySource : public BatchSource {
 public:
  ShapeOnlySource(Shape sample, int64_t batch, int num_classes)
      : sample_(sample), batch_(batch), num_classes_(num_classes) {}
  Shape sample_shape() const override { return sample_; }
  int64_t batch_size() const override { return batch_; }
  int64_t num_samples() const override { return batch_; }
  int num_classes() const override { return num_classes_; }
  void next_batch(float*, float*) override {
    throw Error(ErrorKind::Internal, "a shapes-only data source has no batches (a summary or dry run)");
  }
  std::vector<int64_t> state() const override { return {}; }
  void restore(const std::vector<int64_t>&) override {}

 private:
  Shape sample_;
  int64_t batch_;
  int num_classes_;
};

const SourceKind& read_source_kind(ConfigNode& cfg) {
  std::vector<std::string> names;
  for (const SourceKind& k : source_kinds()) names.push_back(k.name);
  return *find_source_kind(cfg.get_choice("source", names, ""));
}

SamplerOptions read_sampler_options(ConfigNode& cfg, const SourceRequest& req) {
  SamplerOptions so;
  so.batch_size = cfg.get_positive_int("batch_size");
  if (so.batch_size > (int64_t{1} << 20)) cfg.fail("batch_size", fmt::format("{} is too large (at most 1048576)", so.batch_size));
  so.shuffle = cfg.get_bool("shuffle", false);
  so.seed = req.seed;
  so.rank = req.rank;
  so.world = req.world;
  so.limit = cfg.get_int("limit", 0);
  if (so.limit < 0) cfg.fail("limit", fmt::format("must be >= 0 (0 = all samples), got {}", so.limit));
  return so;
}

// scale, mean, crop, pad, mirror; the mean image (mean_file) is read with the data.
TransformSpec read_transform(ConfigNode& cfg, const SourceRequest& req) {
  TransformSpec t;
  t.train = req.phase == Phase::Train;
  t.scale = static_cast<float>(cfg.get_float("scale", 1.0));
  for (double m : cfg.get_float_list("mean", {})) t.mean_values.push_back(static_cast<float>(m));
  t.crop = int_in(cfg, "crop", 0, 0, 1 << 16);
  t.pad = int_in(cfg, "pad", 0, 0, 1 << 16);
  if (t.pad > 0 && t.crop == 0) cfg.fail("pad", "pad needs crop (the padded image is cropped back)");
  t.mirror = cfg.get_bool("mirror", false);
  return t;
}

// none | auto | PATH
std::string read_mean_file(ConfigNode& cfg, const TransformSpec& t, const SourceKind& kind) {
  const std::string mean_file = cfg.get_string("mean_file", "none");
  if (mean_file != "none" && !t.mean_values.empty())
    cfg.fail("mean_file", "give either mean (values) or mean_file (an image), not both");
  if (mean_file == "auto" && !kind.computes_mean)
    cfg.fail("mean_file", "'auto' (computed from the training files) is only available for source: cifar10");
  return mean_file;
}

// Shapes only: nothing is loaded; a missing input is worth a word (the run itself would stop there).
std::unique_ptr<BatchSource> shape_only_source(const SourceRequest& req, const SourceKind& kind, const SourcePlan& plan,
                                               const TransformSpec& t, int64_t batch_size) {
  const ConfigNode& cfg = req.section;
  for (const auto& [key, path] : plan.inputs) {
    std::error_code ec;
    if (req.rank == 0 && !fs::exists(path, ec))
      spdlog::warn("{}: '{}' does not exist (shapes come from the config here; training needs the data)",
                   cfg.where(key), path);
  }
  const std::vector<int64_t> c_h_w = plan.stored_shape();
  const auto [oh, ow] = c_h_w[1] > 0 ? transform_output_hw(t, static_cast<int>(c_h_w[1]), static_cast<int>(c_h_w[2]))
                                     : std::pair<int, int>{t.crop, t.crop};
  const Shape sample{c_h_w[0], oh, ow};
  if (req.rank == 0)
    spdlog::info("{} ({}): {} {} - shapes only, nothing read, sample {}, batch {}", cfg.path(), phase_name(req.phase),
                 kind.name, plan.what, sample.str(), batch_size);
  return std::make_unique<ShapeOnlySource>(sample, batch_size, plan.num_classes);
}

// A data file that is missing or bad is named by its key too (data.train.images: ...).
std::shared_ptr<const Dataset> load_dataset(ConfigNode& cfg, const SourcePlan& plan) {
  try {
    return plan.load();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Input) throw;
    const std::string msg = e.what();
    for (const auto& [key, path] : plan.inputs)
      if (msg.find("'" + path) != std::string::npos) cfg.fail(key, msg);
    throw;
  }
}

// `samples`: the section's keys and transform over these samples instead of its files (prediction).
std::unique_ptr<BatchSource> build_source(SourceRequest& req, std::shared_ptr<const Dataset> samples) {
  ConfigNode& cfg = req.section;
  if (!cfg.valid()) cfg.fail("", "missing data section");
  const SourceKind& kind = read_source_kind(cfg);
  SamplerOptions so = read_sampler_options(cfg, req);
  const int prefetch = int_in(cfg, "prefetch", 2, 0, 64);
  TransformSpec t = read_transform(cfg, req);
  const std::string mean_file = read_mean_file(cfg, t, kind);
  SourcePlan plan = kind.read(cfg, {req, t, mean_file});
  cfg.finish();
  if (samples) {  // every given sample once, in order
    so.shuffle = false;
    so.limit = 0;
    so.rank = 0;
    so.world = 1;
    // cifar10's `mean_file: auto` sets the transform's mean when its data loads: that load still runs.
    plan.load = [samples, load = plan.load, auto_mean = mean_file == "auto"] {
      if (auto_mean) load();
      return samples;
    };
    plan.what = "(given samples)";
  }
  const bool mean_image_file = mean_file != "none" && mean_file != "auto";
  if (mean_image_file) plan.inputs.emplace_back("mean_file", mean_file);
  if (req.shapes_only && plan.stored_shape && !samples) return shape_only_source(req, kind, plan, t, so.batch_size);
  if (mean_image_file) load_mean_file(cfg, mean_file, &t);
  std::shared_ptr<const Dataset> ds = load_dataset(cfg, plan);

  std::unique_ptr<BatchSource> src;
  try {
    src = std::make_unique<IndexedSource>(ds, t, so);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Input) cfg.fail("source", e.what());
    throw;
  }
  if (req.rank == 0)
    spdlog::info("{} ({}): {} {} - {} samples{}, sample {}, batch {}{}", cfg.path(), phase_name(req.phase), kind.name,
                 plan.what, static_cast<IndexedSource*>(src.get())->total_samples(),
                 req.world > 1 ? fmt::format(" ({} per rank)", src->num_samples()) : std::string(),
                 src->sample_shape().str(), so.batch_size, prefetch ? fmt::format(", prefetch {}", prefetch) : "");
  if (prefetch > 0) src = std::make_unique<PrefetchSource>(std::move(src), prefetch);
  return src;
}

}  // namespace

std::unique_ptr<BatchSource> make_batch_source(SourceRequest& req) { return build_source(req, nullptr); }

std::unique_ptr<BatchSource> make_batch_source_over(SourceRequest& req, std::shared_ptr<const Dataset> samples) {
  if (!samples) input_error("make_batch_source_over: no samples");
  return build_source(req, std::move(samples));
}

}  // namespace dropnet
