// cuDNN convolution engine (see conv_cudnn.h). Built only with cuDNN; uses the legacy
// descriptor API, which cuDNN 9 still ships (cudnn_cnn.h / cudnn_ops.h, marked deprecated).
#include "kernels/conv_cudnn.h"

#if DROPNET_HAVE_CUDNN

#include <cudnn.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <climits>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/cuda_check.h"
#include "core/error.h"
#include "core/launch.cuh"
#include "core/tensor.h"
#include "kernels/eltwise.h"

namespace dropnet {

namespace {

int current_device() {
  int d = 0;
  DN_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

// One handle per (thread, device), never destroyed (like the compute stream); the stream is set
// on every use because callers may pass any stream.
cudnnHandle_t handle_for(int device, Stream stream) {
  static thread_local std::unordered_map<int, cudnnHandle_t> handles;
  auto it = handles.find(device);
  if (it == handles.end()) {
    cudnnHandle_t h = nullptr;
    DN_CUDNN_CHECK(cudnnCreate(&h));
    it = handles.emplace(device, h).first;
  }
  DN_CUDNN_CHECK(cudnnSetStream(it->second, stream));
  return it->second;
}

// The workspace of this thread on `device`, at least `bytes` long. Grown (never shrunk) through the
// caching allocator; stream order keeps a reallocation safe while earlier kernels still run.
void* workspace(int device, size_t bytes) {
  static thread_local std::unordered_map<int, Tensor> buffers;
  if (bytes == 0) return nullptr;
  Tensor& t = buffers[device];
  const int64_t floats = static_cast<int64_t>((bytes + sizeof(float) - 1) / sizeof(float));
  if (t.empty() || t.count() < floats) t = Tensor(Shape({floats}), Device::cuda(device));
  return t.data();
}

const char* fwd_name(cudnnConvolutionFwdAlgo_t a) {
  switch (a) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return "IMPLICIT_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return "IMPLICIT_PRECOMP_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return "GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return "DIRECT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    default: return "?";
  }
}
const char* bwd_data_name(cudnnConvolutionBwdDataAlgo_t a) {
  switch (a) {
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0: return "ALGO_0";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1: return "ALGO_1";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    default: return "?";
  }
}
const char* bwd_filter_name(cudnnConvolutionBwdFilterAlgo_t a) {
  switch (a) {
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0: return "ALGO_0";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1: return "ALGO_1";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3: return "ALGO_3";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING: return "FFT_TILING";
    default: return "?";
  }
}

std::string shape_str(const ConvParams& p) {
  return fmt::format("x ({}, {}, {}, {}), {} outputs, kernel {}x{}, stride {}x{}, pad {}x{}, group {}", p.n, p.c,
                     p.h, p.w, p.out_c, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.group);
}

std::string bytes_str(size_t b) {
  if (b >= (size_t(1) << 20)) return fmt::format("{:.1f} MB", static_cast<double>(b) / (1 << 20));
  if (b >= 1024) return fmt::format("{:.1f} KB", static_cast<double>(b) / 1024);
  return fmt::format("{} B", b);
}

// Descriptors of one shape plus the algorithm chosen per direction.
struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  bool has_fwd = false, has_bwd_data = false, has_bwd_filter = false;
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t bwd_data{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
  size_t fwd_ws = 0, bwd_data_ws = 0, bwd_filter_ws = 0;

  explicit Plan(const ConvParams& p) {
    // cuDNN's legacy 4-D descriptors take int extents and address < 2^31 elements per tensor.
    const int64_t x_count = p.n * p.c * p.h * p.w, y_count = p.n * p.out_c * p.out_h * p.out_w;
    if (x_count > INT_MAX || y_count > INT_MAX) {
      const int64_t per_image = std::max(p.c * p.h * p.w, p.out_c * p.out_h * p.out_w);
      input_error("conv engine 'cudnn': a tensor of {} elements exceeds cuDNN's 2^31 limit ({}). Use engine native "
                  "with `algo: im2col` (it works through the batch in chunks with 64-bit indexing), or lower "
                  "batch_size to at most {}",
                  std::max(x_count, y_count), shape_str(p), std::max<int64_t>(1, INT_MAX / per_image));
    }
    DN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    DN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    DN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&bias));
    DN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    DN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    const auto i = [](int64_t v) { return static_cast<int>(v); };
    DN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, i(p.n), i(p.c), i(p.h), i(p.w)));
    DN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, i(p.n), i(p.out_c), i(p.out_h),
                                              i(p.out_w)));
    DN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, i(p.out_c), 1, 1));
    DN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, i(p.out_c), i(p.c / p.group),
                                              p.kh, p.kw));
    DN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, p.ph, p.pw, p.sh, p.sw, 1, 1, CUDNN_CROSS_CORRELATION,
                                                   CUDNN_DATA_FLOAT));
    DN_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, p.group));
    // CUDNN_DEFAULT_MATH permits TF32 tensor cores on Ampere and later; FMA math forbids them,
    // so fp32 results stay FP32 and comparable with the native engine. tf32 / bf16 ask for the
    // tensor cores (bf16 operands arrive rounded: see Bf16Operand).
    DN_CUDNN_CHECK(
        cudnnSetConvolutionMathType(conv, p.prec == Precision::FP32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH));
    // Our output size must be cuDNN's (same floor formula); a mismatch would corrupt memory.
    int n = 0, c = 0, h = 0, ww = 0;
    DN_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &n, &c, &h, &ww));
    DN_CHECK(n == p.n && c == p.out_c && h == p.out_h && ww == p.out_w,
             "cuDNN output ({}, {}, {}, {}) differs from ours for {}", n, c, h, ww, shape_str(p));
  }
  ~Plan() {
    // Destroy failures at teardown are not actionable; ignore their status.
    if (conv) (void)cudnnDestroyConvolutionDescriptor(conv);
    if (w) (void)cudnnDestroyFilterDescriptor(w);
    if (bias) (void)cudnnDestroyTensorDescriptor(bias);
    if (y) (void)cudnnDestroyTensorDescriptor(y);
    if (x) (void)cudnnDestroyTensorDescriptor(x);
  }
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
};

