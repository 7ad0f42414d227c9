#include "data/sources.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <functional>

#include "core/error.h"
#include "core/npy.h"
#include "data/cifar.h"
#include "data/file_io.h"
#include "data/idx.h"
#include "data/image_list.h"
#include "data/packed.h"
#include "data/prefetch.h"
#include "data/sampler.h"
#include "data/synthetic.h"

namespace dropnet {

namespace fs = std::filesystem;
using namespace dropnet::data;

namespace {

int int_in(ConfigNode& cfg, const std::string& key, int64_t def, int64_t lo, int64_t hi) {
  int64_t v = cfg.get_int(key, def);
  if (v < lo || v > hi) cfg.fail(key, fmt::format("must be in [{}, {}], got {}", lo, hi, v));
  return static_cast<int>(v);
}

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

std::string join_dir(const std::string& dir, const std::string& name) {
  return fs::path(name).is_absolute() ? name : (fs::path(dir) / name).string();
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

}  // namespace

namespace {

// `samples`: the section's keys and transform over these samples, not its files (prediction).
std::unique_ptr<BatchSource> build_source(SourceRequest& req, std::shared_ptr<const Dataset> samples) {
  ConfigNode& cfg = req.section;
  if (!cfg.valid()) cfg.fail("", "missing data section");
  const bool train = req.phase == Phase::Train;
  const std::string kind = cfg.get_choice("source", {"mnist", "cifar10", "image_list", "packed", "synthetic"}, "");

  SamplerOptions so;
  so.batch_size = cfg.get_positive_int("batch_size");
  if (so.batch_size > (int64_t{1} << 20)) cfg.fail("batch_size", fmt::format("{} is too large (at most 1048576)", so.batch_size));
  so.shuffle = cfg.get_bool("shuffle", false);
  so.seed = req.seed;
  so.rank = req.rank;
  so.world = req.world;
  so.limit = cfg.get_int("limit", 0);
  if (so.limit < 0) cfg.fail("limit", fmt::format("must be >= 0 (0 = all samples), got {}", so.limit));
  const int prefetch = int_in(cfg, "prefetch", 2, 0, 64);

  TransformSpec t;
  t.train = train;
  t.scale = static_cast<float>(cfg.get_float("scale", 1.0));
  for (double m : cfg.get_float_list("mean", {})) t.mean_values.push_back(static_cast<float>(m));
  t.crop = int_in(cfg, "crop", 0, 0, 1 << 16);
  t.pad = int_in(cfg, "pad", 0, 0, 1 << 16);
  if (t.pad > 0 && t.crop == 0) cfg.fail("pad", "pad needs crop (the padded image is cropped back)");
  t.mirror = cfg.get_bool("mirror", false);
  const std::string mean_file = cfg.get_string("mean_file", "none");
  if (mean_file != "none" && !t.mean_values.empty())
    cfg.fail("mean_file", "give either mean (values) or mean_file (an image), not both");
  if (mean_file == "auto" && kind != "cifar10")
    cfg.fail("mean_file", "'auto' (computed from the training files) is only available for source: cifar10");

  // Every key is read (and checked) before any file is touched, so a misspelt key is reported
  // as such rather than as the missing file it causes; `load` runs after finish().
  std::function<std::shared_ptr<const Dataset>()> load;
  std::string what;
  // Shapes only: the stored sample's (C, H, W) without reading the data (H = W = 0: the images
  // vary, the crop decides; no function: the data must be opened to tell), the files it would
  // read (key, path), and the class count.
  std::function<std::vector<int64_t>()> stored_shape;
  std::vector<std::pair<std::string, std::string>> inputs;
  int classes = 0;
  if (kind == "mnist") {
    std::string images = cfg.get_string("images"), labels = cfg.get_string("labels");
    int nc = int_in(cfg, "num_classes", 10, 1, 256);
    load = [=] { return load_mnist(images, labels, nc); };
    what = images;
    inputs = {{"images", images}, {"labels", labels}};
    classes = nc;
    stored_shape = [images]() -> std::vector<int64_t> {
      std::error_code ec;
      if (!fs::exists(images, ec)) return {1, 28, 28};  // MNIST's (said so by the missing-file warning)
      const IdxImages h = read_idx_image_header(images);
      return {1, h.rows, h.cols};
    };
  } else if (kind == "cifar10") {
    std::string dir = cfg.get_string("dir");
    std::vector<std::string> files = cfg.has("files") ? cfg.get_string_list("files") : cifar_default_files(train);
    if (!cfg.has("files")) cfg.get_string("files", "default");  // marks the key, logs the default
    int64_t per_file = cfg.get_int("records_per_file", 10000);
    if (per_file < 0) cfg.fail("records_per_file", "must be >= 0 (0 = any whole number of records)");
    std::vector<std::string> mean_from =
        cfg.has("mean_from") ? cfg.get_string_list("mean_from") : cifar_default_files(true);
    if (!cfg.has("mean_from")) cfg.get_string("mean_from", "default");
    std::string cache_dir = cfg.get_string("cache_dir", "");
    load = [=, &t] {
      std::string d = cifar_resolve_dir(dir, files);
      std::vector<std::string> paths;
      for (const auto& f : files) paths.push_back(join_dir(d, f));
      auto ds = load_cifar10(paths, per_file);
      if (mean_file == "auto") {
        std::vector<std::string> mpaths;
        for (const auto& f : mean_from) mpaths.push_back(join_dir(d, f));
        t.mean_image = cifar_mean_image(mpaths, per_file, d, cache_dir);
        t.mean_c = 3;
        t.mean_h = 32;
        t.mean_w = 32;
      }
      return ds;
    };
    what = dir;
    inputs = {{"dir", dir}};
    classes = 10;
    stored_shape = [] { return std::vector<int64_t>{3, 32, 32}; };
  } else if (kind == "image_list") {
    ImageListOptions o;
    o.list = cfg.get_string("list", "");
    o.root = cfg.get_string("root", "");
    if (o.list.empty() && o.root.empty()) cfg.fail("", "image_list needs `list: FILE` or `root: DIR` (folder per class)");
    o.channels = int_in(cfg, "channels", 3, 1, 3);
    if (o.channels == 2) cfg.fail("channels", "must be 1 (gray) or 3 (color)");
    o.bgr = cfg.get_choice("channel_order", {"bgr", "rgb"}, "bgr") == "bgr";
    std::vector<int64_t> rs = cfg.get_int_list("resize", {});
    if (rs.size() == 1) {
      if (rs[0] <= 0 || rs[0] > 65536) cfg.fail("resize", "the shorter side must be in [1, 65536]");
      o.resize_shorter = static_cast<int>(rs[0]);
    } else if (rs.size() == 2) {
      if (rs[0] <= 0 || rs[1] <= 0 || rs[0] > 65536 || rs[1] > 65536) cfg.fail("resize", "[H, W] must be in [1, 65536]");
      o.resize_h = static_cast<int>(rs[0]);
      o.resize_w = static_cast<int>(rs[1]);
    } else if (!rs.empty()) {
      cfg.fail("resize", "expected S (shorter side) or [H, W]");
    }
    o.max_pixels = cfg.get_int("max_pixels", o.max_pixels);
    if (o.max_pixels <= 0) cfg.fail("max_pixels", "must be > 0");
    o.skip_bad = cfg.get_bool("skip_bad", false);
    o.num_classes = int_in(cfg, "num_classes", 0, 0, 1 << 24);
    if (o.resize_shorter > 0 && t.crop == 0)
      cfg.fail("resize", "resizing the shorter side gives images of different sizes: set crop too");
    load = [o] { return std::make_shared<ImageListDataset>(o); };
    what = o.list.empty() ? o.root : o.list;
    inputs = o.list.empty() ? decltype(inputs){{"root", o.root}} : decltype(inputs){{"list", o.list}};
    classes = o.num_classes;
    if (o.resize_h > 0) stored_shape = [o] { return std::vector<int64_t>{o.channels, o.resize_h, o.resize_w}; };
    else if (t.crop > 0) stored_shape = [o] { return std::vector<int64_t>{o.channels, 0, 0}; };
  } else if (kind == "packed") {
    std::string path = cfg.get_string("path");
    load = [path] { return std::make_shared<PackedDataset>(path); };  // mapped, not read
    what = path;
  } else {  // synthetic
    std::vector<int64_t> shape = cfg.get_int_list("shape", {});
    if (shape.size() == 2) shape.insert(shape.begin(), 1);
    if (shape.size() != 3 || shape[0] <= 0 || shape[1] <= 0 || shape[2] <= 0 || shape[0] > 4 || shape[1] > 65536 ||
        shape[2] > 65536)
      cfg.fail("shape", "expected [C, H, W] (or [H, W]) with 1 <= C <= 4 and positive sizes");
    int nc = int_in(cfg, "num_classes", 10, 1, 1 << 24);
    int64_t n = cfg.get_positive_int("num_samples", 1024);
    if (n * shape[0] * shape[1] * shape[2] > (int64_t{4} << 30))
      cfg.fail("num_samples", "the synthetic set would exceed 4 GiB; use fewer samples");
    const uint64_t seed = req.seed;
    load = [=] {
      return make_synthetic(static_cast<int>(shape[0]), static_cast<int>(shape[1]), static_cast<int>(shape[2]), nc, n,
                            seed);
    };
    what = fmt::format("{} samples", n);
    classes = nc;
    stored_shape = [shape] { return shape; };
  }
  cfg.finish();
  if (samples) {
    so.shuffle = false;
    so.limit = 0;
    so.rank = 0;
    so.world = 1;
    load = [samples] { return samples; };
    what = "(--predict input)";
  }
  if (mean_file != "none" && mean_file != "auto") inputs.emplace_back("mean_file", mean_file);
  if (req.shapes_only && stored_shape && !samples) {
    // Nothing is loaded; a missing input is worth a word (the run itself would stop there).
    for (const auto& [key, path] : inputs) {
      std::error_code ec;
      if (req.rank == 0 && !fs::exists(path, ec))
        spdlog::warn("{}: '{}' does not exist (shapes come from the config here; training needs the data)",
                     cfg.where(key), path);
    }
    const std::vector<int64_t> c_h_w = stored_shape();
    const auto [oh, ow] = c_h_w[1] > 0 ? transform_output_hw(t, static_cast<int>(c_h_w[1]), static_cast<int>(c_h_w[2]))
                                       : std::pair<int, int>{t.crop, t.crop};
    const Shape sample{c_h_w[0], oh, ow};
    if (req.rank == 0)
      spdlog::info("{} ({}): {} {} - shapes only, nothing read, sample {}, batch {}", cfg.path(), phase_name(req.phase),
                   kind, what, sample.str(), so.batch_size);
    return std::make_unique<ShapeOnlySource>(sample, so.batch_size, classes);
  }
  if (mean_file != "none" && mean_file != "auto") load_mean_file(cfg, mean_file, &t);
  std::shared_ptr<const Dataset> ds;
  try {
    ds = load();
  } catch (const Error& e) {
    // A data file that is missing or bad: named by its key too (data.train.images: ...).
    if (e.kind() != ErrorKind::Input) throw;
    const std::string msg = e.what();
    for (const auto& [key, path] : inputs)
      if (msg.find("'" + path) != std::string::npos) cfg.fail(key, msg);
    throw;
  }

  std::unique_ptr<BatchSource> src;
  try {
    src = std::make_unique<IndexedSource>(ds, t, so);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Input) cfg.fail("source", e.what());
    throw;
  }
  if (req.rank == 0)
    spdlog::info("{} ({}): {} {} - {} samples{}, sample {}, batch {}{}", cfg.path(), phase_name(req.phase), kind, what,
                 static_cast<IndexedSource*>(src.get())->total_samples(),
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
