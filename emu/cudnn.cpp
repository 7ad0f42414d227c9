// The emulated cuDNN: see emu/include/cudnn.h for what is emulated and how.
#include <cudnn.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "emu.h"
#include "kernels/precision_math.h"

struct cudnnContext {
  int device = 0;                 // the device current at cudnnCreate
  cudaStream_t stream = nullptr;  // cudnnSetStream
};

struct cudnnTensorStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  int dim[4] = {};         // n, c, h, w
  int64_t stride[4] = {};  // in elements
};

struct cudnnFilterStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  int dim[4] = {};         // k, c, r, s
  int64_t stride[4] = {};  // NCHW: KCRS; NHWC: KRSC
};

struct cudnnConvolutionStruct {
  bool set = false;
  int pad[2] = {}, stride[2] = {1, 1}, dilation[2] = {1, 1};
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  int groups = 1;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace {

thread_local std::string t_last_error;  // cudnnGetLastErrorString

// An argument error: the reason goes to cudnnGetLastErrorString and to the thread's CUDA error
// text (dn_emu::set_error).
cudnnStatus_t bad(cudnnStatus_t s, const std::string& detail) {
  t_last_error = detail;
  dn_emu::set_error(cudaErrorInvalidValue, detail);
  return s;
}
cudnnStatus_t bad_param(const std::string& detail) { return bad(CUDNN_STATUS_BAD_PARAM, detail); }
// A configuration the emulation (or cuDNN) does not support: an answer, not a misuse (the
// workspace-size queries of every algorithm meet it routinely), so the CUDA error is left alone.
cudnnStatus_t not_supported(const std::string& detail) {
  t_last_error = detail;
  return CUDNN_STATUS_NOT_SUPPORTED;
}

#define DN_EMU_TRY(stmt)                                     \
  do {                                                       \
    if (cudnnStatus_t dn_s_ = (stmt); dn_s_ != CUDNN_STATUS_SUCCESS) return dn_s_; \
  } while (0)

std::string str(int v) { return std::to_string(v); }
std::string dims_str(const int* d) {
  return "(" + str(d[0]) + ", " + str(d[1]) + ", " + str(d[2]) + ", " + str(d[3]) + ")";
}

// NCHW dims with their strides (a filter reads as (k, c, r, s)).
struct Dims {
  int64_t d[4] = {};
  int64_t s[4] = {};
  // Elements spanned: the last element's offset + 1.
  int64_t span() const {
    int64_t last = 0;
    for (int i = 0; i < 4; ++i) last += (d[i] - 1) * s[i];
    return last + 1;
  }
};
Dims dims_of(const cudnnTensorStruct& t) {
  Dims r;
  for (int i = 0; i < 4; ++i) r.d[i] = t.dim[i], r.s[i] = t.stride[i];
  return r;
}
Dims dims_of(const cudnnFilterStruct& f) {
  Dims r;
  for (int i = 0; i < 4; ++i) r.d[i] = f.dim[i], r.s[i] = f.stride[i];
  return r;
}

// Strides (n, c, h, w order) of a packed 4-D layout.
void packed_strides(cudnnTensorFormat_t f, const int* d, int64_t* s) {
  const int64_t c = d[1], h = d[2], w = d[3];
  if (f == CUDNN_TENSOR_NHWC) {
    s[0] = h * w * c, s[1] = 1, s[2] = w * c, s[3] = c;
  } else {
    s[0] = c * h * w, s[1] = h * w, s[2] = w, s[3] = 1;
  }
}

cudnnStatus_t check_dims4(const char* who, const char* what, cudnnTensorFormat_t format, const int* d) {
  if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC) {
    if (format == CUDNN_TENSOR_NCHW_VECT_C)
      return not_supported(std::string(who) + ": CUDNN_TENSOR_NCHW_VECT_C is not emulated");
    return bad_param(std::string(who) + ": unknown format " + str(format));
  }
  for (int i = 0; i < 4; ++i)
    if (d[i] <= 0) return bad_param(std::string(who) + ": " + what + " dimensions " + dims_str(d) + " must be > 0");
  const int64_t count = int64_t(d[0]) * d[1] * d[2] * d[3];
  if (count > INT_MAX)
    return not_supported(std::string(who) + ": " + what + " of " + std::to_string(count) +
                         " elements exceeds 2^31 - 1");
  return CUDNN_STATUS_SUCCESS;
}

bool valid_type(cudnnDataType_t t) { return t >= CUDNN_DATA_FLOAT && t <= CUDNN_DATA_FAST_FLOAT_FOR_FP8; }

// ---- convolution geometry ------------------------------------------------------------------

struct Geom {
  int64_t n, c, h, w;     // x
  int64_t k, oh, ow;      // y: (n, k, oh, ow)
  int64_t r, s;           // filter extent
  int64_t groups, cg, kg;  // groups, input / output channels per group
  int64_t ph, pw, sh, sw, dh, dw;
  bool flip;  // CUDNN_CONVOLUTION: the filter is applied flipped
  cudnnMathType_t math;
  Dims x, y, f;
  // Multiply-adds of one pass (any direction).
  double flops() const { return 2.0 * double(n) * double(k) * double(oh) * double(ow) * double(cg) * double(r * s); }
};

cudnnStatus_t check_desc(const char* who, const char* what, const cudnnTensorStruct* t) {
  if (t == nullptr) return bad_param(std::string(who) + ": null " + what + " descriptor");
  if (!t->set) return bad_param(std::string(who) + ": " + what + " descriptor was never set");
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t check_desc(const char* who, const char* what, const cudnnFilterStruct* f) {
  if (f == nullptr) return bad_param(std::string(who) + ": null " + what + " descriptor");
  if (!f->set) return bad_param(std::string(who) + ": " + what + " descriptor was never set");
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t check_desc(const char* who, const cudnnConvolutionStruct* cv) {
  if (cv == nullptr) return bad_param(std::string(who) + ": null convolution descriptor");
  if (!cv->set) return bad_param(std::string(who) + ": convolution descriptor was never set");
  return CUDNN_STATUS_SUCCESS;
}

// x, filter and convolution descriptors -> geometry with the output size (y not consulted).
cudnnStatus_t geometry(const char* who, const cudnnTensorStruct* x, const cudnnFilterStruct* f,
                       const cudnnConvolutionStruct* cv, Geom* g) {
  DN_EMU_TRY(check_desc(who, "x", x));
  DN_EMU_TRY(check_desc(who, "filter", f));
  DN_EMU_TRY(check_desc(who, cv));
  g->n = x->dim[0], g->c = x->dim[1], g->h = x->dim[2], g->w = x->dim[3];
  g->k = f->dim[0], g->r = f->dim[2], g->s = f->dim[3];
  g->groups = cv->groups;
  g->cg = f->dim[1];
  if (g->cg * g->groups != g->c)
    return bad_param(std::string(who) + ": x has " + std::to_string(g->c) + " channels but the filter " +
                     dims_str(f->dim) + " with " + str(cv->groups) + " group(s) takes " +
                     std::to_string(g->cg * g->groups));
  if (g->k % g->groups != 0)
    return bad_param(std::string(who) + ": " + std::to_string(g->k) + " filters do not divide into " +
                     str(cv->groups) + " groups");
  g->kg = g->k / g->groups;
  g->ph = cv->pad[0], g->pw = cv->pad[1], g->sh = cv->stride[0], g->sw = cv->stride[1];
  g->dh = cv->dilation[0], g->dw = cv->dilation[1];
  g->flip = cv->mode == CUDNN_CONVOLUTION;
  g->math = cv->math;
  const int64_t ext_h = (g->r - 1) * g->dh + 1, ext_w = (g->s - 1) * g->dw + 1;
  if (g->h + 2 * g->ph < ext_h || g->w + 2 * g->pw < ext_w)
    return bad_param(std::string(who) + ": the (dilated) filter " + std::to_string(ext_h) + "x" +
                     std::to_string(ext_w) + " is larger than the padded input " +
                     std::to_string(g->h + 2 * g->ph) + "x" + std::to_string(g->w + 2 * g->pw));
  g->oh = (g->h + 2 * g->ph - ext_h) / g->sh + 1;
  g->ow = (g->w + 2 * g->pw - ext_w) / g->sw + 1;
  g->x = dims_of(*x);
  g->f = dims_of(*f);
  return CUDNN_STATUS_SUCCESS;
}

// The full check of a convolution call: shapes against each other, and float data and compute.
cudnnStatus_t conv_geometry(const char* who, const cudnnTensorStruct* x, const cudnnFilterStruct* f,
                            const cudnnConvolutionStruct* cv, const cudnnTensorStruct* y, Geom* g) {
  DN_EMU_TRY(geometry(who, x, f, cv, g));
  DN_EMU_TRY(check_desc(who, "y", y));
  const int expect[4] = {int(g->n), int(g->k), int(g->oh), int(g->ow)};
  if (!std::equal(expect, expect + 4, y->dim))
    return bad_param(std::string(who) + ": y is " + dims_str(y->dim) + " but the convolution gives " +
                     dims_str(expect));
  if (x->type != f->type || x->type != y->type)
    return bad_param(std::string(who) + ": x, filter and y data types differ (" + str(x->type) + ", " +
                     str(f->type) + ", " + str(y->type) + ")");
  if (x->type != CUDNN_DATA_FLOAT)
    return not_supported(std::string(who) + ": data type " + str(x->type) + " is not emulated (float only)");
  if (cv->compute != CUDNN_DATA_FLOAT)
    return not_supported(std::string(who) + ": compute type " + str(cv->compute) +
                         " with float data is not emulated (CUDNN_DATA_FLOAT only)");
  g->y = dims_of(*y);
  return CUDNN_STATUS_SUCCESS;
}

// ---- algorithms ------------------------------------------------------------------------------

enum class Dir { Fwd, BwdData, BwdFilter };

int algo_count(Dir d) {
  switch (d) {
    case Dir::Fwd: return CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    case Dir::BwdData: return CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    case Dir::BwdFilter: return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  }
  return 0;
}

struct Model {
  bool supported = false;
  size_t workspace = 0;  // bytes
  double factor = 0;     // model time relative to the fastest
  bool deterministic = true;
};

// The emulated algorithms: all compute the same values; the workspace needs are plausible sizes
// (a column buffer of one image and group for the GEMM-based ones) so that callers' workspace
// handling runs, and determinism is what cuDNN documents for the algorithm.
Model model(Dir d, int algo, const Geom& g) {
  const size_t col = sizeof(float) * size_t(g.cg * g.r * g.s) * size_t(g.oh * g.ow);
  const size_t small = 256 * ((sizeof(int) * size_t(g.cg * g.r * g.s) * 2 + 255) / 256);
  switch (d) {
    case Dir::Fwd:
      switch (algo) {
        case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return {true, small, 1.0, true};
        case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return {true, 0, 1.5, true};
        case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return {true, col, 2.0, true};
        default: return {};
      }
    case Dir::BwdData:
      switch (algo) {
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0: return {true, 0, 1.0, false};
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1: return {true, col, 1.3, true};
        default: return {};
      }
    case Dir::BwdFilter:
      switch (algo) {
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0: return {true, 0, 1.0, false};
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3: return {true, small, 1.1, false};
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1: return {true, col, 1.4, true};
        default: return {};
      }
  }
  return {};
}

const char* dir_name(Dir d) {
  switch (d) {
    case Dir::Fwd: return "forward";
    case Dir::BwdData: return "backward-data";
    case Dir::BwdFilter: return "backward-filter";
  }
  return "?";
}

// The algorithm's workspace need, or why it cannot run.
cudnnStatus_t algo_workspace(const char* who, Dir d, int algo, const Geom& g, size_t* need) {
  if (algo < 0 || algo >= algo_count(d))
    return bad_param(std::string(who) + ": " + dir_name(d) + " algorithm " + str(algo) + " does not exist");
  const Model m = model(d, algo, g);
  if (!m.supported)
    return not_supported(std::string(who) + ": " + dir_name(d) + " algorithm " + str(algo) + " is not emulated");
  *need = m.workspace;
  return CUDNN_STATUS_SUCCESS;
}

// The ranked list of Get*_v7 / Find*Ex: the emulated algorithms by model time (those needing more
// than `workspace` bytes NOT_SUPPORTED, after them), then the others (NOT_SUPPORTED).
template <typename Perf, typename Algo>
void rank(Dir d, const Geom& g, size_t workspace, int requested, int* returned, Perf* out) {
  std::vector<Perf> ok, failed;
  for (int a = 0; a < algo_count(d); ++a) {
    const Model m = model(d, a, g);
    Perf p{};
    p.algo = static_cast<Algo>(a);
    p.mathType = g.math;
    p.determinism = m.deterministic ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
    if (m.supported && m.workspace <= workspace) {
      p.status = CUDNN_STATUS_SUCCESS;
      p.time = static_cast<float>(m.factor * (g.flops() / 1e9 + 1e-3));  // ms at ~1 TFLOP/s, 1 us launch
      p.memory = m.workspace;
      ok.push_back(p);
    } else {
      p.status = CUDNN_STATUS_NOT_SUPPORTED;
      p.time = -1.f;
      p.memory = m.supported ? m.workspace : 0;
      failed.push_back(p);
    }
  }
  std::stable_sort(ok.begin(), ok.end(), [](const Perf& a, const Perf& b) { return a.time < b.time; });
  ok.insert(ok.end(), failed.begin(), failed.end());
  const int n = std::min<int>(requested, static_cast<int>(ok.size()));
  std::copy(ok.begin(), ok.begin() + n, out);
  *returned = n;
}

// ---- reference computations ----------------------------------------------------------------
// Straightforward loops with double accumulation over NCHW-addressed dims with strides.

// The outputs o in [0, out) whose input o * stride + off lies in [0, in): [*lo, *hi).
void valid_range(int64_t out, int64_t in, int64_t stride, int64_t off, int64_t* lo, int64_t* hi) {
  int64_t l = off >= 0 ? 0 : (-off + stride - 1) / stride;
  int64_t h = in - 1 - off < 0 ? 0 : (in - 1 - off) / stride + 1;
  h = std::min(h, out);
  *lo = std::min(l, h);
  *hi = h;
}

// Filter tap (ki, kj) of the sliding window reads filter element (fr, fs).
inline int64_t tap(bool flip, int64_t extent, int64_t i) { return flip ? extent - 1 - i : i; }

// out[i] = alpha acc[i] + beta out[i] over a plane; beta == 0 does not read out.
void store_plane(const double* acc, int64_t rows, int64_t cols, double alpha, double beta, float* out, int64_t srow,
                 int64_t scol) {
  for (int64_t i = 0; i < rows; ++i) {
    const double* a = acc + i * cols;
    float* o = out + i * srow;
    if (beta == 0.0)
      for (int64_t j = 0; j < cols; ++j) o[j * scol] = static_cast<float>(alpha * a[j]);
    else
      for (int64_t j = 0; j < cols; ++j) o[j * scol] = static_cast<float>(alpha * a[j] + beta * o[j * scol]);
  }
}

// Tensor-op math (CUDNN_TENSOR_OP_MATH, _ALLOW_CONVERSION) on float data runs on TF32 tensor
// cores: the operands are rounded to TF32 (kernels/precision_math.h, as dropnet's own kernels
// round) before the products. CUDNN_DEFAULT_MATH and CUDNN_FMA_MATH compute in FP32.
bool tensor_op_math(const Geom& g) {
  return g.math == CUDNN_TENSOR_OP_MATH || g.math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}
// `p` replaced by a TF32-rounded copy of its `span` elements (same layout) under tensor-op math.
void tf32_operand(const Geom& g, const float*& p, int64_t span, std::vector<float>& copy) {
  if (!tensor_op_math(g)) return;
  copy.resize(static_cast<size_t>(span));
  for (int64_t i = 0; i < span; ++i) copy[i] = dropnet::precision::round_tf32(p[i]);
  p = copy.data();
}

// y = alpha conv(x, w) + beta y
void conv_forward_ref(const Geom& g, double alpha, const float* x, const float* w, double beta, float* y) {
  std::vector<float> xr, wr;
  tf32_operand(g, x, g.x.span(), xr);
  tf32_operand(g, w, g.f.span(), wr);
  std::vector<double> acc(static_cast<size_t>(g.oh * g.ow));
  const bool contiguous = g.sw == 1 && g.x.s[3] == 1;  // the inner loop runs along a row of x
  for (int64_t b = 0; b < g.n; ++b) {
    for (int64_t oc = 0; oc < g.k; ++oc) {
      const int64_t gi = oc / g.kg;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t cl = 0; cl < g.cg; ++cl) {
        const float* xp = x + b * g.x.s[0] + (gi * g.cg + cl) * g.x.s[1];
        const float* wp = w + oc * g.f.s[0] + cl * g.f.s[1];
        for (int64_t ki = 0; ki < g.r; ++ki) {
          const int64_t offy = ki * g.dh - g.ph;
          int64_t oy0, oy1;
          valid_range(g.oh, g.h, g.sh, offy, &oy0, &oy1);
          for (int64_t kj = 0; kj < g.s; ++kj) {
            const int64_t offx = kj * g.dw - g.pw;
            int64_t ox0, ox1;
            valid_range(g.ow, g.w, g.sw, offx, &ox0, &ox1);
            const double wv = wp[tap(g.flip, g.r, ki) * g.f.s[2] + tap(g.flip, g.s, kj) * g.f.s[3]];
            for (int64_t oy = oy0; oy < oy1; ++oy) {
              const float* row = xp + (oy * g.sh + offy) * g.x.s[2];
              double* __restrict a = acc.data() + oy * g.ow;
              if (contiguous) {
                const float* __restrict in = row + offx;
                for (int64_t ox = ox0; ox < ox1; ++ox) a[ox] += wv * in[ox];
              } else {
                for (int64_t ox = ox0; ox < ox1; ++ox) a[ox] += wv * row[(ox * g.sw + offx) * g.x.s[3]];
              }
            }
          }
        }
      }
      store_plane(acc.data(), g.oh, g.ow, alpha, beta, y + b * g.y.s[0] + oc * g.y.s[1], g.y.s[2], g.y.s[3]);
    }
  }
}

// dx = alpha conv^T(dy, w) + beta dx (the gradient of the forward pass with respect to x)
void conv_backward_data_ref(const Geom& g, double alpha, const float* w, const float* dy, double beta, float* dx) {
  std::vector<float> wr, dyr;
  tf32_operand(g, w, g.f.span(), wr);
  tf32_operand(g, dy, g.y.span(), dyr);
  std::vector<double> acc(static_cast<size_t>(g.h * g.w));
  const bool contiguous = g.sw == 1 && g.y.s[3] == 1;  // the inner loop runs along a row of dy
  for (int64_t b = 0; b < g.n; ++b) {
    for (int64_t ci = 0; ci < g.c; ++ci) {
      const int64_t gi = ci / g.cg, cl = ci % g.cg;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t ol = 0; ol < g.kg; ++ol) {
        const int64_t oc = gi * g.kg + ol;
        const float* dyp = dy + b * g.y.s[0] + oc * g.y.s[1];
        const float* wp = w + oc * g.f.s[0] + cl * g.f.s[1];
        for (int64_t ki = 0; ki < g.r; ++ki) {
          const int64_t offy = ki * g.dh - g.ph;
          int64_t oy0, oy1;
          valid_range(g.oh, g.h, g.sh, offy, &oy0, &oy1);
          for (int64_t kj = 0; kj < g.s; ++kj) {
            const int64_t offx = kj * g.dw - g.pw;
            int64_t ox0, ox1;
            valid_range(g.ow, g.w, g.sw, offx, &ox0, &ox1);
            const double wv = wp[tap(g.flip, g.r, ki) * g.f.s[2] + tap(g.flip, g.s, kj) * g.f.s[3]];
            for (int64_t oy = oy0; oy < oy1; ++oy) {
              const float* row = dyp + oy * g.y.s[2];
              double* a = acc.data() + (oy * g.sh + offy) * g.w;
              if (contiguous) {
                double* __restrict out = a + offx;
                const float* __restrict in = row;
                for (int64_t ox = ox0; ox < ox1; ++ox) out[ox] += wv * in[ox];
              } else {
                for (int64_t ox = ox0; ox < ox1; ++ox) a[ox * g.sw + offx] += wv * row[ox * g.y.s[3]];
              }
            }
          }
        }
      }
      store_plane(acc.data(), g.h, g.w, alpha, beta, dx + b * g.x.s[0] + ci * g.x.s[1], g.x.s[2], g.x.s[3]);
    }
  }
}

// dw = alpha corr(x, dy) + beta dw (the gradient of the forward pass with respect to w)
void conv_backward_filter_ref(const Geom& g, double alpha, const float* x, const float* dy, double beta, float* dw) {
  std::vector<float> xr, dyr;
  tf32_operand(g, x, g.x.span(), xr);
  tf32_operand(g, dy, g.y.span(), dyr);
  std::vector<double> part(static_cast<size_t>(g.ow));
  const bool contiguous = g.sw == 1 && g.x.s[3] == 1 && g.y.s[3] == 1;
  for (int64_t oc = 0; oc < g.k; ++oc) {
    const int64_t gi = oc / g.kg;
    for (int64_t cl = 0; cl < g.cg; ++cl) {
      const int64_t ci = gi * g.cg + cl;
      for (int64_t ki = 0; ki < g.r; ++ki) {
        const int64_t offy = ki * g.dh - g.ph;
        int64_t oy0, oy1;
        valid_range(g.oh, g.h, g.sh, offy, &oy0, &oy1);
        for (int64_t kj = 0; kj < g.s; ++kj) {
          const int64_t offx = kj * g.dw - g.pw;
          int64_t ox0, ox1;
          valid_range(g.ow, g.w, g.sw, offx, &ox0, &ox1);
          // Partial sums per output column (element-wise, so the loop vectorizes), then their sum.
          std::fill(part.begin(), part.end(), 0.0);
          double* __restrict ps = part.data();
          for (int64_t b = 0; b < g.n; ++b) {
            const float* xp = x + b * g.x.s[0] + ci * g.x.s[1];
            const float* dyp = dy + b * g.y.s[0] + oc * g.y.s[1];
            for (int64_t oy = oy0; oy < oy1; ++oy) {
              const float* xrow = xp + (oy * g.sh + offy) * g.x.s[2];
              const float* dyrow = dyp + oy * g.y.s[2];
              if (contiguous) {
                const float* __restrict in = xrow + offx;
                const float* __restrict d = dyrow;
                for (int64_t ox = ox0; ox < ox1; ++ox) ps[ox] += double(in[ox]) * d[ox];
              } else {
                for (int64_t ox = ox0; ox < ox1; ++ox)
                  ps[ox] += double(xrow[(ox * g.sw + offx) * g.x.s[3]]) * dyrow[ox * g.y.s[3]];
              }
            }
          }
          double sum = 0.0;
          for (int64_t ox = ox0; ox < ox1; ++ox) sum += ps[ox];
          float* o = dw + oc * g.f.s[0] + cl * g.f.s[1] + tap(g.flip, g.r, ki) * g.f.s[2] +
                     tap(g.flip, g.s, kj) * g.f.s[3];
          *o = static_cast<float>(beta == 0.0 ? alpha * sum : alpha * sum + beta * *o);
        }
      }
    }
  }
}

// db[c] = alpha sum_{b, y, x} dy[b, c, y, x] + beta db[c]; db is (1, C, 1, 1) with channel stride dbs.
void bias_grad_ref(const Dims& dyd, double alpha, const float* dy, double beta, float* db, int64_t dbs) {
  for (int64_t c = 0; c < dyd.d[1]; ++c) {
    double sum = 0.0;
    for (int64_t b = 0; b < dyd.d[0]; ++b)
      for (int64_t i = 0; i < dyd.d[2]; ++i) {
        const float* row = dy + b * dyd.s[0] + c * dyd.s[1] + i * dyd.s[2];
        for (int64_t j = 0; j < dyd.d[3]; ++j) sum += row[j * dyd.s[3]];
      }
    float* o = db + c * dbs;
    *o = static_cast<float>(beta == 0.0 ? alpha * sum : alpha * sum + beta * *o);
  }
}

// C = alpha A + beta C, A broadcast over its dimensions of size 1 (stride 0 there).
void add_tensor_ref(const Dims& ad, double alpha, const float* a, double beta, const Dims& cd, float* c) {
  int64_t as[4];
  for (int i = 0; i < 4; ++i) as[i] = ad.d[i] == 1 ? 0 : ad.s[i];
  for (int64_t n = 0; n < cd.d[0]; ++n)
    for (int64_t ch = 0; ch < cd.d[1]; ++ch)
      for (int64_t i = 0; i < cd.d[2]; ++i) {
        const float* arow = a + n * as[0] + ch * as[1] + i * as[2];
        float* crow = c + n * cd.s[0] + ch * cd.s[1] + i * cd.s[2];
        for (int64_t j = 0; j < cd.d[3]; ++j) {
          float* o = crow + j * cd.s[3];
          const double v = alpha * arow[j * as[3]];
          *o = static_cast<float>(beta == 0.0 ? v : v + beta * *o);
        }
      }
}

// ---- calls -----------------------------------------------------------------------------------

cudnnStatus_t check_handle(const char* who, cudnnHandle_t h) {
  if (h == nullptr) return bad_param(std::string(who) + ": null handle");
  return CUDNN_STATUS_SUCCESS;
}

// A call that queues work: the handle's device must be the current one and own the stream.
cudnnStatus_t check_handle_device(const char* who, cudnnHandle_t h) {
  DN_EMU_TRY(check_handle(who, h));
  const int cur = dn_emu::current_device();
  const int sdev = dn_emu::stream_device(h->stream);
  if (cur != h->device || sdev != h->device) {
    const std::string detail = std::string(who) + ": the handle belongs to cuda:" + str(h->device) + " but " +
                               (cur != h->device ? "the current device is cuda:" + str(cur)
                                                 : "its stream belongs to cuda:" + str(sdev));
    t_last_error = detail;
    dn_emu::set_error(cudaErrorInvalidResourceHandle, detail);
    return CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH;
  }
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t check_data(const char* who, const char* what, const void* p) {
  if (p == nullptr) return bad_param(std::string(who) + ": null " + what);
  if (reinterpret_cast<uintptr_t>(p) % alignof(float) != 0)
    return bad_param(std::string(who) + ": " + what + " is not aligned to a float");
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t check_scalars(const char* who, const void* alpha, const void* beta) {
  if (alpha == nullptr || beta == nullptr) return bad_param(std::string(who) + ": null alpha or beta");
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t check_workspace(const char* who, size_t need, const void* ws, size_t ws_size) {
  if (ws_size < need)
    return bad_param(std::string(who) + ": the algorithm needs " + std::to_string(need) + " workspace bytes, " +
                     std::to_string(ws_size) + " given");
  if (need > 0 && ws == nullptr) return bad_param(std::string(who) + ": null workspace");
  return CUDNN_STATUS_SUCCESS;
}

// A search may use all of the workspace it is given.
cudnnStatus_t check_search_workspace(const char* who, const void* ws, size_t ws_size) {
  if (ws == nullptr && ws_size > 0)
    return bad_param(std::string(who) + ": null workspace of " + std::to_string(ws_size) + " bytes");
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t queue(cudnnHandle_t h, const char* who, std::function<void()> fn) {
  if (dn_emu::enqueue(h->stream, who, std::move(fn)) != cudaSuccess) {
    t_last_error = std::string(who) + ": the handle's stream is not valid";
    return CUDNN_STATUS_EXECUTION_FAILED;
  }
  return CUDNN_STATUS_SUCCESS;
}

// Inside queued work: the extents, and the workspace is scratch.
void access(int device, const void* p, int64_t elements, const std::string& what) {
  dn_emu::check_device_access(device, p, sizeof(float) * static_cast<size_t>(elements), what);
}
void scribble(int device, void* ws, size_t need, const std::string& what) {
  if (need == 0) return;
  dn_emu::check_device_access(device, ws, need, what);
  std::memset(ws, 0xff, need);
}

// Find*Ex waits for its run, as the real one does (it times the algorithms).
cudnnStatus_t wait(cudnnHandle_t h, const char* who) {
  if (dn_emu::drain(h->stream) != cudaSuccess) {
    t_last_error = std::string(who) + ": the run on the stream failed";
    return CUDNN_STATUS_EXECUTION_FAILED;
  }
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t check_search(const char* who, int requested, const int* returned, const void* perf) {
  if (requested < 1) return bad_param(std::string(who) + ": requestedAlgoCount " + str(requested) + " < 1");
  if (returned == nullptr || perf == nullptr) return bad_param(std::string(who) + ": null result pointer");
  return CUDNN_STATUS_SUCCESS;
}

// The largest workspace need of the algorithms that fit `ws_size`.
size_t search_need(Dir d, const Geom& g, size_t ws_size) {
  size_t need = 0;
  for (int a = 0; a < algo_count(d); ++a) {
    const Model m = model(d, a, g);
    if (m.supported && m.workspace <= ws_size) need = std::max(need, m.workspace);
  }
  return need;
}

}  // namespace

// ---- library, handle -------------------------------------------------------------------------

size_t cudnnGetVersion(void) { return CUDNN_VERSION; }
size_t cudnnGetCudartVersion(void) { return CUDART_VERSION; }

const char* cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
#define DN_EMU_NAME(x) \
  case x: return #x;
    DN_EMU_NAME(CUDNN_STATUS_SUCCESS)
    DN_EMU_NAME(CUDNN_STATUS_NOT_INITIALIZED)
    DN_EMU_NAME(CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH)
    DN_EMU_NAME(CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH)
    DN_EMU_NAME(CUDNN_STATUS_DEPRECATED)
    DN_EMU_NAME(CUDNN_STATUS_LICENSE_ERROR)
    DN_EMU_NAME(CUDNN_STATUS_RUNTIME_IN_PROGRESS)
    DN_EMU_NAME(CUDNN_STATUS_RUNTIME_FP_OVERFLOW)
    DN_EMU_NAME(CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED)
    DN_EMU_NAME(CUDNN_STATUS_BAD_PARAM)
    DN_EMU_NAME(CUDNN_STATUS_INVALID_VALUE)
    DN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_NULL_POINTER)
    DN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER)
    DN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED)
    DN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND)
    DN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT)
    DN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH)
    DN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH)
    DN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES)
    DN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE)
    DN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED)
    DN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN)
    DN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_SHAPE)
    DN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE)
    DN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_LAYOUT)
    DN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER)
    DN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDART)
    DN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH)
    DN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_RUNTIME_PREREQUISITE_MISSING)
    DN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE)
    DN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT)
    DN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_PADDING)
    DN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_BAD_LAUNCH_PARAM)
    DN_EMU_NAME(CUDNN_STATUS_INTERNAL_ERROR)
    DN_EMU_NAME(CUDNN_STATUS_INTERNAL_ERROR_COMPILATION_FAILED)
    DN_EMU_NAME(CUDNN_STATUS_INTERNAL_ERROR_UNEXPECTED_VALUE)
    DN_EMU_NAME(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED)
    DN_EMU_NAME(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
    DN_EMU_NAME(CUDNN_STATUS_INTERNAL_ERROR_BAD_LAUNCH_PARAM)
    DN_EMU_NAME(CUDNN_STATUS_INTERNAL_ERROR_TEXTURE_CREATION_FAILED)
    DN_EMU_NAME(CUDNN_STATUS_EXECUTION_FAILED)
    DN_EMU_NAME(CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER)
    DN_EMU_NAME(CUDNN_STATUS_EXECUTION_FAILED_CUBLAS)
    DN_EMU_NAME(CUDNN_STATUS_EXECUTION_FAILED_CUDART)
    DN_EMU_NAME(CUDNN_STATUS_EXECUTION_FAILED_CURAND)
#undef DN_EMU_NAME
  }
  return "CUDNN_UNKNOWN_STATUS_FOUND";
}

