// softmax_loss (bottoms: scores, label; top: loss; keys loss_weight (1), ignore_label) and
// accuracy (bottoms: scores, label; top: accuracy; key top_k (1)). The class axis is 1.
#include <fmt/format.h>

#include "core/error.h"
#include "kernels/softmax_loss.h"
#include "layers/dispatch.h"
#include "layers/registry.h"

namespace dropnet {

namespace {

SoftmaxParams softmax_params(const std::string& layer, const Shape& scores, const Shape& labels) {
  SoftmaxParams p{scores.n(), scores.c(), scores.count_from(2), 0, false};
  if (scores.ndim() < 2) input_error("layer '{}': scores must be at least 2-D (N, classes), got {}", layer, scores.str());
  if (labels.count() != p.outer * p.inner)
    input_error("layer '{}': {} labels for scores {} (expected {})", layer, labels.count(), scores.str(),
                p.outer * p.inner);
  return p;
}

void read_labels_checked(const Tensor& labels, const SoftmaxParams& p, std::vector<float>* host) {
  // Labels are validated on the host for CUDA nets too (a bad label is bad input, not a crash).
  *host = labels.to_host();
  for (size_t j = 0; j < host->size(); ++j) {
    float l = (*host)[j];
    if (p.has_ignore && static_cast<int>(l) == p.ignore_label) continue;
    if (!(l >= 0.f) || l >= static_cast<float>(p.classes) || l != static_cast<float>(static_cast<int>(l)))
      input_error("label {} at position {} is not a class index in [0, {})", l, j, p.classes);
  }
}

// The CPU kernels check their labels themselves. A CUDA layer in a net checks them on the device
// (the net reads the result back: Net::forward, the solver's read-back points); outside a net, on
// the host.
void check_labels_on(const Tensor& labels, const SoftmaxParams& p, const RunContext& ctx) {
  if (!labels.device().is_cuda()) return;
#if DROPNET_HAVE_CUDA
  if (ctx.check != nullptr) {
    check_labels_cuda(p, labels.data(), ctx.check, cuda_stream());
    return;
  }
#endif
  std::vector<float> host;
  read_labels_checked(labels, p, &host);
}

class SoftmaxLossLayer : public Layer {
 public:
  SoftmaxLossLayer(LayerInfo info, ConfigNode& cfg) : Layer(std::move(info)) {
    loss_weight_ = static_cast<float>(cfg.get_float("loss_weight", 1.0));
    if (cfg.has("ignore_label")) {
      ignore_ = static_cast<int>(cfg.get_int("ignore_label"));
      has_ignore_ = true;
    }
  }
  int num_bottoms() const override { return 2; }
  int num_tops() const override { return 1; }
  bool can_backprop_to(int i) const override { return i == 0; }
  float loss_weight() const override { return loss_weight_; }

  std::vector<Shape> reshape(const std::vector<Shape>& b) override {
    p_ = softmax_params(name(), b[0], b[1]);
    p_.ignore_label = ignore_;
    p_.has_ignore = has_ignore_;
    if (prob_.empty()) prob_ = Tensor(b[0], device());
    else prob_.reshape(b[0]);
    if (device().is_cuda()) scratch_ = Tensor(Shape({2 * p_.outer * p_.inner}), device());
    return {Shape({1})};
  }

  void forward(const std::vector<Blob*>& bottom, const std::vector<Blob*>& top, const RunContext& ctx) override {
    const float* x = bottom[0]->value.data();
    const float* labels = bottom[1]->value.data();
    float* loss = top[0]->value.data();
    check_labels(bottom[1]->value, ctx);
    DN_DISPATCH(device(), softmax_loss_forward_cpu(p_, x, labels, prob_.data(), loss),
                softmax_loss_forward_cuda(p_, x, labels, prob_.data(), scratch_.data(), loss, cuda_stream()));
  }

  void check_labels(const Tensor& labels, const RunContext& ctx) const { check_labels_on(labels, p_, ctx); }

  void backward(const std::vector<Blob*>&, const std::vector<Blob*>& bottom, const std::vector<BottomGrad>& bg,
                const RunContext&) override {
    if (!bg[0].needed) return;
    const float* labels = bottom[1]->value.data();
    float* dx = bottom[0]->grad.data();
    DN_DISPATCH(device(), softmax_loss_backward_cpu(p_, prob_.data(), labels, loss_weight_, bg[0].beta, dx),
                softmax_loss_backward_cuda(p_, prob_.data(), labels, loss_weight_, bg[0].beta, scratch_.data(), dx,
                                           cuda_stream()));
  }

  double forward_flops() const override { return 3.0 * p_.outer * p_.classes * p_.inner; }

 private:
  float loss_weight_;
  int ignore_ = -1;
  bool has_ignore_ = false;
  SoftmaxParams p_{};
  Tensor prob_;     // softmax output, same shape as the scores
  Tensor scratch_;  // CUDA: per-position losses and validity
};

class AccuracyLayer : public Layer {
 public:
  AccuracyLayer(LayerInfo info, ConfigNode& cfg) : Layer(std::move(info)) {
    top_k_ = static_cast<int>(cfg.get_positive_int("top_k", 1));
    if (cfg.has("ignore_label")) {
      ignore_ = static_cast<int>(cfg.get_int("ignore_label"));
      has_ignore_ = true;
    }
  }
  int num_bottoms() const override { return 2; }
  int num_tops() const override { return 1; }
  bool can_backprop_to(int) const override { return false; }

  std::vector<Shape> reshape(const std::vector<Shape>& b) override {
    p_ = softmax_params(name(), b[0], b[1]);
    p_.ignore_label = ignore_;
    p_.has_ignore = has_ignore_;
    if (top_k_ > p_.classes)
      input_error("layer '{}': top_k {} exceeds the number of classes {}", name(), top_k_, p_.classes);
    if (device().is_cuda()) scratch_ = Tensor(Shape({2 * p_.outer * p_.inner}), device());
    return {Shape({1})};
  }

  void forward(const std::vector<Blob*>& bottom, const std::vector<Blob*>& top, const RunContext& ctx) override {
    const float* x = bottom[0]->value.data();
    const float* labels = bottom[1]->value.data();
    float* acc = top[0]->value.data();
    check_labels(bottom[1]->value, ctx);
    DN_DISPATCH(device(), accuracy_forward_cpu(p_, top_k_, x, labels, acc),
                accuracy_forward_cuda(p_, top_k_, x, labels, scratch_.data(), acc, cuda_stream()));
  }
  void backward(const std::vector<Blob*>&, const std::vector<Blob*>&, const std::vector<BottomGrad>&,
                const RunContext&) override {}
  void check_labels(const Tensor& labels, const RunContext& ctx) const { check_labels_on(labels, p_, ctx); }

 private:
  int top_k_;
  int ignore_ = -1;
  bool has_ignore_ = false;
  SoftmaxParams p_{};
  Tensor scratch_;
};

}  // namespace

std::unique_ptr<Layer> make_softmax_loss_layer(LayerInfo info, ConfigNode& cfg) {
  return std::make_unique<SoftmaxLossLayer>(std::move(info), cfg);
}
std::unique_ptr<Layer> make_accuracy_layer(LayerInfo info, ConfigNode& cfg) {
  return std::make_unique<AccuracyLayer>(std::move(info), cfg);
}

}  // namespace dropnet
