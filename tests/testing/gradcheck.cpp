#include "tests/testing/gradcheck.h"

#include <cmath>
#include <sstream>

#include "core/rng.h"
#include "layers/registry.h"

namespace dropnet::testing {

namespace {
std::vector<Blob*> ptrs(std::vector<Blob>& v) {
  std::vector<Blob*> p;
  for (auto& b : v) p.push_back(&b);
  return p;
}
}  // namespace

void LayerUnderTest::forward(const RunContext& ctx) { layer->forward(ptrs(bottoms), ptrs(tops), ctx); }

void LayerUnderTest::backward(const RunContext& ctx, float beta) {
  std::vector<BottomGrad> bg(bottoms.size());
  for (size_t i = 0; i < bg.size(); ++i) {
    bg[i].needed = layer->can_backprop_to(static_cast<int>(i));
    bg[i].beta = beta;
  }
  layer->backward(ptrs(tops), ptrs(bottoms), bg, ctx);
}

LayerUnderTest make_layer_under_test(const std::string& yaml, const std::vector<Shape>& bottom_shapes, uint64_t seed,
                                     Device dev) {
  LoadedConfig cfg = load_config_text(yaml, "<test>");
  ConfigNode node = cfg.node();
  LayerInfo info = read_layer_info(node, dev, "native");
  info.rng_stream = 12345;  // one fixed stream for every layer under test, whatever its name
  LayerUnderTest t;
  t.layer = make_layer(info, node);
  node.finish();
  std::vector<Shape> tops = t.layer->reshape(bottom_shapes);
  for (size_t i = 0; i < bottom_shapes.size(); ++i) {
    Blob b;
    b.value = random_tensor(bottom_shapes[i], seed + 100 + i, -1.f, 1.f, dev);
    b.grad = Tensor(bottom_shapes[i], dev);
    b.grad.zero();
    t.bottoms.push_back(std::move(b));
  }
  for (const Shape& s : tops) {
    Blob b;
    b.value = Tensor(s, dev);
    b.grad = Tensor(s, dev);
    b.grad.zero();
    t.tops.push_back(std::move(b));
  }
  auto& params = t.layer->params();
  params.clear();
  for (size_t i = 0; i < t.layer->param_specs().size(); ++i) {
    Blob p;
    p.name = t.layer->param_specs()[i].name;
    p.value = random_tensor(t.layer->param_specs()[i].shape, seed + 200 + i, -1.f, 1.f, dev);
    p.grad = Tensor(p.value.shape(), dev);
    p.grad.zero();
    params.push_back(std::move(p));
  }
  return t;
}

namespace {

// L = sum c_k top_k over all tops (double accumulation); c fixed.
double objective(LayerUnderTest& t, const std::vector<std::vector<float>>& coeff, const RunContext& ctx) {
  t.forward(ctx);
  double l = 0;
  for (size_t i = 0; i < t.tops.size(); ++i) {
    std::vector<float> v = t.tops[i].value.to_host();
    for (size_t k = 0; k < v.size(); ++k) l += static_cast<double>(coeff[i][k]) * v[k];
  }
  return l;
}

}  // namespace

::testing::AssertionResult check_gradients(LayerUnderTest& t, const GradCheckOptions& o) {
  const bool is_loss = t.layer->loss_weight() != 0.f;
  std::vector<std::vector<float>> coeff;
  for (size_t i = 0; i < t.tops.size(); ++i) {
    const int64_t n = t.tops[i].value.count();
    if (is_loss && i == 0) coeff.push_back(std::vector<float>(static_cast<size_t>(n), 1.f));
    else coeff.push_back(random_vector(n, 999 + i, -1.f, 1.f));
  }
  // Analytic gradients.
  objective(t, coeff, o.ctx);
  for (size_t i = 0; i < t.tops.size(); ++i) {
    // A loss layer reads its own loss_weight; top grads for others are the coefficients.
    t.tops[i].grad.from_host(coeff[i]);
  }
  for (auto& p : t.layer->params()) p.grad.zero();
  t.backward(o.ctx);

  std::ostringstream failures;
  int64_t checked = 0, bad = 0;
  auto check_tensor = [&](Tensor& value, const Tensor& grad, const std::string& what) {
    std::vector<float> analytic = grad.to_host();
    std::vector<float> x = value.to_host();
    for (size_t k = 0; k < x.size(); ++k) {
      if (o.kink > 0 && std::fabs(x[k]) < o.kink) continue;
      const float orig = x[k];
      x[k] = orig + o.step;
      value.from_host(x);
      double lp = objective(t, coeff, o.ctx);
      x[k] = orig - o.step;
      value.from_host(x);
      double lm = objective(t, coeff, o.ctx);
      x[k] = orig;
      value.from_host(x);
      const double numeric = (lp - lm) / (2.0 * o.step);
      const double a = analytic[k];
      const double scale = std::max({std::fabs(a), std::fabs(numeric), 1.0});
      ++checked;
      if (std::fabs(a - numeric) > o.threshold * scale) {
        if (++bad <= 5)
          failures << what << "[" << k << "]: analytic " << a << " numeric " << numeric << "\n";
      }
    }
  };
  for (size_t i = 0; i < t.bottoms.size(); ++i) {
    bool want = o.check_bottoms.empty() ? t.layer->can_backprop_to(static_cast<int>(i))
                                        : std::find(o.check_bottoms.begin(), o.check_bottoms.end(),
                                                    static_cast<int>(i)) != o.check_bottoms.end();
    if (!want) continue;
    Tensor g = t.bottoms[i].grad;  // analytic (copy handle; values stay since backward is not rerun)
    std::vector<float> saved = g.to_host();
    Tensor analytic(g.shape());
    analytic.from_host(saved);
    check_tensor(t.bottoms[i].value, analytic, "bottom " + std::to_string(i));
  }
  if (o.check_params) {
    for (size_t p = 0; p < t.layer->params().size(); ++p) {
      Blob& b = t.layer->params()[p];
      Tensor analytic(b.grad.shape());
      analytic.from_host(b.grad.to_host());
      check_tensor(b.value, analytic, "param " + b.name);
    }
  }
  if (checked == 0) return ::testing::AssertionFailure() << "no element was checked";
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << checked << " gradients wrong:\n" << failures.str();
}

}  // namespace dropnet::testing