void cudnnGetLastErrorString(char* message, size_t max_size) {
  if (message == nullptr || max_size == 0) return;
  const size_t n = std::min(max_size - 1, t_last_error.size());
  std::memcpy(message, t_last_error.data(), n);
  message[n] = '\0';
}

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  if (handle == nullptr) return bad_param("cudnnCreate: null handle pointer");
  const int device = dn_emu::current_device();
  if (device < 0 || device >= dn_emu::device_count()) {
    t_last_error = "cudnnCreate: no current CUDA device";
    return CUDNN_STATUS_NOT_INITIALIZED;
  }
  *handle = new cudnnContext{device, nullptr};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  if (handle == nullptr) return bad_param("cudnnDestroy: null handle");
  // The real cudnnDestroy calls cudaDeviceSynchronize (on the handle's device).
  const int prev = dn_emu::current_device();
  if (prev != handle->device) (void)cudaSetDevice(handle->device);
  (void)cudaDeviceSynchronize();
  if (prev != handle->device) (void)cudaSetDevice(prev);
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t streamId) {
  DN_EMU_TRY(check_handle("cudnnSetStream", handle));
  if (streamId != nullptr) {
    const int sdev = dn_emu::stream_device(streamId);
    if (sdev != handle->device) {
      const std::string detail = "cudnnSetStream: the stream belongs to cuda:" + str(sdev) +
                                 ", the handle to cuda:" + str(handle->device);
      t_last_error = detail;
      dn_emu::set_error(cudaErrorInvalidResourceHandle, detail);
      return CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH;
    }
  }
  handle->stream = streamId;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetStream(cudnnHandle_t handle, cudaStream_t* streamId) {
  DN_EMU_TRY(check_handle("cudnnGetStream", handle));
  if (streamId == nullptr) return bad_param("cudnnGetStream: null stream pointer");
  *streamId = handle->stream;
  return CUDNN_STATUS_SUCCESS;
}

// ---- descriptors -----------------------------------------------------------------------------

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* tensorDesc) {
  if (tensorDesc == nullptr) return bad_param("cudnnCreateTensorDescriptor: null pointer");
  *tensorDesc = new cudnnTensorStruct();
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t tensorDesc) {
  delete tensorDesc;  // null is fine
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t tensorDesc, cudnnTensorFormat_t format,
                                         cudnnDataType_t dataType, int n, int c, int h, int w) {
  const char* who = "cudnnSetTensor4dDescriptor";
  if (tensorDesc == nullptr) return bad_param(std::string(who) + ": null descriptor");
  if (!valid_type(dataType)) return bad_param(std::string(who) + ": unknown data type " + str(dataType));
  const int d[4] = {n, c, h, w};
  DN_EMU_TRY(check_dims4(who, "tensor", format, d));
  cudnnTensorStruct& t = *tensorDesc;
  t.set = true;
  t.type = dataType;
  t.format = format;
  std::copy(d, d + 4, t.dim);
  packed_strides(format, d, t.stride);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetTensor4dDescriptor(const cudnnTensorDescriptor_t tensorDesc, cudnnDataType_t* dataType,
                                         int* n, int* c, int* h, int* w, int* nStride, int* cStride, int* hStride,
                                         int* wStride) {
  const char* who = "cudnnGetTensor4dDescriptor";
  DN_EMU_TRY(check_desc(who, "tensor", tensorDesc));
  if (!dataType || !n || !c || !h || !w || !nStride || !cStride || !hStride || !wStride)
    return bad_param(std::string(who) + ": null result pointer");
  const cudnnTensorStruct& t = *tensorDesc;
  *dataType = t.type;
  *n = t.dim[0], *c = t.dim[1], *h = t.dim[2], *w = t.dim[3];
  *nStride = int(t.stride[0]), *cStride = int(t.stride[1]), *hStride = int(t.stride[2]), *wStride = int(t.stride[3]);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* filterDesc) {
  if (filterDesc == nullptr) return bad_param("cudnnCreateFilterDescriptor: null pointer");
  *filterDesc = new cudnnFilterStruct();
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t filterDesc) {
  delete filterDesc;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t filterDesc, cudnnDataType_t dataType,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w) {
  const char* who = "cudnnSetFilter4dDescriptor";
  if (filterDesc == nullptr) return bad_param(std::string(who) + ": null descriptor");
  if (!valid_type(dataType)) return bad_param(std::string(who) + ": unknown data type " + str(dataType));
  const int d[4] = {k, c, h, w};
  DN_EMU_TRY(check_dims4(who, "filter", format, d));
  cudnnFilterStruct& f = *filterDesc;
  f.set = true;
  f.type = dataType;
  f.format = format;
  std::copy(d, d + 4, f.dim);
  packed_strides(format, d, f.stride);  // NCHW: KCRS, NHWC: KRSC
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* convDesc) {
  if (convDesc == nullptr) return bad_param("cudnnCreateConvolutionDescriptor: null pointer");
  *convDesc = new cudnnConvolutionStruct();
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t convDesc) {
  delete convDesc;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t convDesc, int pad_h, int pad_w, int u,
                                              int v, int dilation_h, int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t computeType) {
  const char* who = "cudnnSetConvolution2dDescriptor";
  if (convDesc == nullptr) return bad_param(std::string(who) + ": null descriptor");
  if (pad_h < 0 || pad_w < 0)
    return bad_param(std::string(who) + ": negative padding " + str(pad_h) + "x" + str(pad_w));
  if (u <= 0 || v <= 0) return bad_param(std::string(who) + ": stride " + str(u) + "x" + str(v) + " must be > 0");
  if (dilation_h <= 0 || dilation_w <= 0)
    return bad_param(std::string(who) + ": dilation " + str(dilation_h) + "x" + str(dilation_w) + " must be > 0");
  if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION)
    return bad_param(std::string(who) + ": unknown mode " + str(mode));
  if (!valid_type(computeType)) return bad_param(std::string(who) + ": unknown compute type " + str(computeType));
  cudnnConvolutionStruct& cv = *convDesc;
  cv.set = true;
  cv.pad[0] = pad_h, cv.pad[1] = pad_w;
  cv.stride[0] = u, cv.stride[1] = v;
  cv.dilation[0] = dilation_h, cv.dilation[1] = dilation_w;
  cv.mode = mode;
  cv.compute = computeType;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t convDesc, int groupCount) {
  if (convDesc == nullptr) return bad_param("cudnnSetConvolutionGroupCount: null descriptor");
  if (groupCount < 1) return bad_param("cudnnSetConvolutionGroupCount: group count " + str(groupCount) + " < 1");
  convDesc->groups = groupCount;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionGroupCount(cudnnConvolutionDescriptor_t convDesc, int* groupCount) {
  if (convDesc == nullptr || groupCount == nullptr) return bad_param("cudnnGetConvolutionGroupCount: null pointer");
  *groupCount = convDesc->groups;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t convDesc, cudnnMathType_t mathType) {
  if (convDesc == nullptr) return bad_param("cudnnSetConvolutionMathType: null descriptor");
  if (mathType < CUDNN_DEFAULT_MATH || mathType > CUDNN_FMA_MATH)
    return bad_param("cudnnSetConvolutionMathType: unknown math type " + str(mathType));
  convDesc->math = mathType;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionMathType(cudnnConvolutionDescriptor_t convDesc, cudnnMathType_t* mathType) {
  if (convDesc == nullptr || mathType == nullptr) return bad_param("cudnnGetConvolutionMathType: null pointer");
  *mathType = convDesc->math;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t convDesc,
                                                    const cudnnTensorDescriptor_t inputTensorDesc,
                                                    const cudnnFilterDescriptor_t filterDesc, int* n, int* c, int* h,
                                                    int* w) {
  const char* who = "cudnnGetConvolution2dForwardOutputDim";
  if (!n || !c || !h || !w) return bad_param(std::string(who) + ": null result pointer");
  Geom g;
  DN_EMU_TRY(geometry(who, inputTensorDesc, filterDesc, convDesc, &g));
  *n = int(g.n), *c = int(g.k), *h = int(g.oh), *w = int(g.ow);
  return CUDNN_STATUS_SUCCESS;
}

// ---- forward ---------------------------------------------------------------------------------

cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  DN_EMU_TRY(check_handle("cudnnGetConvolutionForwardAlgorithmMaxCount", handle));
  if (count == nullptr) return bad_param("cudnnGetConvolutionForwardAlgorithmMaxCount: null count");
  *count = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
                                                     const cudnnFilterDescriptor_t filterDesc,
                                                     const cudnnConvolutionDescriptor_t convDesc,
                                                     const cudnnTensorDescriptor_t destDesc,
                                                     const int requestedAlgoCount,
                                                     int* returnedAlgoCount,
                                                     cudnnConvolutionFwdAlgoPerf_t* perfResults) {
  const char* who = "cudnnGetConvolutionForwardAlgorithm_v7";
  DN_EMU_TRY(check_handle(who, handle));
  DN_EMU_TRY(check_search(who, requestedAlgoCount, returnedAlgoCount, perfResults));
  Geom g;
  DN_EMU_TRY(conv_geometry(who, srcDesc, filterDesc, convDesc, destDesc, &g));
  rank<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(Dir::Fwd, g, SIZE_MAX, requestedAlgoCount,
                                                                 returnedAlgoCount, perfResults);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                      const cudnnFilterDescriptor_t wDesc,
                                                      const cudnnConvolutionDescriptor_t convDesc,
                                                      const cudnnTensorDescriptor_t yDesc,
                                                      cudnnConvolutionFwdAlgo_t algo, size_t* sizeInBytes) {
  const char* who = "cudnnGetConvolutionForwardWorkspaceSize";
  DN_EMU_TRY(check_handle(who, handle));
  if (sizeInBytes == nullptr) return bad_param(std::string(who) + ": null size pointer");
  Geom g;
  DN_EMU_TRY(conv_geometry(who, xDesc, wDesc, convDesc, yDesc, &g));
  return algo_workspace(who, Dir::Fwd, algo, g, sizeInBytes);
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void* alpha, const cudnnTensorDescriptor_t xDesc,
                                      const void* x, const cudnnFilterDescriptor_t wDesc, const void* w,
                                      const cudnnConvolutionDescriptor_t convDesc, cudnnConvolutionFwdAlgo_t algo,
                                      void* workSpace, size_t workSpaceSizeInBytes, const void* beta,
                                      const cudnnTensorDescriptor_t yDesc, void* y) {
  const char* who = "cudnnConvolutionForward";
  DN_EMU_TRY(check_handle_device(who, handle));
  Geom g;
  DN_EMU_TRY(conv_geometry(who, xDesc, wDesc, convDesc, yDesc, &g));
  DN_EMU_TRY(check_scalars(who, alpha, beta));
  DN_EMU_TRY(check_data(who, "x", x));
  DN_EMU_TRY(check_data(who, "w", w));
  DN_EMU_TRY(check_data(who, "y", y));
  size_t need = 0;
  DN_EMU_TRY(algo_workspace(who, Dir::Fwd, algo, g, &need));
  DN_EMU_TRY(check_workspace(who, need, workSpace, workSpaceSizeInBytes));
  const double al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const int dev = handle->device;
  const auto* xp = static_cast<const float*>(x);
  const auto* wp = static_cast<const float*>(w);
  auto* yp = static_cast<float*>(y);
  return queue(handle, who, [=] {
    access(dev, xp, g.x.span(), "x");
    access(dev, wp, g.f.span(), "w");
    access(dev, yp, g.y.span(), "y");
    scribble(dev, workSpace, need, "workspace");
    conv_forward_ref(g, al, xp, wp, be, yp);
  });
}

cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                     const void* x, const cudnnFilterDescriptor_t wDesc, const void* w,
                                                     const cudnnConvolutionDescriptor_t convDesc,
                                                     const cudnnTensorDescriptor_t yDesc, void* y,
                                                     const int requestedAlgoCount, int* returnedAlgoCount,
                                                     cudnnConvolutionFwdAlgoPerf_t* perfResults, void* workSpace,
                                                     size_t workSpaceSizeInBytes) {
  const char* who = "cudnnFindConvolutionForwardAlgorithmEx";
  DN_EMU_TRY(check_handle_device(who, handle));
  DN_EMU_TRY(check_search(who, requestedAlgoCount, returnedAlgoCount, perfResults));
  Geom g;
  DN_EMU_TRY(conv_geometry(who, xDesc, wDesc, convDesc, yDesc, &g));
  DN_EMU_TRY(check_data(who, "x", x));
  DN_EMU_TRY(check_data(who, "w", w));
  DN_EMU_TRY(check_data(who, "y", y));
  DN_EMU_TRY(check_search_workspace(who, workSpace, workSpaceSizeInBytes));
  const size_t need = search_need(Dir::Fwd, g, workSpaceSizeInBytes);
  const int dev = handle->device;
  const auto* xp = static_cast<const float*>(x);
  const auto* wp = static_cast<const float*>(w);
  auto* yp = static_cast<float*>(y);
  DN_EMU_TRY(queue(handle, who, [=] {
    access(dev, xp, g.x.span(), "x");
    access(dev, wp, g.f.span(), "w");
    access(dev, yp, g.y.span(), "y");
    scribble(dev, workSpace, need, "workspace");
    conv_forward_ref(g, 1.0, xp, wp, 0.0, yp);
  }));
  DN_EMU_TRY(wait(handle, who));
  rank<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(Dir::Fwd, g, workSpaceSizeInBytes,
                                                                 requestedAlgoCount, returnedAlgoCount, perfResults);
  return CUDNN_STATUS_SUCCESS;
}

