// conv: 2-D convolution, Caffe semantics. Keys: num_output, kernel, stride (1), pad (0), group (1),
// bias (true), weight_filler, bias_filler, lr_mult, decay_mult, algo (implicit_gemm | im2col: the
// native engine's CUDA algorithm). Engines: native (CPU: im2col + SGEMM per image; CUDA: implicit
// GEMM by default, or im2col + the hand-written SGEMM), cublas (im2col + cuBLAS), cudnn. A ReLU
// that reads only this layer's output is applied in the same pass as the bias (Net::fuse_activations).
#include <fmt/format.h>

#include "core/error.h"
#include "kernels/conv.h"
#include "kernels/conv_cudnn.h"
#include "kernels/tile_plan.h"
#include "layers/config_pair.h"
#include "layers/dispatch.h"
#include "layers/registry.h"

namespace dropnet {

namespace {

class ConvLayer : public Layer {
 public:
  ConvLayer(LayerInfo info, ConfigNode& cfg) : Layer(std::move(info)) {
    num_output_ = cfg.get_positive_int("num_output");
    Pair k = read_pair_required(cfg, "kernel", 1);
    Pair s = read_pair(cfg, "stride", 1, 1);
    Pair pd = read_pair(cfg, "pad", 0, 0);
    kh_ = k.h, kw_ = k.w, sh_ = s.h, sw_ = s.w, ph_ = pd.h, pw_ = pd.w;
    group_ = static_cast<int>(cfg.get_positive_int("group", 1));
    bias_ = cfg.get_bool("bias", true);
    weight_filler_ = parse_filler(cfg.optional_child("weight_filler"));
    bias_filler_ = parse_filler(cfg.optional_child("bias_filler"));
    read_param_mults(cfg, &lr_mult_cfg_, &decay_mult_cfg_);
    if (num_output_ % group_ != 0) cfg.fail("group", fmt::format("num_output {} is not divisible by group {}", num_output_, group_));
    implicit_gemm_ = cfg.get_choice("algo", {"implicit_gemm", "im2col"}, "implicit_gemm") == "implicit_gemm";
    if (info_.engine == "cudnn" && !cudnn_compiled())
      cfg.fail("engine", "conv: engine 'cudnn' is not available: this build has no cuDNN (configure with "
                         "-DDROPNET_CUDNN=ON where cuDNN is installed, or use native or cublas)");
  }
  int num_bottoms() const override { return 1; }
  int num_tops() const override { return 1; }

  std::vector<Shape> reshape(const std::vector<Shape>& b) override {
    const Shape& s = b[0];
    if (s.ndim() != 4) input_error("layer '{}': conv needs a 4-D input (N, C, H, W), got {}", name(), s.str());
    if (s.c() % group_ != 0) input_error("layer '{}': input channels {} not divisible by group {}", name(), s.c(), group_);
    p_ = ConvParams{s.n(), s.c(), s.h(), s.w(), num_output_, conv_out_size(s.h(), kh_, sh_, ph_),
                    conv_out_size(s.w(), kw_, sw_, pw_), kh_, kw_, sh_, sw_, ph_, pw_, group_};
    p_.prec = info_.precision;
    if (p_.out_h <= 0 || p_.out_w <= 0)
      input_error("layer '{}': kernel {}x{} (pad {}x{}) does not fit the input {}", name(), kh_, kw_, ph_, pw_, s.str());
    const int64_t fan_in = (s.c() / group_) * kh_ * kw_;
    std::vector<ParamSpec> specs = {{"weight", Shape({num_output_, s.c() / group_, kh_, kw_}), weight_filler_, fan_in}};
    if (bias_) specs.push_back({"bias", Shape({num_output_}), bias_filler_, fan_in});
    declare_params(std::move(specs));
    return {Shape({s.n(), num_output_, p_.out_h, p_.out_w})};
  }

