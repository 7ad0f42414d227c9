// pool: max / average pooling with Caffe's ceil-mode output size. Keys: method (max | ave),
// kernel, stride (1), pad (0).
#include "core/device_array.h"
#include "core/error.h"
#include "kernels/pool.h"
#include "layers/config_pair.h"
#include "layers/dispatch.h"
#include "layers/registry.h"

namespace dropnet {

namespace {

class PoolLayer : public Layer {
 public:
  PoolLayer(LayerInfo info, ConfigNode& cfg) : Layer(std::move(info)) {
    method_ = cfg.get_choice("method", {"max", "ave"}, "max") == "max" ? PoolMethod::Max : PoolMethod::Ave;
    kernel_ = read_pair_required(cfg, "kernel", 1);
    stride_ = read_pair(cfg, "stride", 1, 1);
    pad_ = read_pair(cfg, "pad", 0, 0);
    if (info_.engine != "native") cfg.fail("engine", "pool supports only the native engine");
  }
  int num_bottoms() const override { return 1; }
  int num_tops() const override { return 1; }

  std::vector<Shape> reshape(const std::vector<Shape>& b) override {
    const Shape& s = b[0];
    if (s.ndim() != 4) input_error("layer '{}': pool needs a 4-D input (N, C, H, W), got {}", name(), s.str());
    try {
      p_ = make_pool_params(method_, kernel_.h, kernel_.w, stride_.h, stride_.w, pad_.h, pad_.w, s.n(), s.c(), s.h(),
                            s.w());
    } catch (const Error& e) {
      input_error("layer '{}': {}", name(), e.what());
    }
    Shape out({s.n(), s.c(), p_.out_h, p_.out_w});
    if (method_ == PoolMethod::Max) argmax_.resize(out.count(), device());
    return {out};
  }

  void forward(const std::vector<Blob*>& bottom, const std::vector<Blob*>& top, const RunContext&) override {
    const float* x = bottom[0]->value.data();
    float* y = top[0]->value.data();
    int32_t* am = argmax_.data();
    DN_DISPATCH(device(), pool_forward_cpu(p_, x, y, am), pool_forward_cuda(p_, x, y, am, cuda_stream()));
  }

  void backward(const std::vector<Blob*>& top, const std::vector<Blob*>& bottom, const std::vector<BottomGrad>& bg,
                const RunContext&) override {
    if (!bg[0].needed) return;
    const float* dy = top[0]->grad.data();
    float* dx = bottom[0]->grad.data();
    const int32_t* am = argmax_.data();
    DN_DISPATCH(device(), pool_backward_cpu(p_, dy, am, bg[0].beta, dx),
                pool_backward_cuda(p_, dy, am, bg[0].beta, dx, cuda_stream()));
  }

  double forward_flops() const override {
    return static_cast<double>(p_.n) * p_.c * p_.out_h * p_.out_w * p_.kernel_h * p_.kernel_w;
  }

 private:
  PoolMethod method_;
  Pair kernel_{}, stride_{}, pad_{};
  PoolParams p_{};
  DeviceArray<int32_t> argmax_;  // MAX only: (N, C, out_h, out_w), empty (null data) for AVE
};

}  // namespace

std::unique_ptr<Layer> make_pool_layer(LayerInfo info, ConfigNode& cfg) {
  return std::make_unique<PoolLayer>(std::move(info), cfg);
}

}  // namespace dropnet