// ---- backward data ---------------------------------------------------------------------------

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  DN_EMU_TRY(check_handle("cudnnGetConvolutionBackwardDataAlgorithmMaxCount", handle));
  if (count == nullptr) return bad_param("cudnnGetConvolutionBackwardDataAlgorithmMaxCount: null count");
  *count = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t handle,
                                                          const cudnnFilterDescriptor_t filterDesc,
                                                          const cudnnTensorDescriptor_t diffDesc,
                                                          const cudnnConvolutionDescriptor_t convDesc,
                                                          const cudnnTensorDescriptor_t gradDesc,
                                                          const int requestedAlgoCount, int* returnedAlgoCount,
                                                          cudnnConvolutionBwdDataAlgoPerf_t* perfResults) {
  const char* who = "cudnnGetConvolutionBackwardDataAlgorithm_v7";
  DN_EMU_TRY(check_handle(who, handle));
  DN_EMU_TRY(check_search(who, requestedAlgoCount, returnedAlgoCount, perfResults));
  Geom g;
  DN_EMU_TRY(conv_geometry(who, gradDesc, filterDesc, convDesc, diffDesc, &g));
  rank<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(Dir::BwdData, g, SIZE_MAX,
                                                                         requestedAlgoCount, returnedAlgoCount,
                                                                         perfResults);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc,
                                                           const cudnnTensorDescriptor_t dyDesc,
                                                           const cudnnConvolutionDescriptor_t convDesc,
                                                           const cudnnTensorDescriptor_t dxDesc,
                                                           cudnnConvolutionBwdDataAlgo_t algo, size_t* sizeInBytes) {
  const char* who = "cudnnGetConvolutionBackwardDataWorkspaceSize";
  DN_EMU_TRY(check_handle(who, handle));
  if (sizeInBytes == nullptr) return bad_param(std::string(who) + ": null size pointer");
  Geom g;
  DN_EMU_TRY(conv_geometry(who, dxDesc, wDesc, convDesc, dyDesc, &g));
  return algo_workspace(who, Dir::BwdData, algo, g, sizeInBytes);
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void* alpha,
                                           const cudnnFilterDescriptor_t wDesc, const void* w,
                                           const cudnnTensorDescriptor_t dyDesc, const void* dy,
                                           const cudnnConvolutionDescriptor_t convDesc,
                                           cudnnConvolutionBwdDataAlgo_t algo, void* workSpace,
                                           size_t workSpaceSizeInBytes, const void* beta,
                                           const cudnnTensorDescriptor_t dxDesc, void* dx) {
  const char* who = "cudnnConvolutionBackwardData";
  DN_EMU_TRY(check_handle_device(who, handle));
  Geom g;
  DN_EMU_TRY(conv_geometry(who, dxDesc, wDesc, convDesc, dyDesc, &g));
  DN_EMU_TRY(check_scalars(who, alpha, beta));
  DN_EMU_TRY(check_data(who, "w", w));
  DN_EMU_TRY(check_data(who, "dy", dy));
  DN_EMU_TRY(check_data(who, "dx", dx));
  size_t need = 0;
  DN_EMU_TRY(algo_workspace(who, Dir::BwdData, algo, g, &need));
  DN_EMU_TRY(check_workspace(who, need, workSpace, workSpaceSizeInBytes));
  const double al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const int dev = handle->device;
  const auto* wp = static_cast<const float*>(w);
  const auto* dyp = static_cast<const float*>(dy);
  auto* dxp = static_cast<float*>(dx);
  return queue(handle, who, [=] {
    access(dev, wp, g.f.span(), "w");
    access(dev, dyp, g.y.span(), "dy");
    access(dev, dxp, g.x.span(), "dx");
    scribble(dev, workSpace, need, "workspace");
    conv_backward_data_ref(g, al, wp, dyp, be, dxp);
  });
}

cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithmEx(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc, const void* w, const cudnnTensorDescriptor_t dyDesc,
    const void* dy, const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t dxDesc, void* dx,
    const int requestedAlgoCount, int* returnedAlgoCount, cudnnConvolutionBwdDataAlgoPerf_t* perfResults,
    void* workSpace, size_t workSpaceSizeInBytes) {
  const char* who = "cudnnFindConvolutionBackwardDataAlgorithmEx";
  DN_EMU_TRY(check_handle_device(who, handle));
  DN_EMU_TRY(check_search(who, requestedAlgoCount, returnedAlgoCount, perfResults));
  Geom g;
  DN_EMU_TRY(conv_geometry(who, dxDesc, wDesc, convDesc, dyDesc, &g));
  DN_EMU_TRY(check_data(who, "w", w));
  DN_EMU_TRY(check_data(who, "dy", dy));
  DN_EMU_TRY(check_data(who, "dx", dx));
  DN_EMU_TRY(check_search_workspace(who, workSpace, workSpaceSizeInBytes));
  const size_t need = search_need(Dir::BwdData, g, workSpaceSizeInBytes);
  const int dev = handle->device;
  const auto* wp = static_cast<const float*>(w);
  const auto* dyp = static_cast<const float*>(dy);
  auto* dxp = static_cast<float*>(dx);
  DN_EMU_TRY(queue(handle, who, [=] {
    access(dev, wp, g.f.span(), "w");
    access(dev, dyp, g.y.span(), "dy");
    access(dev, dxp, g.x.span(), "dx");
    scribble(dev, workSpace, need, "workspace");
    conv_backward_data_ref(g, 1.0, wp, dyp, 0.0, dxp);
  }));
  DN_EMU_TRY(wait(handle, who));
  rank<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      Dir::BwdData, g, workSpaceSizeInBytes, requestedAlgoCount, returnedAlgoCount, perfResults);
  return CUDNN_STATUS_SUCCESS;
}

