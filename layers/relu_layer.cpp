// relu: y = max(x, 0) + negative_slope * min(x, 0).
#include "kernels/eltwise.h"
#include "layers/dispatch.h"
#include "layers/registry.h"

namespace dropnet {

namespace {

class ReluLayer : public Layer {
 public:
  ReluLayer(LayerInfo info, ConfigNode& cfg) : Layer(std::move(info)) {
    slope_ = static_cast<float>(cfg.get_float("negative_slope", 0.0));
  }
  int num_bottoms() const override { return 1; }
  int num_tops() const override { return 1; }
  std::vector<Shape> reshape(const std::vector<Shape>& b) override { return {b[0]}; }
  void forward(const std::vector<Blob*>& bottom, const std::vector<Blob*>& top, const RunContext&) override {
    const int64_t n = bottom[0]->value.count();
    const float* x = bottom[0]->value.data();
    float* y = top[0]->value.data();
    DN_DISPATCH(device(), relu_forward_cpu(n, slope_, x, y), relu_forward_cuda(n, slope_, x, y, cuda_stream()));
  }
  void backward(const std::vector<Blob*>& top, const std::vector<Blob*>& bottom, const std::vector<BottomGrad>& bg,
                const RunContext&) override {
    if (!bg[0].needed) return;
    const int64_t n = bottom[0]->value.count();
    const float* x = bottom[0]->value.data();
    const float* dy = top[0]->grad.data();
    float* dx = bottom[0]->grad.data();
    DN_DISPATCH(device(), relu_backward_cpu(n, slope_, x, dy, bg[0].beta, dx),
                relu_backward_cuda(n, slope_, x, dy, bg[0].beta, dx, cuda_stream()));
  }
  double forward_flops() const override { return 0.0; }
  // Element-wise: reads the channels of its input that are read of its output (it computes the
  // whole tensor, which costs little next to the producer it lets skip channels).
  void bottom_use(const RunContext&, const std::vector<ChannelRange>& top, std::vector<ChannelRange>& bottom) const override {
    bottom[0] = top[0];
  }
  // Fusable when the backward may read the activated value for the input: sign(y) == sign(x).
  std::optional<Activation> as_activation() const override {
    if (slope_ < 0.f) return std::nullopt;
    return Activation{true, slope_};
  }

 private:
  float slope_;
};

}  // namespace

std::unique_ptr<Layer> make_relu_layer(LayerInfo info, ConfigNode& cfg) {
  return std::make_unique<ReluLayer>(std::move(info), cfg);
}

}  // namespace dropnet
