#include "optim/solver.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>

#include "core/error.h"
#include "kernels/sgd.h"
#include "kernels/step_check.h"
#include "layers/dispatch.h"

namespace dropnet {

const std::vector<std::string>& lr_policy_names() {
  // In LrPolicy's order.
  static const std::vector<std::string> names = {"fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid"};
  return names;
}

LrPolicy lr_policy_named(const std::string& name) {
  const auto& names = lr_policy_names();
  const auto it = std::find(names.begin(), names.end(), name);
  DN_CHECK(it != names.end(), "unknown lr_policy '{}'", name);
  return static_cast<LrPolicy>(it - names.begin());
}

SolverConfig SolverConfig::parse(ConfigNode n) {
  SolverConfig c;
  c.base_lr = n.get_float("base_lr");
  if (!(c.base_lr >= 0)) n.fail("base_lr", "must be >= 0");
  c.lr_policy = lr_policy_named(n.get_choice("lr_policy", lr_policy_names(), "fixed"));
  using P = LrPolicy;
  const P p = c.lr_policy;
  const bool needs_gamma = p == P::Step || p == P::Exp || p == P::Inv || p == P::Multistep || p == P::Sigmoid;
  c.gamma = needs_gamma ? n.get_float("gamma") : n.get_float("gamma", 0.1);
  c.power = (p == P::Inv || p == P::Poly) ? n.get_float("power") : n.get_float("power", 1.0);
  c.stepsize = (p == P::Step || p == P::Sigmoid) ? n.get_positive_int("stepsize") : n.get_positive_int("stepsize", 1);
  c.stepvalue = n.get_int_list("stepvalue", {});
  if (p == P::Multistep && c.stepvalue.empty()) n.fail("stepvalue", "multistep needs a list of stepvalue");
  for (size_t i = 1; i < c.stepvalue.size(); ++i)
    if (c.stepvalue[i] <= c.stepvalue[i - 1]) n.fail("stepvalue", "stepvalue must be increasing");
  c.max_iter = n.get_positive_int("max_iter");
  c.momentum = n.get_float("momentum", 0.0);
  if (c.momentum < 0 || c.momentum >= 1) n.fail("momentum", "must be in [0, 1)");
  c.weight_decay = n.get_float("weight_decay", 0.0);
  if (c.weight_decay < 0) n.fail("weight_decay", "must be >= 0");
  c.iter_size = n.get_positive_int("iter_size", 1);
  c.clip_gradients = n.get_float("clip_gradients", -1.0);
  c.test_interval = n.get_int("test_interval", 0);
  if (c.test_interval < 0) n.fail("test_interval", "must be >= 0");
  c.test_iter = n.get_int("test_iter", c.test_interval > 0 ? 100 : 0);
  if (c.test_iter < 0) n.fail("test_iter", "must be >= 0");
  c.test_initialization = n.get_bool("test_initialization", true);
  c.display = n.get_int("display", 100);
  if (c.display < 0) n.fail("display", "must be >= 0");
  c.average_loss = n.get_positive_int("average_loss", 1);
  c.snapshot = n.get_int("snapshot", 0);
  if (c.snapshot < 0) n.fail("snapshot", "must be >= 0");
  c.snapshot_prefix = n.get_file_name("snapshot_prefix", "");
  c.keep_last = n.get_int("keep_last", 0);
  if (c.keep_last < 0) n.fail("keep_last", "must be >= 0");
  c.warmup_iter = n.get_int("warmup_iter", 0);
  if (c.warmup_iter < 0) n.fail("warmup_iter", "must be >= 0");
  c.warmup_start_factor = n.get_float("warmup_start_factor", 0.0);
  c.check_finite = n.get_bool("check_finite", true);
  c.bucket_mb = n.get_float("bucket_mb", 25.0);
  if (!(c.bucket_mb > 0)) n.fail("bucket_mb", "must be > 0");
  n.finish();
  return c;
}

double learning_rate(const SolverConfig& c, int64_t iter) {
  const double it = static_cast<double>(iter);
  double lr = c.base_lr;
  switch (c.lr_policy) {
    case LrPolicy::Fixed:
      break;
    case LrPolicy::Step:
      lr = c.base_lr * std::pow(c.gamma, std::floor(it / static_cast<double>(c.stepsize)));
      break;
    case LrPolicy::Exp:
      lr = c.base_lr * std::pow(c.gamma, it);
      break;
    case LrPolicy::Inv:
      lr = c.base_lr * std::pow(1.0 + c.gamma * it, -c.power);
      break;
    case LrPolicy::Multistep: {
      int k = 0;
      for (int64_t s : c.stepvalue)
        if (iter >= s) ++k;
      lr = c.base_lr * std::pow(c.gamma, k);
      break;
    }
    case LrPolicy::Poly:
      lr = c.base_lr * std::pow(std::max(0.0, 1.0 - it / static_cast<double>(c.max_iter)), c.power);
      break;
    case LrPolicy::Sigmoid:
      lr = c.base_lr / (1.0 + std::exp(-c.gamma * (it - static_cast<double>(c.stepsize))));
      break;
  }
  if (iter < c.warmup_iter)
    lr *= c.warmup_start_factor + (1.0 - c.warmup_start_factor) * it / static_cast<double>(c.warmup_iter);
  return lr;
}

Solver::Solver(const LoadedConfig& cfg, const SolverOptions& opts) : opts_(opts) {
  ConfigNode root = cfg.node();
  cfg_ = SolverConfig::parse(root.child("solver"));
  NetOptions no = opts.net;
  no.max_iter = opts.check_schedule_starts ? cfg_.max_iter : 0;
  if (opts.reducer) {
    no.rank = opts.reducer->rank();
    no.world = opts.reducer->world();
  }
  no.phase = Phase::Train;
  train_ = std::make_unique<Net>(cfg, no);
  if (cfg_.test_interval > 0 || cfg_.test_iter > 0) {
    no.phase = Phase::Test;
    no.share_from = train_.get();
    test_ = std::make_unique<Net>(cfg, no);
  }
  history_ = Tensor(train_->param_values().shape(), opts.net.device);
  if (!opts.net.shapes_only) history_.zero();
  layer_grad_range_.assign(static_cast<size_t>(train_->num_layers()), {0, 0});
  for (const ParamRef& r : train_->params()) {
    auto& range = layer_grad_range_[static_cast<size_t>(r.layer)];
    if (range.first == range.second) range = {r.offset, r.offset + r.count};
    range = {std::min(range.first, r.offset), std::max(range.second, r.offset + r.count)};
    segments_.push_back({r.offset, r.count, r.lr_mult, r.decay_mult});
  }
  if (opts.reducer && opts.reducer->world() > 1)
    opts.reducer->broadcast(train_->param_values().data(), train_->param_values().count(), opts.net.device);
  deferred_ = opts.net.device.is_cuda() && !opts.net.shapes_only;
  if (deferred_) {
    // Read back at least every display iterations (display iterations read back anyway).
    record_capacity_ = std::clamp<int64_t>(cfg_.display > 0 ? cfg_.display : 1000, 1, 10000);
    const int64_t per = std::max<int64_t>(cfg_.iter_size * train_->num_loss_layers(), 1);
    loss_records_ = Tensor(Shape({record_capacity_, per}), opts.net.device);
  }
}

Solver::~Solver() = default;

double Solver::smoothed_loss() const {
  if (losses_.empty()) return 0.0;
  double s = 0;
  for (float l : losses_) s += l;
  return s / static_cast<double>(losses_.size());
}

std::vector<std::pair<std::string, double>> Solver::test(int64_t iterations) {
  DN_CHECK(test_ != nullptr, "no TEST net");
  const int64_t n = iterations >= 0 ? iterations : cfg_.test_iter;
  const auto& outs = test_->outputs();
  std::vector<double> sums(outs.size(), 0.0);
  RunContext ctx{Phase::Test, iter_, opts_.net.seed, 0};
  for (int64_t i = 0; i < n; ++i) {
    ctx.rng_step = static_cast<uint32_t>(i);
    test_->forward(ctx);
    const std::vector<double> m = test_->output_means();
    for (size_t o = 0; o < outs.size(); ++o) sums[o] += m[o];
    if (on_test_batch) on_test_batch(i + 1, n);
    if (should_stop && i + 1 < n && should_stop()) return {};  // collective: every rank stops here
  }
  std::vector<double> means(outs.size());
  for (size_t o = 0; o < outs.size(); ++o) means[o] = n > 0 ? sums[o] / static_cast<double>(n) : 0.0;
  if (opts_.reducer && opts_.reducer->world() > 1) {
    opts_.reducer->allreduce_sum_double(means.data(), static_cast<int64_t>(means.size()));
    for (auto& m : means) m /= opts_.reducer->world();
  }
  std::vector<std::pair<std::string, double>> result;
  for (size_t o = 0; o < outs.size(); ++o) result.emplace_back(outs[o]->name, means[o]);
  return result;
}

// The last backward pass of an update, layer by layer, telling the reducer when each layer's
// parameter gradients are final so that their all-reduce overlaps the rest of backward.
void Solver::backward_and_reduce(const RunContext& ctx) {
  GradientReducer& r = *opts_.reducer;
  Tensor& g = train_->param_grads();
  const auto bucket_bytes = static_cast<int64_t>(cfg_.bucket_mb * 1024.0 * 1024.0);
  r.begin_backward(g.data(), g.count(), opts_.net.device, std::max<int64_t>(bucket_bytes, 4));
  for (int i = train_->num_layers(); i-- > 0;) {
    train_->backward_layer(i, ctx);
    const auto [lo, hi] = layer_grad_range_[static_cast<size_t>(i)];
    if (hi > lo) r.on_layer_grads_ready(i, g.data() + lo, hi - lo);
  }
  r.finish();
}

void Solver::apply_update() {
  Tensor& g = train_->param_grads();
  // One scaling: the mean over iter_size sub-batches and (summed by the reducer) over ranks.
  const int64_t div = cfg_.iter_size * (opts_.reducer ? opts_.reducer->world() : 1);
  float grad_scale = div > 1 ? 1.f / static_cast<float>(div) : 1.f, clip_scale = 1.f;
  if (cfg_.clip_gradients > 0) {
    // The clipping norm is that of the scaled gradients: with clipping on, the scaling stays a
    // pass of its own, ahead of the norm (the fused update then scales by the clip factor only).
    const int64_t total = g.count();
    if (grad_scale != 1.f) {
      DN_DISPATCH(opts_.net.device, scale_cpu(total, grad_scale, g.data()),
                  scale_cuda(total, grad_scale, g.data(), cuda_stream()));
      grad_scale = 1.f;
    }
    double sumsq = 0;
    DN_DISPATCH(opts_.net.device, sumsq = sumsq_cpu(total, g.data()), sumsq = sumsq_cuda(total, g.data(), cuda_stream()));
    const double norm = std::sqrt(sumsq);
    if (norm > cfg_.clip_gradients) clip_scale = static_cast<float>(cfg_.clip_gradients / norm);
  }
  const double lr = learning_rate(cfg_, iter_);
  const float mu = static_cast<float>(cfg_.momentum);
  const int nsegs = static_cast<int>(segments_.size());
  float *wp = train_->param_values().data(), *gp = g.data(), *vp = history_.data();
  DN_DISPATCH(
      opts_.net.device,
      sgd_update_arena_cpu(segments_.data(), nsegs, lr, mu, cfg_.weight_decay, grad_scale, clip_scale, wp, gp, vp),
      sgd_update_arena_cuda(device_segments_.upload(segments_, opts_.net.device), nsegs, g.count(), lr, mu,
                            cfg_.weight_decay, grad_scale, clip_scale, wp, gp, vp, cuda_stream(),
                            deferred_ ? &train_->device_check()->halt : nullptr));
}

void Solver::check_finite_or_throw(float loss) {
  if (!cfg_.check_finite) return;
  auto nonfinite = [&](const Tensor& t) -> int64_t {
    if (t.empty()) return 0;
    int64_t c = 0;
    DN_DISPATCH(t.device(), c = count_nonfinite_cpu(t.count(), t.data()),
                c = count_nonfinite_cuda(t.count(), t.data(), cuda_stream()));
    return c;
  };
  std::string where;
  if (!std::isfinite(loss)) {
    for (int i = 0; i < train_->num_layers() && where.empty(); ++i)
      for (Blob* t : train_->tops(i))
        if (nonfinite(t->value) > 0) {
          where = fmt::format("first non-finite output: layer '{}' (top '{}')", train_->layer(i).name(), t->name);
          break;
        }
    diverged_error("divergence: the loss is {} at iteration {}; {}", loss, iter_,
                where.empty() ? "no layer output is non-finite" : where);
  }
  if (nonfinite(train_->param_grads()) > 0) {
    for (const ParamRef& r : train_->params()) {
      Tensor view = Tensor::view(train_->param_grads(), r.offset, Shape({r.count}));
      if (nonfinite(view) > 0) {
        where = r.name;
        break;
      }
    }
    diverged_error("divergence: non-finite gradient at iteration {} in parameter '{}'", iter_, where);
  }
}

void Solver::read_back() {
  if (!deferred_ || records_ == 0) return;
  const auto t0 = std::chrono::steady_clock::now();
  const int nloss = train_->num_loss_layers();
  const int64_t per = cfg_.iter_size * nloss, n = records_;
  std::vector<float> values(static_cast<size_t>(n * per));
  if (!values.empty())
    device_copy(values.data(), Device::cpu(), loss_records_.data(), opts_.net.device, values.size() * sizeof(float));
  const StepCheck c = train_->read_device_check();
  records_ = 0;
  seconds_since_display_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (int64_t r = 0; r < n; ++r) {
    const int64_t it = records_begin_ + r;
    const bool failed = c.halt != kStepOk && c.record == r;
    if (failed && c.halt == kStepLabel) {
      iter_ = it;
      train_->throw_label_error(c);
    }
    double loss = 0;
    for (int64_t k = 0; k < cfg_.iter_size; ++k) {
      const float l = train_->objective(values.data() + (r * cfg_.iter_size + k) * nloss);
      if (cfg_.check_finite && (!std::isfinite(l) || (failed && c.halt == kStepLoss && c.k == k))) {
        iter_ = it;
        const bool named = failed && c.halt == kStepLoss && c.first_top != INT_MAX;
        diverged_error("divergence: the loss is {} at iteration {}; {}", l, iter_,
                       named ? "first non-finite output: " + train_->top_description(c.first_top)
                             : std::string("no layer output is non-finite"));
      }
      loss += l;
    }
    if (failed && c.halt == kStepGrad) {
      iter_ = it;
      std::string where;
      for (const ParamRef& p : train_->params())
        if (c.first_grad >= p.offset && c.first_grad < p.offset + p.count) where = p.name;
      diverged_error("divergence: non-finite gradient at iteration {} in parameter '{}'", iter_, where);
    }
    DN_CHECK(!failed, "the device halted the run at iteration {} (check {}) for no reason the host finds", it, c.halt);
    loss /= static_cast<double>(cfg_.iter_size);
    if (static_cast<int64_t>(losses_.size()) >= cfg_.average_loss) losses_.erase(losses_.begin());
    losses_.push_back(static_cast<float>(loss));
  }
}

void Solver::step(int64_t n) {
  using clock = std::chrono::steady_clock;
  const int world = opts_.reducer ? opts_.reducer->world() : 1;
  const bool root = !opts_.reducer || opts_.reducer->rank() == 0;
  const int64_t stop = iter_ + n;
  // The update, reduction and checks run on the net's GPU (cuda_stream() is per device).
  if (opts_.net.device.is_cuda()) cuda_set_device(opts_.net.device.index);
  while (iter_ < stop) {
    if (should_stop && should_stop()) {
      read_back();
      return;
    }
    if (test_ && cfg_.test_interval > 0 && iter_ % cfg_.test_interval == 0 &&
        (iter_ > 0 || cfg_.test_initialization)) {
      read_back();
      report_test();
      if (should_stop && should_stop()) return;  // a signal during the test: no iteration after it
    }
    auto t0 = clock::now();
    train_->zero_param_grads();
    double loss = 0;
    if (deferred_ && records_ == 0) records_begin_ = iter_;
    try {
      for (int64_t k = 0; k < cfg_.iter_size; ++k) {
        RunContext ctx{Phase::Train, iter_, opts_.net.seed, static_cast<uint32_t>(iter_ * cfg_.iter_size + k)};
        if (deferred_) {
          // Nothing is read back: the loss values go into this iteration's record, the checks into
          // the net's StepCheck (read_back()).
          train_->forward_queued(ctx);
          train_->record_losses(static_cast<int>(k), cfg_.check_finite,
                                loss_records_.data() + records_ * cfg_.iter_size * train_->num_loss_layers());
          if (cfg_.check_finite) train_->scan_tops(static_cast<int>(k));
        } else {
          float l = train_->forward(ctx);
          if (cfg_.check_finite && !std::isfinite(l)) check_finite_or_throw(l);
          loss += l;
        }
        if (opts_.reducer && k + 1 == cfg_.iter_size)
          backward_and_reduce(ctx);
        else
          train_->backward(ctx);
      }
    } catch (const Error& e) {
      // Bad input in this iteration (a data source's error): a failure of an earlier, queued
      // iteration is raised first, as it was before this one began.
      if (deferred_ && e.kind() == ErrorKind::Input) read_back();
      throw;
    }
    if (deferred_) {
#if DROPNET_HAVE_CUDA
      Tensor& g = train_->param_grads();
      check_grads_cuda(cfg_.check_finite ? g.count() : 0, g.data(), static_cast<int>(records_),
                       train_->device_check(), cuda_stream());
#endif
      ++records_;
    } else {
      loss /= static_cast<double>(cfg_.iter_size);
      if (cfg_.check_finite) check_finite_or_throw(static_cast<float>(loss));
      if (static_cast<int64_t>(losses_.size()) >= cfg_.average_loss) losses_.erase(losses_.begin());
      losses_.push_back(static_cast<float>(loss));
    }
    const double lr = learning_rate(cfg_, iter_);
    apply_update();
    if (!deferred_) device_synchronize(opts_.net.device);
    seconds_since_display_ += std::chrono::duration<double>(clock::now() - t0).count();
    images_since_display_ += static_cast<double>(train_->batch_size() * cfg_.iter_size * world);
    const bool display = cfg_.display > 0 && iter_ % cfg_.display == 0;
    // Every rank reads back at the same iterations (a data-parallel run at every one).
    if (display || records_ == record_capacity_ || world > 1) read_back();
    if (root && display) {
      const double ips = seconds_since_display_ > 0 ? images_since_display_ / seconds_since_display_ : 0.0;
      RunContext ctx{Phase::Train, iter_, opts_.net.seed, 0};
      TrainRecord rec{"train", iter_, {{"loss", smoothed_loss()}, {"lr", lr}, {"images_per_s", ips}}};
      double wait = 0;
      for (BatchSource* s : train_->sources()) wait += s->wait_seconds();
      rec.values.emplace_back("data_wait_s", wait);
      std::string extra;
      for (auto& m : train_->layer_metrics(ctx)) {
        rec.values.push_back(m);
        extra += fmt::format(", {} = {:.4g}", m.first, m.second);
      }
      if (!opts_.quiet)
        spdlog::info("Iteration {}, loss = {:.5g}, lr = {:.6g}, {:.0f} img/s{}", iter_, smoothed_loss(), lr, ips, extra);
      if (on_record) on_record(rec);
      images_since_display_ = seconds_since_display_ = 0;
    }
    ++iter_;
    if (cfg_.snapshot > 0 && iter_ % cfg_.snapshot == 0 && on_snapshot) {
      read_back();
      on_snapshot(iter_);
    }
  }
  read_back();
}

void Solver::solve() {
  step(cfg_.max_iter - iter_);
  if (should_stop && should_stop()) return;
  // Final test as Caffe does after the last iteration.
  if (test_ && cfg_.test_interval > 0) report_test();
}

void Solver::report_test() {
  const auto result = test();
  if (result.empty() || (opts_.reducer && opts_.reducer->rank() != 0)) return;  // stopped, or not rank 0
  for (const auto& kv : result) spdlog::info("Iteration {}, Testing net: {} = {:.5g}", iter_, kv.first, kv.second);
  if (on_record) on_record(TrainRecord{"test", iter_, result});
}

}  // namespace dropnet