// ---- backward filter -------------------------------------------------------------------------

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  DN_EMU_TRY(check_handle("cudnnGetConvolutionBackwardFilterAlgorithmMaxCount", handle));
  if (count == nullptr) return bad_param("cudnnGetConvolutionBackwardFilterAlgorithmMaxCount: null count");
  *count = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t handle,
                                                            const cudnnTensorDescriptor_t srcDesc,
                                                            const cudnnTensorDescriptor_t diffDesc,
                                                            const cudnnConvolutionDescriptor_t convDesc,
                                                            const cudnnFilterDescriptor_t gradDesc,
                                                            const int requestedAlgoCount, int* returnedAlgoCount,
                                                            cudnnConvolutionBwdFilterAlgoPerf_t* perfResults) {
  const char* who = "cudnnGetConvolutionBackwardFilterAlgorithm_v7";
  DN_EMU_TRY(check_handle(who, handle));
  DN_EMU_TRY(check_search(who, requestedAlgoCount, returnedAlgoCount, perfResults));
  Geom g;
  DN_EMU_TRY(conv_geometry(who, srcDesc, gradDesc, convDesc, diffDesc, &g));
  rank<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(Dir::BwdFilter, g, SIZE_MAX,
                                                                             requestedAlgoCount, returnedAlgoCount,
                                                                             perfResults);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t handle,
                                                             const cudnnTensorDescriptor_t xDesc,
                                                             const cudnnTensorDescriptor_t dyDesc,
                                                             const cudnnConvolutionDescriptor_t convDesc,
                                                             const cudnnFilterDescriptor_t gradDesc,
                                                             cudnnConvolutionBwdFilterAlgo_t algo,
                                                             size_t* sizeInBytes) {
  const char* who = "cudnnGetConvolutionBackwardFilterWorkspaceSize";
  DN_EMU_TRY(check_handle(who, handle));
  if (sizeInBytes == nullptr) return bad_param(std::string(who) + ": null size pointer");
  Geom g;
  DN_EMU_TRY(conv_geometry(who, xDesc, gradDesc, convDesc, dyDesc, &g));
  return algo_workspace(who, Dir::BwdFilter, algo, g, sizeInBytes);
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void* alpha,
                                             const cudnnTensorDescriptor_t xDesc, const void* x,
                                             const cudnnTensorDescriptor_t dyDesc, const void* dy,
                                             const cudnnConvolutionDescriptor_t convDesc,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void* workSpace,
                                             size_t workSpaceSizeInBytes, const void* beta,
                                             const cudnnFilterDescriptor_t dwDesc, void* dw) {
  const char* who = "cudnnConvolutionBackwardFilter";
  DN_EMU_TRY(check_handle_device(who, handle));
  Geom g;
  DN_EMU_TRY(conv_geometry(who, xDesc, dwDesc, convDesc, dyDesc, &g));
  DN_EMU_TRY(check_scalars(who, alpha, beta));
  DN_EMU_TRY(check_data(who, "x", x));
  DN_EMU_TRY(check_data(who, "dy", dy));
  DN_EMU_TRY(check_data(who, "dw", dw));
  size_t need = 0;
  DN_EMU_TRY(algo_workspace(who, Dir::BwdFilter, algo, g, &need));
  DN_EMU_TRY(check_workspace(who, need, workSpace, workSpaceSizeInBytes));
  const double al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const int dev = handle->device;
  const auto* xp = static_cast<const float*>(x);
  const auto* dyp = static_cast<const float*>(dy);
  auto* dwp = static_cast<float*>(dw);
  return queue(handle, who, [=] {
    access(dev, xp, g.x.span(), "x");
    access(dev, dyp, g.y.span(), "dy");
    access(dev, dwp, g.f.span(), "dw");
    scribble(dev, workSpace, need, "workspace");
    conv_backward_filter_ref(g, al, xp, dyp, be, dwp);
  });
}

cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithmEx(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const void* x, const cudnnTensorDescriptor_t dyDesc,
    const void* y, const cudnnConvolutionDescriptor_t convDesc, const cudnnFilterDescriptor_t dwDesc, void* dw,
    const int requestedAlgoCount, int* returnedAlgoCount, cudnnConvolutionBwdFilterAlgoPerf_t* perfResults,
    void* workSpace, size_t workSpaceSizeInBytes) {
  const char* who = "cudnnFindConvolutionBackwardFilterAlgorithmEx";
  DN_EMU_TRY(check_handle_device(who, handle));
  DN_EMU_TRY(check_search(who, requestedAlgoCount, returnedAlgoCount, perfResults));
  Geom g;
  DN_EMU_TRY(conv_geometry(who, xDesc, dwDesc, convDesc, dyDesc, &g));
  DN_EMU_TRY(check_data(who, "x", x));
  DN_EMU_TRY(check_data(who, "dy", y));
  DN_EMU_TRY(check_data(who, "dw", dw));
  DN_EMU_TRY(check_search_workspace(who, workSpace, workSpaceSizeInBytes));
  const size_t need = search_need(Dir::BwdFilter, g, workSpaceSizeInBytes);
  const int dev = handle->device;
  const auto* xp = static_cast<const float*>(x);
  const auto* dyp = static_cast<const float*>(y);
  auto* dwp = static_cast<float*>(dw);
  DN_EMU_TRY(queue(handle, who, [=] {
    access(dev, xp, g.x.span(), "x");
    access(dev, dyp, g.y.span(), "dy");
    access(dev, dwp, g.f.span(), "dw");
    scribble(dev, workSpace, need, "workspace");
    conv_backward_filter_ref(g, 1.0, xp, dyp, 0.0, dwp);
  }));
  DN_EMU_TRY(wait(handle, who));
  rank<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      Dir::BwdFilter, g, workSpaceSizeInBytes, requestedAlgoCount, returnedAlgoCount, perfResults);
  return CUDNN_STATUS_SUCCESS;
}

