// dropin (the paper's layer): bottoms [skip, new] of equal shape, y = r * new + (1 - r) * skip.
// Keys: mode (gradual | regularize), length and start (gradual: p = clamp((t - start) / length,
// 0, 1)), p (regularize), test (expectation | sample, regularize at TEST), unit (element | channel).
#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "kernels/dropin.h"
#include "kernels/dropin_math.h"
#include "kernels/dropout.h"
#include "kernels/grow.h"
#include "kernels/grow_math.h"
#include "layers/dispatch.h"
#include "layers/registry.h"

namespace dropnet {

namespace {

class DropinLayer : public Layer {
 public:
  DropinLayer(LayerInfo info, ConfigNode& cfg) : Layer(std::move(info)) {
    mode_ = cfg.get_choice("mode", {"gradual", "regularize"}, "gradual") == "gradual" ? DropinMode::Gradual
                                                                                       : DropinMode::Regularize;
    unit_ = cfg.get_choice("unit", {"element", "channel"}, "element") == "element" ? DropinUnit::Element
                                                                                   : DropinUnit::Channel;
    if (mode_ == DropinMode::Gradual) {
      length_ = cfg.get_positive_int("length");
      start_ = cfg.get_int("start", 0);
      if (start_ < 0) cfg.fail("start", "must be >= 0");
    } else {
      p_ = static_cast<float>(cfg.get_float("p"));
      if (!(p_ >= 0.f && p_ <= 1.f)) cfg.fail("p", fmt::format("must be in [0, 1], got {}", p_));
      test_sample_ = cfg.get_choice("test", {"expectation", "sample"}, "expectation") == "sample";
    }
    if (info_.engine != "native") cfg.fail("engine", "dropin supports only the native engine");
  }
  int num_bottoms() const override { return 2; }
  int num_tops() const override { return 1; }
  int64_t schedule_start() const override { return mode_ == DropinMode::Gradual ? start_ : -1; }

  std::vector<Shape> reshape(const std::vector<Shape>& b) override {
    if (b[0] != b[1])
      input_error("layer '{}': dropin bottoms differ in shape: skip '{}' is {} but new '{}' is {}; insert a resize "
                  "layer (type: resize) to map one onto the other",
                  name(), info_.bottoms[0], b[0].str(), info_.bottoms[1], b[1].str());
    n_ = b[0].n();
    c_ = b[0].ndim() >= 2 ? b[0][1] : 1;
    hw_ = b[0].count_from(2);
    return {b[0]};
  }

  float current_p(const RunContext& ctx) const {
    return mode_ == DropinMode::Gradual ? dropin_gradual_p(ctx.iter, start_, length_) : p_;
  }

  DropinParams params(const RunContext& ctx) const {
    DropinParams p;
    p.mode = mode_;
    p.unit = unit_;
    p.n = n_;
    p.c = c_;
    p.hw = hw_;
    p.p = current_p(ctx);
    p.sample = ctx.phase == Phase::Train || test_sample_;
    p.seed = ctx.seed;
    p.stream = info_.rng_stream;
    p.step = ctx.rng_step;
    return p;
  }

  // Gradual: skip is read in the channels that hold one of the first floor((1 - p) n) units of a
  // sample, new in those that hold one of the rest; regularize reads both where its top is read.
  void bottom_use(const RunContext& ctx, const std::vector<ChannelRange>& top,
                  std::vector<ChannelRange>& bottom) const override {
    bottom[0] = bottom[1] = top[0];
    if (mode_ != DropinMode::Gradual) return;
    const int64_t k = dropin_gradual_skip_elements(params(ctx));  // elements of a sample from skip
    bottom[0] = intersect(top[0], {0, (k + hw_ - 1) / hw_});
    bottom[1] = intersect(top[0], {k / hw_, c_});
  }

  void forward(const std::vector<Blob*>& bottom, const std::vector<Blob*>& top, const RunContext& ctx) override {
    DropinParams p = params(ctx);
    if (mode_ == DropinMode::Gradual && (p.p >= 1.f || p.p <= 0.f)) {
      // Fully grown (or not yet started): the layer is one of its inputs. Under compute skipping
      // the top becomes a view of it (no copy); the other input is not read at all.
      const Tensor& src = p.p >= 1.f ? bottom[1]->value : bottom[0]->value;
      if (skip_unused_) top_.view(top[0]->value, src);
      else top_.own(top[0]->value).copy_from(src);
      return;
    }
    Tensor& y = top_.own(top[0]->value);
    const float* skip = bottom[0]->value.data();
    const float* nw = bottom[1]->value.data();
    DN_DISPATCH(device(), dropin_forward_cpu(p, skip, nw, y.data()),
                dropin_forward_cuda(p, skip, nw, y.data(), cuda_stream()));
  }

