// fc: fully connected (Caffe InnerProduct). y (N, num_output) = x (N, K) W^T + b, W stored
// (num_output, K); the input is flattened from axis 1. Keys: num_output, bias (true), fillers,
// lr_mult, decay_mult. Engines: native, cublas. A ReLU that reads only this layer's output is applied
// in the bias pass (Net::fuse_activations).
#include "core/error.h"
#include "kernels/eltwise.h"
#include "kernels/gemm.h"
#include "layers/dispatch.h"
#include "layers/registry.h"

namespace dropnet {

namespace {

class FcLayer : public Layer {
 public:
  FcLayer(LayerInfo info, ConfigNode& cfg) : Layer(std::move(info)) {
    num_output_ = cfg.get_positive_int("num_output");
    bias_ = cfg.get_bool("bias", true);
    weight_filler_ = parse_filler(cfg.optional_child("weight_filler"));
    bias_filler_ = parse_filler(cfg.optional_child("bias_filler"));
    read_param_mults(cfg, &lr_mult_cfg_, &decay_mult_cfg_);
    if (info_.engine == "cudnn") cfg.fail("engine", "fc: engine 'cudnn' is not supported (use native or cublas)");
  }
  int num_bottoms() const override { return 1; }
  int num_tops() const override { return 1; }

  std::vector<Shape> reshape(const std::vector<Shape>& b) override {
    n_ = b[0].n();
    k_ = b[0].count_from(1);
    if (b[0].ndim() < 1 || k_ <= 0) input_error("layer '{}': fc needs a non-empty input, got {}", name(), b[0].str());
    std::vector<ParamSpec> specs = {{"weight", Shape({num_output_, k_}), weight_filler_, k_}};
    if (bias_) specs.push_back({"bias", Shape({num_output_}), bias_filler_, k_});
    declare_params(std::move(specs));
    return {Shape({n_, num_output_})};
  }

  void forward(const std::vector<Blob*>& bottom, const std::vector<Blob*>& top, const RunContext&) override {
    const float* x = bottom[0]->value.data();
    const float* w = params_[0].value.data();
    float* y = top[0]->value.data();
    DN_DISPATCH(device(),
                sgemm_cpu_prec(false, true, n_, num_output_, k_, 1.f, x, k_, w, k_, 0.f, y, num_output_,
                               info_.precision),
                gemm_cuda(false, true, n_, num_output_, k_, x, k_, w, k_, 0.f, y, num_output_));
    const float* b = bias_ ? params_[1].value.data() : nullptr;
    DN_DISPATCH(device(), bias_forward_cpu(n_, num_output_, 1, b, y, act_),
                bias_forward_cuda(n_, num_output_, 1, b, y, cuda_stream(), act_));
  }
  bool fuse_activation(const Activation& a) override {
    act_ = a;
    return true;
  }

  void backward(const std::vector<Blob*>& top, const std::vector<Blob*>& bottom, const std::vector<BottomGrad>& bg,
                const RunContext&) override {
    const float* x = bottom[0]->value.data();
    const float* w = params_[0].value.data();
    const float* dy = top[0]->grad.data();
    float* dw = params_[0].grad.data();
    // dW (num_output, K) += dy^T (num_output, N) x (N, K)
    DN_DISPATCH(device(),
                sgemm_cpu_prec(true, false, num_output_, k_, n_, 1.f, dy, num_output_, x, k_, 1.f, dw, k_,
                               info_.precision),
                gemm_cuda(true, false, num_output_, k_, n_, dy, num_output_, x, k_, 1.f, dw, k_));
    if (bias_) {
      float* db = params_[1].grad.data();
      DN_DISPATCH(device(), bias_backward_cpu(n_, num_output_, 1, dy, db),
                  bias_backward_cuda(n_, num_output_, 1, dy, db, cuda_stream()));
    }
    if (bg[0].needed) {
      float* dx = bottom[0]->grad.data();
      // dx (N, K) = dy (N, num_output) W (num_output, K) + beta dx
      DN_DISPATCH(device(),
                  sgemm_cpu_prec(false, false, n_, k_, num_output_, 1.f, dy, num_output_, w, k_, bg[0].beta, dx,
                                 k_, info_.precision),
                  gemm_cuda(false, false, n_, k_, num_output_, dy, num_output_, w, k_, bg[0].beta, dx, k_));
    }
  }

  double forward_flops() const override { return 2.0 * n_ * num_output_ * k_; }
  std::vector<GemmExtent> gemm_extents() const override {  // the three SGEMMs above
    return {{GemmPass::Fwd, n_, num_output_, k_, 1, false},
            {GemmPass::BwdData, n_, k_, num_output_, 1, false},
            {GemmPass::BwdFilter, num_output_, k_, n_, 1, false}};
  }

 private:
#if DROPNET_HAVE_CUDA
  void gemm_cuda(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                 int64_t ldb, float beta, float* c, int64_t ldc) {
    if (info_.engine == "cublas")
      sgemm_cublas_prec(ta, tb, m, n, k, 1.f, a, lda, b, ldb, beta, c, ldc, info_.precision, cuda_stream());
    else sgemm_cuda_prec(ta, tb, m, n, k, 1.f, a, lda, b, ldb, beta, c, ldc, info_.precision, cuda_stream());
  }
#endif
  int64_t num_output_, n_ = 0, k_ = 0;
  bool bias_;
  FillerSpec weight_filler_, bias_filler_;
  Activation act_{};  // fused into the bias pass (Net::fuse_activations)
};

}  // namespace

std::unique_ptr<Layer> make_fc_layer(LayerInfo info, ConfigNode& cfg) {
  return std::make_unique<FcLayer>(std::move(info), cfg);
}

}  // namespace dropnet