// ---- bias ------------------------------------------------------------------------------------

cudnnStatus_t cudnnConvolutionBackwardBias(cudnnHandle_t handle, const void* alpha,
                                           const cudnnTensorDescriptor_t dyDesc, const void* dy, const void* beta,
                                           const cudnnTensorDescriptor_t dbDesc, void* db) {
  const char* who = "cudnnConvolutionBackwardBias";
  DN_EMU_TRY(check_handle_device(who, handle));
  DN_EMU_TRY(check_desc(who, "dy", dyDesc));
  DN_EMU_TRY(check_desc(who, "db", dbDesc));
  const int expect[4] = {1, dyDesc->dim[1], 1, 1};
  if (!std::equal(expect, expect + 4, dbDesc->dim))
    return bad_param(std::string(who) + ": db is " + dims_str(dbDesc->dim) + ", dy " + dims_str(dyDesc->dim) +
                     " needs " + dims_str(expect));
  if (dyDesc->type != dbDesc->type) return bad_param(std::string(who) + ": dy and db data types differ");
  if (dyDesc->type != CUDNN_DATA_FLOAT)
    return not_supported(std::string(who) + ": data type " + str(dyDesc->type) + " is not emulated (float only)");
  DN_EMU_TRY(check_scalars(who, alpha, beta));
  DN_EMU_TRY(check_data(who, "dy", dy));
  DN_EMU_TRY(check_data(who, "db", db));
  const double al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const int dev = handle->device;
  const Dims dyd = dims_of(*dyDesc), dbd = dims_of(*dbDesc);
  const auto* dyp = static_cast<const float*>(dy);
  auto* dbp = static_cast<float*>(db);
  return queue(handle, who, [=] {
    access(dev, dyp, dyd.span(), "dy");
    access(dev, dbp, dbd.span(), "db");
    bias_grad_ref(dyd, al, dyp, be, dbp, dbd.s[1]);
  });
}

