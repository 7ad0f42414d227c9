#include "data/predict_input.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/npy.h"
#include "data/idx.h"
#include "data/image_list.h"

namespace dropnet::data {

namespace fs = std::filesystem;

namespace {

enum class Form { Idx, Npy, List };

// By content: an IDX image file starts with 00 00 08 03 (or is gzip'd), a .npy with \x93NUMPY;
// anything else is read as an image list.
Form detect(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) input_error("--predict: cannot find '{}'", path);
  if (!fs::is_regular_file(path, ec)) input_error("--predict: '{}' is not a regular file", path);
  std::ifstream f(path, std::ios::binary);
  unsigned char m[6] = {0, 0, 0, 0, 0, 0};
  f.read(reinterpret_cast<char*>(m), sizeof m);
  if (!f && f.gcount() == 0) input_error("--predict: cannot read '{}' (empty or unreadable)", path);
  if (m[0] == 0x93 && m[1] == 'N' && m[2] == 'U' && m[3] == 'M' && m[4] == 'P' && m[5] == 'Y') return Form::Npy;
  if ((m[0] == 0x1f && m[1] == 0x8b) || (m[0] == 0 && m[1] == 0 && m[2] == 8 && m[3] == 3)) return Form::Idx;
  return Form::List;
}

// Labels from an IDX label file or a .npy of N integers.
std::vector<int32_t> read_labels(const std::string& path, int64_t n) {
  std::vector<int32_t> out;
  if (detect(path) == Form::Npy) {
    const Tensor t = read_npy(path);
    const std::vector<float> v = t.to_host();
    for (float x : v) {
      if (!(x >= 0) || x != std::floor(x) || x >= (1 << 24))
        input_error("--labels '{}': expected non-negative integer labels, got {}", path, x);
      out.push_back(static_cast<int32_t>(x));
    }
  } else {
    for (uint8_t x : read_idx_labels(path)) out.push_back(x);
  }
  if (static_cast<int64_t>(out.size()) != n)
    input_error("--labels '{}' holds {} labels for the {} samples of the input", path, out.size(), n);
  return out;
}

int classes_of(const std::vector<int32_t>& labels, int given) {
  int32_t hi = -1;
  for (int32_t l : labels) hi = std::max(hi, l);
  if (given > 0 && hi >= given)
    input_error("--labels: label {} is out of range for the net's {} classes", hi, given);
  return given > 0 ? given : hi + 1;
}

}  // namespace

PredictionSamples load_prediction_input(const PredictionInput& in) {
  PredictionSamples out;
  const Form form = detect(in.path);
  if (form == Form::List) {
    if (!in.labels.empty())
      input_error("--labels goes with IDX or .npy inputs; an image list carries its labels (`path label` lines)");
    if (in.height <= 0 || in.width <= 0) input_error("--predict: the net's input size is unknown for an image list");
    ImageListOptions o;
    o.list = in.path;
    o.channels = in.channels;
    o.bgr = in.bgr;
    o.resize_h = in.height;
    o.resize_w = in.width;
    o.num_classes = in.num_classes;
    o.labels_optional = true;
    auto ds = std::make_shared<ImageListDataset>(o);
    if (ds->size() == 0) input_error("--predict: the image list '{}' names no image", in.path);
    out.labeled = ds->labeled();
    if (out.labeled)
      for (int64_t i = 0; i < ds->size(); ++i) out.labels.push_back(ds->label(i));
    out.samples = ds;
    out.format = "image list";
    return out;
  }
  // IDX or .npy: the pixels (N, C, H, W), then the labels and the in-memory set alike.
  int64_t n = 0, c = 1, h = 0, w = 0;
  std::vector<uint8_t> px;
  if (form == Form::Idx) {
    IdxImages im = read_idx_images(in.path);
    n = im.n;
    h = im.rows;
    w = im.cols;
    px = std::move(im.pixels);
    out.format = "IDX";
  } else {
    const Tensor t = read_npy(in.path);
    const Shape& s = t.shape();
    if (s.ndim() != 3 && s.ndim() != 4)
      input_error("--predict '{}': expected (N, H, W) or (N, C, H, W) pixels, got {}", in.path, s.str());
    n = s[0];
    c = s.ndim() == 4 ? s[1] : 1;
    h = s[s.ndim() - 2];
    w = s[s.ndim() - 1];
    if (n <= 0 || c <= 0 || c > 4 || h <= 0 || w <= 0 || h > 65536 || w > 65536)
      input_error("--predict '{}': cannot use samples of shape {}", in.path, s.str());
    const std::vector<float> v = t.to_host();
    px.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      if (!(v[i] >= 0 && v[i] <= 255) || v[i] != std::floor(v[i]))
        input_error("--predict '{}': element {} is {}; the input holds pixel values (integers 0-255) before the "
                    "config's transform (scale, mean) is applied",
                    in.path, i, v[i]);
      px[i] = static_cast<uint8_t>(v[i]);
    }
    out.format = "npy";
  }
  std::vector<int32_t> labels(static_cast<size_t>(n), 0);
  if (!in.labels.empty()) labels = read_labels(in.labels, n);
  auto ds = std::make_shared<InMemoryDataset>(fs::path(in.path).filename().string(), static_cast<int>(c),
                                              static_cast<int>(h), static_cast<int>(w),
                                              classes_of(labels, in.num_classes));
  ds->append(px.data(), labels.data(), n);
  out.labeled = !in.labels.empty();
  if (out.labeled) out.labels = std::move(labels);
  out.samples = ds;
  return out;
}

}  // namespace dropnet::data