  void forward(const std::vector<Blob*>& bottom, const std::vector<Blob*>& top, const RunContext&) override {
    const float* x = bottom[0]->value.data();
    const float* w = params_[0].value.data();
    const float* bias = bias_ ? params_[1].value.data() : nullptr;
    float* y = top[0]->value.data();
#if DROPNET_HAVE_CUDNN
    if (device().is_cuda() && info_.engine == "cudnn") {
      conv_forward_cudnn(p_, x, w, bias, y, cuda_stream(), act_);
      return;
    }
#endif
#if DROPNET_HAVE_CUDA
    if (device().is_cuda() && info_.engine == "native" && implicit_gemm_) {
      conv_forward_igemm_cuda(p_, x, w, bias, y, cuda_stream(), act_, out_range());
      return;
    }
#endif
    DN_DISPATCH(device(), conv_forward_cpu(p_, x, w, bias, y, scratch_, act_, out_range()),
                conv_forward_cuda(p_, x, w, bias, y, scratch_, info_.engine == "cublas", cuda_stream(), act_));
  }

  void backward(const std::vector<Blob*>& top, const std::vector<Blob*>& bottom, const std::vector<BottomGrad>& bg,
                const RunContext&) override {
    const float* x = bottom[0]->value.data();
    const float* w = params_[0].value.data();
    const float* dy = top[0]->grad.data();
    float* dw = params_[0].grad.data();
    float* db = bias_ ? params_[1].grad.data() : nullptr;
    float* dx = bg[0].needed ? bottom[0]->grad.data() : nullptr;
#if DROPNET_HAVE_CUDNN
    if (device().is_cuda() && info_.engine == "cudnn") {
      conv_backward_cudnn(p_, x, w, dy, dw, db, bg[0].beta, dx, cuda_stream());
      return;
    }
#endif
#if DROPNET_HAVE_CUDA
    if (device().is_cuda() && info_.engine == "native" && implicit_gemm_) {
      conv_backward_igemm_cuda(p_, x, w, dy, dw, db, bg[0].beta, dx, cuda_stream(), out_range());
      return;
    }
#endif
    DN_DISPATCH(device(), conv_backward_cpu(p_, x, w, dy, dw, db, bg[0].beta, dx, scratch_, out_range()),
                conv_backward_cuda(p_, x, w, dy, dw, db, bg[0].beta, dx, scratch_, info_.engine == "cublas",
                                   cuda_stream()));
  }

  bool fuse_activation(const Activation& a) override {
    act_ = a;
    return true;
  }

  double forward_flops() const override {
    return 2.0 * p_.n * p_.out_c * p_.out_h * p_.out_w * (p_.c / p_.group) * p_.kh * p_.kw;
  }
  std::vector<GemmExtent> gemm_extents() const override {
    // The GEMMs (per group) as kernels/tile_plan.h's plan_conv cuts the three passes; the SM count
    // only picks tiles, which the model plans again for its GPU.
    const tile_plan::ConvPlan pl = tile_plan::plan_conv(p_, 1);
    auto extent = [&](GemmPass pass, const tile_plan::Grid& g) { return GemmExtent{pass, g.m, g.n, g.k, p_.group, true}; };
    return {extent(GemmPass::Fwd, pl.fwd), extent(GemmPass::BwdData, pl.bwd_data),
            extent(GemmPass::BwdFilter, pl.bwd_filter)};
  }
  double forward_flops_used(const RunContext&, const ChannelRange& use) const override {
    const ConvOutRange r = range_for(use);
    return forward_flops() * static_cast<double>(r.end - r.begin) / static_cast<double>(p_.out_c);
  }

 private:
  // Compute skipping: the output channels computed, those read of the top (group 1; on CUDA the
  // native implicit-GEMM path only: im2col, cuBLAS and cuDNN compute every channel).
  ConvOutRange range_for(const ChannelRange& use) const {
    const bool ranged = device().is_cpu() || (info_.engine == "native" && implicit_gemm_);
    if (group_ != 1 || !ranged) return {0, p_.out_c};
    const ChannelRange r = intersect(use, {0, p_.out_c});
    return r.empty() ? ConvOutRange{0, p_.out_c} : ConvOutRange{r.begin, r.end};
  }
  ConvOutRange out_range() const { return range_for(top_use_); }

  int64_t num_output_;
  int kh_, kw_, sh_, sw_, ph_, pw_, group_;
  bool bias_;
  bool implicit_gemm_;
  FillerSpec weight_filler_, bias_filler_;
  ConvParams p_{};
  ConvScratch scratch_;
  Activation act_{};  // fused into the output (Net::fuse_activations)
};

}  // namespace

std::unique_ptr<Layer> make_conv_layer(LayerInfo info, ConfigNode& cfg) {
  return std::make_unique<ConvLayer>(std::move(info), cfg);
}

}  // namespace dropnet