  void backward(const std::vector<Blob*>& top, const std::vector<Blob*>& bottom, const std::vector<BottomGrad>& bg,
                const RunContext& ctx) override {
    DropinParams p = params(ctx);
    const float* dy = top[0]->grad.data();
    float* d_skip = bg[0].needed ? bottom[0]->grad.data() : nullptr;
    float* d_new = bg[1].needed ? bottom[1]->grad.data() : nullptr;
    DN_DISPATCH(device(), dropin_backward_cpu(p, dy, bg[0].beta, d_skip, bg[1].beta, d_new),
                dropin_backward_cuda(p, dy, bg[0].beta, d_skip, bg[1].beta, d_new, cuda_stream()));
  }

  double forward_flops() const override { return 3.0 * n_ * c_ * hw_; }
  double forward_flops_used(const RunContext& ctx, const ChannelRange&) const override {
    const float p = current_p(ctx);
    return mode_ == DropinMode::Gradual && skip_unused_ && (p <= 0.f || p >= 1.f) ? 0.0 : forward_flops();
  }

  std::vector<std::pair<std::string, double>> metrics(const RunContext& ctx) const override {
    return {{"p", current_p(ctx)}};
  }

 private:
  PassThroughTop top_;
  DropinMode mode_;
  DropinUnit unit_;
  int64_t length_ = 1, start_ = 0;
  float p_ = 0.f;
  bool test_sample_ = false;
  int64_t n_ = 0, c_ = 0, hw_ = 0;
};

// dropout: key ratio (0.5), or ratio_schedule {from, to, length, start (0)}: the ratio moves
// linearly from `from` to `to` over iterations [start, start + length] (dropnet-probe width: the
// paper's Section 5 sweep from 0.9 down to 0.1 over a run); the current ratio is a layer metric.
class DropoutLayer : public Layer {
 public:
  DropoutLayer(LayerInfo info, ConfigNode& cfg) : Layer(std::move(info)) {
    ConfigNode sched = cfg.optional_child("ratio_schedule");
    if (sched.valid()) {
      if (cfg.has("ratio")) cfg.fail("ratio", "give either ratio or ratio_schedule, not both");
      scheduled_ = true;
      from_ = sched.get_float("from");
      to_ = sched.get_float("to");
      for (auto [key, v] : {std::pair<const char*, double>{"from", from_}, {"to", to_}})
        if (!(v >= 0.0 && v < 1.0)) sched.fail(key, fmt::format("must be in [0, 1), got {}", v));
      length_ = sched.get_positive_int("length");
      start_ = sched.get_int("start", 0);
      if (start_ < 0) sched.fail("start", "must be >= 0");
      sched.finish();
      ratio_ = static_cast<float>(from_);
    } else {
      ratio_ = static_cast<float>(cfg.get_float("ratio", 0.5));
      if (!(ratio_ >= 0.f && ratio_ < 1.f)) cfg.fail("ratio", fmt::format("must be in [0, 1), got {}", ratio_));
    }
  }
  int num_bottoms() const override { return 1; }
  int num_tops() const override { return 1; }
  std::vector<Shape> reshape(const std::vector<Shape>& b) override { return {b[0]}; }

  float current_ratio(const RunContext& ctx) const {
    if (!scheduled_) return ratio_;
    const double t = std::clamp(static_cast<double>(ctx.iter - start_) / static_cast<double>(length_), 0.0, 1.0);
    return static_cast<float>(from_ + (to_ - from_) * t);
  }

  DropoutParams params(const RunContext& ctx, int64_t count) const {
    return DropoutParams{count, current_ratio(ctx), ctx.seed, info_.rng_stream, ctx.rng_step};
  }

  void forward(const std::vector<Blob*>& bottom, const std::vector<Blob*>& top, const RunContext& ctx) override {
    Tensor& y = top[0]->value;
    if (ctx.phase == Phase::Test || current_ratio(ctx) == 0.f) {
      y.copy_from(bottom[0]->value);
      return;
    }
    DropoutParams p = params(ctx, y.count());
    const float* x = bottom[0]->value.data();
    DN_DISPATCH(device(), dropout_forward_cpu(p, x, y.data()), dropout_forward_cuda(p, x, y.data(), cuda_stream()));
  }