cudnnStatus_t cudnnAddTensor(cudnnHandle_t handle, const void* alpha, const cudnnTensorDescriptor_t aDesc,
                             const void* A, const void* beta, const cudnnTensorDescriptor_t cDesc, void* C) {
  const char* who = "cudnnAddTensor";
  DN_EMU_TRY(check_handle_device(who, handle));
  DN_EMU_TRY(check_desc(who, "A", aDesc));
  DN_EMU_TRY(check_desc(who, "C", cDesc));
  for (int i = 0; i < 4; ++i)
    if (aDesc->dim[i] != 1 && aDesc->dim[i] != cDesc->dim[i])
      return bad_param(std::string(who) + ": A " + dims_str(aDesc->dim) + " does not broadcast to C " +
                       dims_str(cDesc->dim) + " (each A dimension must be 1 or C's)");
  if (aDesc->type != cDesc->type) return bad_param(std::string(who) + ": A and C data types differ");
  if (aDesc->type != CUDNN_DATA_FLOAT)
    return not_supported(std::string(who) + ": data type " + str(aDesc->type) + " is not emulated (float only)");
  DN_EMU_TRY(check_scalars(who, alpha, beta));
  DN_EMU_TRY(check_data(who, "A", A));
  DN_EMU_TRY(check_data(who, "C", C));
  const double al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const int dev = handle->device;
  const Dims ad = dims_of(*aDesc), cd = dims_of(*cDesc);
  const auto* ap = static_cast<const float*>(A);
  auto* cp = static_cast<float*>(C);
  return queue(handle, who, [=] {
    access(dev, ap, ad.span(), "A");
    access(dev, cp, cd.span(), "C");
    add_tensor_ref(ad, al, ap, be, cd, cp);
  });
}