using PlanKey = std::array<int64_t, 16>;

PlanKey key_of(int device, const ConvParams& p) {
  return {device, p.n,  p.c,  p.h,  p.w,  p.out_c, p.out_h, p.out_w, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.group,
          static_cast<int64_t>(p.prec)};
}

struct Registry {
  std::mutex mu;  // guards plans, options and every algorithm search
  std::map<PlanKey, std::unique_ptr<Plan>> plans;
  CudnnConvOptions options;
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: plans may be used during static teardown
  return *r;
}

size_t workspace_limit(const CudnnConvOptions& o) {
  if (o.workspace_limit > 0) return o.workspace_limit;
  size_t free_b = 0, total_b = 0;
  DN_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return std::min<size_t>(size_t(1) << 30, free_b / 4);
}

// Whether a search result may be chosen: it ran, fits the workspace, uses FP32 FMA math at fp32
// (never tensor-core math; at tf32 / bf16 either) and is deterministic when that is required.
template <typename Perf>
bool acceptable(const Perf& r, size_t limit, const CudnnConvOptions& o, Precision prec) {
  if (r.status != CUDNN_STATUS_SUCCESS || r.memory > limit) return false;
  if (prec == Precision::FP32 &&
      (r.mathType == CUDNN_TENSOR_OP_MATH || r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
    return false;
  if (o.deterministic && r.determinism != CUDNN_DETERMINISTIC) return false;
  return true;
}

[[noreturn]] void no_algorithm(const char* direction, const ConvParams& p, size_t limit, int returned,
                               const CudnnConvOptions& o) {
  input_error("conv engine 'cudnn': no {} algorithm qualifies for {} ({} candidates, workspace limit {}, {} math{}); "
              "use the native or cublas engine",
              direction, shape_str(p), returned, bytes_str(limit),
              p.prec == Precision::FP32 ? "FMA" : "tensor-op or FMA", o.deterministic ? ", deterministic" : "");
}

// Plans are found under the registry lock; the returned pointer stays valid until the options change.
Plan& plan_for(int device, const ConvParams& p) {
  Registry& r = registry();
  auto& slot = r.plans[key_of(device, p)];
  if (!slot) slot = std::make_unique<Plan>(p);
  return *slot;
}

void choose_fwd(Plan& pl, const ConvParams& p, cudnnHandle_t h, int device, const float* x, const float* w,
                float* y, const CudnnConvOptions& o) {
  const size_t limit = workspace_limit(o);
  int max_count = 0;
  DN_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionFwdAlgoPerf_t> res(static_cast<size_t>(std::max(max_count, 1)));
  int returned = 0;
  if (o.search == CudnnAlgoSearch::Exhaustive) {
    // Search workspace: the largest any algorithm asks for, capped at the limit.
    size_t search_ws = 0;
    for (int a = 0; a < CUDNN_CONVOLUTION_FWD_ALGO_COUNT; ++a) {
      size_t s = 0;
      if (cudnnGetConvolutionForwardWorkspaceSize(h, pl.x, pl.w, pl.conv, pl.y, static_cast<cudnnConvolutionFwdAlgo_t>(a),
                                                  &s) == CUDNN_STATUS_SUCCESS && s <= limit)
        search_ws = std::max(search_ws, s);
    }
    // y is overwritten by the forward pass that follows, so the search may scribble on it.
    DN_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, pl.x, x, pl.w, w, pl.conv, pl.y, y, max_count, &returned,
                                                          res.data(), workspace(device, search_ws), search_ws));
  } else {
    DN_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, pl.x, pl.w, pl.conv, pl.y, max_count, &returned,
                                                          res.data()));
  }
  // Results come sorted best first (measured time, or the heuristic's ranking).
  for (int i = 0; i < returned; ++i) {
    if (!acceptable(res[i], limit, o, p.prec)) continue;
    pl.fwd = res[i].algo;
    DN_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, pl.x, pl.w, pl.conv, pl.y, pl.fwd, &pl.fwd_ws));
    pl.has_fwd = true;
    return;
  }
  no_algorithm("forward", p, limit, returned, o);
}