  void backward(const std::vector<Blob*>& top, const std::vector<Blob*>& bottom, const std::vector<BottomGrad>& bg,
                const RunContext& ctx) override {
    if (!bg[0].needed) return;
    DropoutParams p = params(ctx, top[0]->grad.count());
    const float* dy = top[0]->grad.data();
    float* dx = bottom[0]->grad.data();
    DN_DISPATCH(device(), dropout_backward_cpu(p, dy, bg[0].beta, dx),
                dropout_backward_cuda(p, dy, bg[0].beta, dx, cuda_stream()));
  }

  std::vector<std::pair<std::string, double>> metrics(const RunContext& ctx) const override {
    if (!scheduled_) return {};
    return {{"ratio", current_ratio(ctx)}};
  }

 private:
  float ratio_;
  bool scheduled_ = false;
  double from_ = 0, to_ = 0;
  int64_t length_ = 1, start_ = 0;
};

// grow (thin-to-wide, the paper's future work (c)): one bottom, one top of its shape; the first
// a(t) channels pass, the rest are zero and receive no gradient. Keys: from (the fraction of
// channels active at first, in (0, 1]), length (iterations to full width), start (0). a(t) is
// ceil((from + (1 - from) * clamp((t - start) / length, 0, 1)) * channels), at least 1
// (grow_active_channels). Placed after a conv or fc, compute skipping leaves the producer's
// inactive channels uncomputed; at full width the top is a view of the bottom.
class GrowLayer : public Layer {
 public:
  GrowLayer(LayerInfo info, ConfigNode& cfg) : Layer(std::move(info)) {
    from_ = cfg.get_float("from");
    if (!(from_ > 0.0 && from_ <= 1.0)) cfg.fail("from", fmt::format("the starting width must be in (0, 1], got {}", from_));
    length_ = cfg.get_positive_int("length");
    start_ = cfg.get_int("start", 0);
    if (start_ < 0) cfg.fail("start", "must be >= 0");
    if (info_.engine != "native") cfg.fail("engine", "grow supports only the native engine");
  }
  int num_bottoms() const override { return 1; }
  int num_tops() const override { return 1; }
  int64_t schedule_start() const override { return start_; }

  std::vector<Shape> reshape(const std::vector<Shape>& b) override {
    p_.n = b[0].n();
    p_.c = num_channels(b[0]);
    p_.hw = b[0].ndim() >= 2 ? b[0].count_from(2) : 1;
    return {b[0]};
  }

  int64_t active(const RunContext& ctx) const { return grow_active_channels(ctx.iter, from_, start_, length_, p_.c); }

  void bottom_use(const RunContext& ctx, const std::vector<ChannelRange>& top,
                  std::vector<ChannelRange>& bottom) const override {
    bottom[0] = intersect(top[0], {0, active(ctx)});
  }

  void forward(const std::vector<Blob*>& bottom, const std::vector<Blob*>& top, const RunContext& ctx) override {
    GrowParams p = p_;
    p.active = active(ctx);
    if (p.active == p.c && skip_unused_) {
      top_.view(top[0]->value, bottom[0]->value);  // full width: the input itself
      return;
    }
    Tensor& y = top_.own(top[0]->value);
    const float* x = bottom[0]->value.data();
    DN_DISPATCH(device(), grow_forward_cpu(p, x, y.data()), grow_forward_cuda(p, x, y.data(), cuda_stream()));
  }

  void backward(const std::vector<Blob*>& top, const std::vector<Blob*>& bottom, const std::vector<BottomGrad>& bg,
                const RunContext& ctx) override {
    if (!bg[0].needed) return;
    GrowParams p = p_;
    p.active = active(ctx);
    const float* dy = top[0]->grad.data();
    float* dx = bottom[0]->grad.data();
    DN_DISPATCH(device(), grow_backward_cpu(p, dy, bg[0].beta, dx),
                grow_backward_cuda(p, dy, bg[0].beta, dx, cuda_stream()));
  }

  std::vector<std::pair<std::string, double>> metrics(const RunContext& ctx) const override {
    return {{"width", static_cast<double>(active(ctx)) / static_cast<double>(std::max<int64_t>(p_.c, 1))}};
  }

 private:
  double from_ = 1.0;
  int64_t length_ = 1, start_ = 0;
  GrowParams p_;
  PassThroughTop top_;
};

}  // namespace

std::unique_ptr<Layer> make_grow_layer(LayerInfo info, ConfigNode& cfg) {
  return std::make_unique<GrowLayer>(std::move(info), cfg);
}

std::unique_ptr<Layer> make_dropin_layer(LayerInfo info, ConfigNode& cfg) {
  return std::make_unique<DropinLayer>(std::move(info), cfg);
}
std::unique_ptr<Layer> make_dropout_layer(LayerInfo info, ConfigNode& cfg) {
  return std::make_unique<DropoutLayer>(std::move(info), cfg);
}

}  // namespace dropnet
