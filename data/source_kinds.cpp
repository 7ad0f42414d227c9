#include "data/source_kinds.h"

#include <fmt/format.h>

#include <filesystem>
#include <optional>

#include "data/cifar.h"
#include "data/idx.h"
#include "data/image_list.h"
#include "data/packed.h"
#include "data/synthetic.h"

namespace dropnet::data {

namespace fs = std::filesystem;

int int_in(ConfigNode& cfg, const std::string& key, int64_t def, int64_t lo, int64_t hi) {
  int64_t v = cfg.get_int(key, def);
  if (v < lo || v > hi) cfg.fail(key, fmt::format("must be in [{}, {}], got {}", lo, hi, v));
  return static_cast<int>(v);
}

namespace {

bool scalar(const YAML::Node& n) { return n.IsDefined() && n.IsScalar(); }
// An integer scalar's value; nullopt for anything else (the declared shapes check nothing, throw nothing).
std::optional<int64_t> int_scalar(const YAML::Node& n) {
  int64_t v = 0;
  if (!scalar(n) || !YAML::convert<int64_t>::decode(n, v)) return std::nullopt;
  return v;
}

std::string join_dir(const std::string& dir, const std::string& name) {
  return fs::path(name).is_absolute() ? name : (fs::path(dir) / name).string();
}

// ---- mnist: images: PATH, labels: PATH (IDX, plain or gzip), num_classes: 10 --------------------

SourcePlan read_mnist(ConfigNode& cfg, const SourceContext&) {
  std::string images = cfg.get_string("images"), labels = cfg.get_string("labels");
  int nc = int_in(cfg, "num_classes", 10, 1, 256);
  SourcePlan p;
  p.load = [=] { return load_mnist(images, labels, nc); };
  p.what = images;
  p.inputs = {{"images", images}, {"labels", labels}};
  p.num_classes = nc;
  p.stored_shape = [images]() -> std::vector<int64_t> {
    std::error_code ec;
    if (!fs::exists(images, ec)) return {1, 28, 28};  // MNIST's (said so by the missing-file warning)
    const IdxImages h = read_idx_image_header(images);
    return {1, h.rows, h.cols};
  };
  return p;
}

std::vector<int64_t> mnist_declared_shape(const YAML::Node&) { return {1, 28, 28}; }

// ---- cifar10: dir, files, records_per_file, mean_from, cache_dir ------------------------------

// A list of file names whose default depends on the phase: logged as "default".
std::vector<std::string> names_or_default(ConfigNode& cfg, const std::string& key, std::vector<std::string> def) {
  if (cfg.has(key)) return cfg.get_string_list(key);
  cfg.get_string(key, "default");  // marks the key, logs the default
  return def;
}

SourcePlan read_cifar10(ConfigNode& cfg, const SourceContext& ctx) {
  std::string dir = cfg.get_string("dir");
  std::vector<std::string> files = names_or_default(cfg, "files", cifar_default_files(ctx.req.phase == Phase::Train));
  int64_t per_file = cfg.get_int("records_per_file", 10000);
  if (per_file < 0) cfg.fail("records_per_file", "must be >= 0 (0 = any whole number of records)");
  std::vector<std::string> mean_from = names_or_default(cfg, "mean_from", cifar_default_files(true));
  std::string cache_dir = cfg.get_string("cache_dir", "");
  SourcePlan p;
  p.load = [=, t = &ctx.transform, auto_mean = ctx.mean_file == "auto"] {
    std::string d = cifar_resolve_dir(dir, files);
    std::vector<std::string> paths;
    for (const auto& f : files) paths.push_back(join_dir(d, f));
    auto ds = load_cifar10(paths, per_file);
    if (auto_mean) {
      std::vector<std::string> mpaths;
      for (const auto& f : mean_from) mpaths.push_back(join_dir(d, f));
      t->mean_image = cifar_mean_image(mpaths, per_file, d, cache_dir);
      t->mean_c = 3;
      t->mean_h = 32;
      t->mean_w = 32;
    }
    return ds;
  };
  p.what = dir;
  p.inputs = {{"dir", dir}};
  p.num_classes = 10;
  p.stored_shape = [] { return std::vector<int64_t>{3, 32, 32}; };
  return p;
}

std::vector<int64_t> cifar10_declared_shape(const YAML::Node&) { return {3, 32, 32}; }

// ---- image_list: list and/or root, channels, channel_order, resize, max_pixels, skip_bad, -------
// ---- num_classes ------------------------------------------------------------------------------

SourcePlan read_image_list(ConfigNode& cfg, const SourceContext& ctx) {
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
  const int crop = ctx.transform.crop;
  if (o.resize_shorter > 0 && crop == 0)
    cfg.fail("resize", "resizing the shorter side gives images of different sizes: set crop too");
  SourcePlan p;
  p.load = [o] { return std::make_shared<ImageListDataset>(o); };
  p.what = o.list.empty() ? o.root : o.list;
  if (o.list.empty()) p.inputs = {{"root", o.root}};
  else p.inputs = {{"list", o.list}};
  p.num_classes = o.num_classes;
  if (o.resize_h > 0) p.stored_shape = [o] { return std::vector<int64_t>{o.channels, o.resize_h, o.resize_w}; };
  else if (crop > 0) p.stored_shape = [o] { return std::vector<int64_t>{o.channels, 0, 0}; };
  return p;
}

std::vector<int64_t> image_list_declared_shape(const YAML::Node& sec) {
  const int64_t c = sec["channels"].IsDefined() ? int_scalar(sec["channels"]).value_or(0) : 3;
  YAML::Node r = sec["resize"];
  std::optional<int64_t> h, w;
  if (!r.IsDefined()) h = w = 0;  // the images vary: the crop decides
  else if (r.IsSequence() && r.size() == 2) h = int_scalar(r[0]), w = int_scalar(r[1]);
  else h = w = int_scalar(r);
  if (c <= 0 || !h || !w) return {};
  return {c, *h, *w};
}

// ---- packed: path (see data/packed.h) ----------------------------------------------------------

SourcePlan read_packed(ConfigNode& cfg, const SourceContext&) {
  std::string path = cfg.get_string("path");
  SourcePlan p;
  p.load = [path] { return std::make_shared<PackedDataset>(path); };  // mapped, not read
  p.what = path;
  return p;
}

// ---- synthetic: shape: [C, H, W], num_classes: 10, num_samples: 1024 ---------------------------

SourcePlan read_synthetic(ConfigNode& cfg, const SourceContext& ctx) {
  std::vector<int64_t> shape = cfg.get_int_list("shape", {});
  if (shape.size() == 2) shape.insert(shape.begin(), 1);
  if (shape.size() != 3 || shape[0] <= 0 || shape[1] <= 0 || shape[2] <= 0 || shape[0] > 4 || shape[1] > 65536 ||
      shape[2] > 65536)
    cfg.fail("shape", "expected [C, H, W] (or [H, W]) with 1 <= C <= 4 and positive sizes");
  int nc = int_in(cfg, "num_classes", 10, 1, 1 << 24);
  int64_t n = cfg.get_positive_int("num_samples", 1024);
  if (n * shape[0] * shape[1] * shape[2] > (int64_t{4} << 30))
    cfg.fail("num_samples", "the synthetic set would exceed 4 GiB; use fewer samples");
  SourcePlan p;
  p.load = [=, seed = ctx.req.seed] {
    return make_synthetic(static_cast<int>(shape[0]), static_cast<int>(shape[1]), static_cast<int>(shape[2]), nc, n,
                          seed);
  };
  p.what = fmt::format("{} samples", n);
  p.num_classes = nc;
  p.stored_shape = [shape] { return shape; };
  return p;
}

std::vector<int64_t> synthetic_declared_shape(const YAML::Node& sec) {
  YAML::Node s = sec["shape"];
  if (!s.IsDefined() || !s.IsSequence() || (s.size() != 2 && s.size() != 3)) return {};
  std::vector<int64_t> shape;
  for (const YAML::Node& d : s) {
    const std::optional<int64_t> v = int_scalar(d);
    if (!v) return {};
    shape.push_back(*v);
  }
  if (shape.size() == 2) shape.insert(shape.begin(), 1);
  return shape;
}

}  // namespace

const std::vector<SourceKind>& source_kinds() {
  static const std::vector<SourceKind> kinds = {
      {"mnist", read_mnist, mnist_declared_shape, false},
      {"cifar10", read_cifar10, cifar10_declared_shape, true},
      {"image_list", read_image_list, image_list_declared_shape, false},
      {"packed", read_packed, nullptr, false},
      {"synthetic", read_synthetic, synthetic_declared_shape, false},
  };
  return kinds;
}

const SourceKind* find_source_kind(const std::string& name) {
  for (const SourceKind& k : source_kinds())
    if (name == k.name) return &k;
  return nullptr;
}

}  // namespace dropnet::data