void choose_bwd_data(Plan& pl, const ConvParams& p, cudnnHandle_t h, int device, const float* w, const float* dy,
                     const CudnnConvOptions& o) {
  const size_t limit = workspace_limit(o);
  int max_count = 0;
  DN_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> res(static_cast<size_t>(std::max(max_count, 1)));
  int returned = 0;
  if (o.search == CudnnAlgoSearch::Exhaustive) {
    size_t search_ws = 0;
    for (int a = 0; a < CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT; ++a) {
      size_t s = 0;
      if (cudnnGetConvolutionBackwardDataWorkspaceSize(h, pl.w, pl.y, pl.conv, pl.x,
                                                       static_cast<cudnnConvolutionBwdDataAlgo_t>(a),
                                                       &s) == CUDNN_STATUS_SUCCESS && s <= limit)
        search_ws = std::max(search_ws, s);
    }
    // dx may have to accumulate: search into a scratch tensor instead.
    Tensor dx_scratch(Shape({p.n * p.c * p.h * p.w}), Device::cuda(device));
    void* ws = workspace(device, search_ws);
    DN_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(h, pl.w, w, pl.y, dy, pl.conv, pl.x, dx_scratch.data(),
                                                               max_count, &returned, res.data(), ws, search_ws));
  } else {
    DN_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, pl.w, pl.y, pl.conv, pl.x, max_count, &returned,
                                                               res.data()));
  }
  for (int i = 0; i < returned; ++i) {
    if (!acceptable(res[i], limit, o, p.prec)) continue;
    pl.bwd_data = res[i].algo;
    DN_CUDNN_CHECK(
        cudnnGetConvolutionBackwardDataWorkspaceSize(h, pl.w, pl.y, pl.conv, pl.x, pl.bwd_data, &pl.bwd_data_ws));
    pl.has_bwd_data = true;
    return;
  }
  no_algorithm("backward-data", p, limit, returned, o);
}

