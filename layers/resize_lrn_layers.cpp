// resize (parameter-free reshaping of (N, C, H, W) to (N, channels, height, width); keys
// channels, height, width (default: the input's), method (nearest | bilinear | area),
// channel_mode (tile | pad | average)) and lrn (keys region (across_channels | within_channel),
// local_size (5), alpha (1), beta (0.75), k (1); Caffe's formulas).
#include <fmt/format.h>

#include "core/error.h"
#include "kernels/lrn.h"
#include "kernels/resize.h"
#include "kernels/resize_check.h"
#include "layers/dispatch.h"
#include "layers/registry.h"

namespace dropnet {

namespace {

class ResizeLayer : public Layer {
 public:
  ResizeLayer(LayerInfo info, ConfigNode& cfg) : Layer(std::move(info)) {
    channels_ = cfg.get_int("channels", 0);
    height_ = cfg.get_int("height", 0);
    width_ = cfg.get_int("width", 0);
    for (const char* k : {"channels", "height", "width"})
      if (cfg.has(k) && cfg.get_int(k) <= 0) cfg.fail(k, "must be a positive integer");
    std::string m = cfg.get_choice("method", {"nearest", "bilinear", "area"}, "nearest");
    method_ = m == "nearest" ? ResizeMethod::Nearest : m == "bilinear" ? ResizeMethod::Bilinear : ResizeMethod::Area;
    std::string c = cfg.get_choice("channel_mode", {"tile", "pad", "average"}, "tile");
    mode_ = c == "tile" ? ChannelMode::Tile : c == "pad" ? ChannelMode::Pad : ChannelMode::Average;
  }
  int num_bottoms() const override { return 1; }
  int num_tops() const override { return 1; }
  std::vector<Shape> reshape(const std::vector<Shape>& b) override {
    const Shape& s = b[0];
    if (s.ndim() != 4) input_error("layer '{}': resize needs a 4-D input (N, C, H, W), got {}", name(), s.str());
    p_ = ResizeParams{method_, mode_, s.n(), s.c(), s.h(), s.w(), channels_ ? channels_ : s.c(),
                      height_ ? height_ : s.h(), width_ ? width_ : s.w()};
    try {
      resize_check_params(p_);
    } catch (const Error& e) {
      input_error("layer '{}': {}", name(), e.what());
    }
    return {Shape({p_.n, p_.out_c, p_.out_h, p_.out_w})};
  }
  void forward(const std::vector<Blob*>& bottom, const std::vector<Blob*>& top, const RunContext&) override {
    const float* x = bottom[0]->value.data();
    float* y = top[0]->value.data();
    DN_DISPATCH(device(), resize_forward_cpu(p_, x, y), resize_forward_cuda(p_, x, y, cuda_stream()));
  }
  void backward(const std::vector<Blob*>& top, const std::vector<Blob*>& bottom, const std::vector<BottomGrad>& bg,
                const RunContext&) override {
    if (!bg[0].needed) return;
    const float* dy = top[0]->grad.data();
    float* dx = bottom[0]->grad.data();
    DN_DISPATCH(device(), resize_backward_cpu(p_, dy, bg[0].beta, dx),
                resize_backward_cuda(p_, dy, bg[0].beta, dx, cuda_stream()));
  }

 private:
  int64_t channels_, height_, width_;
  ResizeMethod method_;
  ChannelMode mode_;
  ResizeParams p_{};
};

class LrnLayer : public Layer {
 public:
  LrnLayer(LayerInfo info, ConfigNode& cfg) : Layer(std::move(info)) {
    across_ = cfg.get_choice("region", {"across_channels", "within_channel"}, "across_channels") == "across_channels";
    local_size_ = static_cast<int>(cfg.get_positive_int("local_size", 5));
    if (local_size_ % 2 == 0) cfg.fail("local_size", fmt::format("must be odd, got {}", local_size_));
    alpha_ = static_cast<float>(cfg.get_float("alpha", 1.0));
    beta_ = static_cast<float>(cfg.get_float("beta", 0.75));
    k_ = static_cast<float>(cfg.get_float("k", 1.0));
    if (alpha_ < 0) cfg.fail("alpha", "must be >= 0");
    if (across_ && !(k_ > 0)) cfg.fail("k", "must be > 0");
    if (info_.engine != "native") cfg.fail("engine", "lrn supports only the native engine");
  }
  int num_bottoms() const override { return 1; }
  int num_tops() const override { return 1; }
  std::vector<Shape> reshape(const std::vector<Shape>& b) override {
    const Shape& s = b[0];
    if (s.ndim() != 4) input_error("layer '{}': lrn needs a 4-D input (N, C, H, W), got {}", name(), s.str());
    p_ = LrnParams{across_, local_size_, alpha_, beta_, k_, s.n(), s.c(), s.h(), s.w()};
    if (scale_.empty()) scale_ = Tensor(s, device());
    else scale_.reshape(s);
    return {s};
  }
  void forward(const std::vector<Blob*>& bottom, const std::vector<Blob*>& top, const RunContext&) override {
    const float* x = bottom[0]->value.data();
    float* y = top[0]->value.data();
    DN_DISPATCH(device(), lrn_forward_cpu(p_, x, y, scale_.data()),
                lrn_forward_cuda(p_, x, y, scale_.data(), cuda_stream()));
  }
  void backward(const std::vector<Blob*>& top, const std::vector<Blob*>& bottom, const std::vector<BottomGrad>& bg,
                const RunContext&) override {
    if (!bg[0].needed) return;
    const float* x = bottom[0]->value.data();
    const float* y = top[0]->value.data();
    const float* dy = top[0]->grad.data();
    float* dx = bottom[0]->grad.data();
    DN_DISPATCH(device(), lrn_backward_cpu(p_, x, y, scale_.data(), dy, bg[0].beta, dx),
                lrn_backward_cuda(p_, x, y, scale_.data(), dy, bg[0].beta, dx, cuda_stream()));
  }
  double forward_flops() const override { return static_cast<double>(p_.n) * p_.c * p_.h * p_.w * (local_size_ + 3); }

 private:
  bool across_;
  int local_size_;
  float alpha_, beta_, k_;
  LrnParams p_{};
  Tensor scale_;  // (N, C, H, W) un-powered scale kept for backward
};

}  // namespace

std::unique_ptr<Layer> make_resize_layer(LayerInfo info, ConfigNode& cfg) {
  return std::make_unique<ResizeLayer>(std::move(info), cfg);
}
std::unique_ptr<Layer> make_lrn_layer(LayerInfo info, ConfigNode& cfg) {
  return std::make_unique<LrnLayer>(std::move(info), cfg);
}

}  // namespace dropnet