void choose_bwd_filter(Plan& pl, const ConvParams& p, cudnnHandle_t h, int device, const float* x, const float* dy,
                       const CudnnConvOptions& o) {
  const size_t limit = workspace_limit(o);
  int max_count = 0;
  DN_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> res(static_cast<size_t>(std::max(max_count, 1)));
  int returned = 0;
  if (o.search == CudnnAlgoSearch::Exhaustive) {
    size_t search_ws = 0;
    for (int a = 0; a < CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT; ++a) {
      size_t s = 0;
      if (cudnnGetConvolutionBackwardFilterWorkspaceSize(h, pl.x, pl.y, pl.conv, pl.w,
                                                         static_cast<cudnnConvolutionBwdFilterAlgo_t>(a),
                                                         &s) == CUDNN_STATUS_SUCCESS && s <= limit)
        search_ws = std::max(search_ws, s);
    }
    // dw accumulates: search into a scratch tensor.
    Tensor dw_scratch(Shape({p.out_c * (p.c / p.group) * p.kh * p.kw}), Device::cuda(device));
    void* ws = workspace(device, search_ws);
    DN_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, pl.x, x, pl.y, dy, pl.conv, pl.w,
                                                                 dw_scratch.data(), max_count, &returned, res.data(),
                                                                 ws, search_ws));
  } else {
    DN_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, pl.x, pl.y, pl.conv, pl.w, max_count, &returned,
                                                                 res.data()));
  }
  for (int i = 0; i < returned; ++i) {
    if (!acceptable(res[i], limit, o, p.prec)) continue;
    pl.bwd_filter = res[i].algo;
    DN_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, pl.x, pl.y, pl.conv, pl.w, pl.bwd_filter,
                                                                  &pl.bwd_filter_ws));
    pl.has_bwd_filter = true;
    return;
  }
  no_algorithm("backward-filter", p, limit, returned, o);
}

}  // namespace

void set_cudnn_conv_options(const CudnnConvOptions& o) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.options = o;
  r.plans.clear();
}

CudnnConvOptions cudnn_conv_options() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  return r.options;
}

std::string cudnn_version_string() {
  const size_t v = cudnnGetVersion();  // major * 10000 + minor * 100 + patch since cuDNN 9
  return fmt::format("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100);
}

namespace {

__global__ void round_bf16_kernel(const float* __restrict__ in, int64_t n, float* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = precision::round_bf16(in[i]);
}

// An operand as cuDNN gets it at bf16: FP32 tensors cannot ask cuDNN to round to BF16, so it
// reads a rounded copy (stream-ordered scratch, freed at scope exit). A BF16 value is exact in
// TF32 and FP32, so whatever math the chosen algorithm uses, the products are those of the BF16
// operands, as on the other engines. At fp32 / tf32 the operand itself.
class Bf16Operand {
 public:
  Bf16Operand(const ConvParams& p, const float* x, int64_t n, cudaStream_t s) : p_(x), s_(s) {
    if (p.prec != Precision::BF16 || x == nullptr) return;
    copy_ = static_cast<float*>(stream_scratch_alloc(sizeof(float) * n, s));
    DN_LAUNCH(round_bf16_kernel, grid_for(n), 256, 0, s, x, n, copy_);
    p_ = copy_;
  }
  ~Bf16Operand() {
    if (copy_ != nullptr) stream_scratch_free(copy_, s_);
  }
  Bf16Operand(const Bf16Operand&) = delete;
  Bf16Operand& operator=(const Bf16Operand&) = delete;
  const float* get() const { return p_; }

 private:
  const float* p_;
  float* copy_ = nullptr;
  cudaStream_t s_;
};

int64_t x_count(const ConvParams& p) { return p.n * p.c * p.h * p.w; }
int64_t w_count(const ConvParams& p) { return p.out_c * (p.c / p.group) * p.kh * p.kw; }
int64_t y_count(const ConvParams& p) { return p.n * p.out_c * p.out_h * p.out_w; }

}  // namespace

void conv_forward_cudnn(const ConvParams& p, const float* x_in, const float* w_in, const float* bias, float* y,
                        Stream stream, Activation act) {
  const Bf16Operand xo(p, x_in, x_count(p), stream), wo(p, w_in, w_count(p), stream);
  const float *x = xo.get(), *w = wo.get();
  const int device = current_device();
  cudnnHandle_t h = handle_for(device, stream);
  Registry& r = registry();
  std::unique_lock<std::mutex> lock(r.mu);
  Plan& pl = plan_for(device, p);
  if (!pl.has_fwd) choose_fwd(pl, p, h, device, x, w, y, r.options);
  lock.unlock();
  const float one = 1.f, zero = 0.f;
  DN_CUDNN_CHECK(cudnnConvolutionForward(h, &one, pl.x, x, pl.w, w, pl.conv, pl.fwd, workspace(device, pl.fwd_ws),
                                         pl.fwd_ws, &zero, pl.y, y));
  if (act.relu) bias_forward_cuda(p.n, p.out_c, p.out_h * p.out_w, bias, y, stream, act);  // one pass for both
  else if (bias != nullptr) DN_CUDNN_CHECK(cudnnAddTensor(h, &one, pl.bias, bias, &one, pl.y, y));
}

void conv_backward_cudnn(const ConvParams& p, const float* x_in, const float* w_in, const float* dy_in, float* dw,
                         float* db, float beta, float* dx, Stream stream) {
  // db sums dy unrounded (a reduction, not a product); the products read rounded operands at bf16.
  const float* dy_full = dy_in;
  const Bf16Operand xo(p, x_in, x_count(p), stream), dyo(p, dy_in, y_count(p), stream);
  const Bf16Operand wo(p, dx != nullptr ? w_in : nullptr, w_count(p), stream);
  const float *x = xo.get(), *w = wo.get(), *dy = dyo.get();
  const int device = current_device();
  cudnnHandle_t h = handle_for(device, stream);
  Registry& r = registry();
  std::unique_lock<std::mutex> lock(r.mu);
  Plan& pl = plan_for(device, p);
  if (!pl.has_bwd_filter) choose_bwd_filter(pl, p, h, device, x, dy, r.options);
  if (dx != nullptr && !pl.has_bwd_data) choose_bwd_data(pl, p, h, device, w, dy, r.options);
  lock.unlock();
  // One workspace request for both calls, so the buffer is not regrown between them.
  void* ws = workspace(device, std::max(pl.bwd_filter_ws, dx != nullptr ? pl.bwd_data_ws : size_t(0)));
  const float one = 1.f;
  if (db != nullptr) DN_CUDNN_CHECK(cudnnConvolutionBackwardBias(h, &one, pl.y, dy_full, &one, pl.bias, db));
  DN_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, pl.x, x, pl.y, dy, pl.conv, pl.bwd_filter, ws,
                                                pl.bwd_filter_ws, &one, pl.w, dw));
  if (dx != nullptr)
    DN_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, pl.w, w, pl.y, dy, pl.conv, pl.bwd_data, ws, pl.bwd_data_ws,
                                                &beta, pl.x, dx));
}

std::string conv_cudnn_describe(const ConvParams& p) {
  const int device = current_device();
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.plans.find(key_of(device, p));
  const Plan* pl = it == r.plans.end() ? nullptr : it->second.get();
  const auto dir = [](bool has, const char* name, size_t ws) {
    return has ? fmt::format("{} ({})", name, bytes_str(ws)) : std::string("not searched");
  };
  return fmt::format("cuDNN {}, fwd {}, bwd-data {}, bwd-filter {}", cudnn_version_string(),
                     dir(pl && pl->has_fwd, pl ? fwd_name(pl->fwd) : "", pl ? pl->fwd_ws : 0),
                     dir(pl && pl->has_bwd_data, pl ? bwd_data_name(pl->bwd_data) : "", pl ? pl->bwd_data_ws : 0),
                     dir(pl && pl->has_bwd_filter, pl ? bwd_filter_name(pl->bwd_filter) : "",
                         pl ? pl->bwd_filter_ws : 0));
}

}  // namespace dropnet

#endif  // DROPNET_HAVE_CUDNN
