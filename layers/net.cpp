#include "layers/net.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "core/error.h"
#include "core/rng.h"
#include "layers/data_layer.h"
#include "layers/registry.h"

namespace dropnet {

Net::Net(const LoadedConfig& cfg, const NetOptions& opts) : opts_(opts) { build(cfg); }
Net::~Net() = default;

int Net::find_layer(const std::string& name) const {
  for (size_t i = 0; i < layers_.size(); ++i)
    if (layers_[i]->name() == name) return static_cast<int>(i);
  return -1;
}

Blob* Net::blob(const std::string& name) {
  auto it = blob_by_name_.find(name);
  return it == blob_by_name_.end() ? nullptr : it->second;
}

std::vector<double> Net::output_means() const {
  std::vector<double> means;
  for (const Blob* b : outputs_) {
    const std::vector<float> v = b->value.to_host();
    double s = 0;
    for (float x : v) s += x;
    means.push_back(s / static_cast<double>(std::max<size_t>(v.size(), 1)));
  }
  return means;
}

std::vector<BatchSource*> Net::sources() const {
  std::vector<BatchSource*> out;
  for (const auto& l : layers_)
    if (auto* d = dynamic_cast<DataLayer*>(l.get())) out.push_back(d->source());
  return out;
}

int64_t Net::batch_size() const {
  for (const auto& l : layers_)
    if (auto* d = dynamic_cast<DataLayer*>(l.get())) return d->source()->batch_size();
  return 0;
}

namespace {

// Values in a shape, counted in double (an absurd size does not overflow).
double count_of(const Shape& s) {
  double c = 1;
  for (int d = 0; d < s.ndim(); ++d) c *= static_cast<double>(s[d]);
  return c;
}

void check_arity(const Layer& l, const LayerInfo& info, ConfigNode& node) {
  if (l.num_bottoms() >= 0 && static_cast<int>(info.bottoms.size()) != l.num_bottoms())
    node.fail("bottom", fmt::format("layer type '{}' takes {} bottom(s), got {}", info.type, l.num_bottoms(),
                                    info.bottoms.size()));
  if (l.num_tops() >= 0 && static_cast<int>(info.tops.size()) != l.num_tops())
    node.fail("top", fmt::format("layer type '{}' produces {} top(s), got {}", info.type, l.num_tops(),
                                 info.tops.size()));
  if (info.tops.empty()) node.fail("top", "a layer needs at least one top");
}

}  // namespace

void Net::build(const LoadedConfig& cfg) {
  ConfigNode root = cfg.node();
  name_ = root.get_file_name("name", "net");
  std::vector<ConfigNode> nodes = root.children("layers");
  if (nodes.empty()) root.fail("layers", "the net has no layers");
  std::set<std::string> names;     // of every layer, both phases: a name is unique in the file
  std::set<std::string> consumed;  // blobs some layer reads
  for (ConfigNode& node : nodes) {
    LayerInfo info = read_layer_info(node, opts_.device, opts_.default_engine, &names);
    info.precision = opts_.precision;
    if (!in_phase(info, opts_.phase)) continue;  // its common keys were checked all the same
    std::unique_ptr<Layer> layer = create_layer(info, node);
    check_arity(*layer, info, node);
    std::vector<Blob*> bottoms = find_bottoms(info, node);
    for (const Blob* b : bottoms) consumed.insert(b->name);
    if (auto* data = dynamic_cast<DataLayer*>(layer.get())) data->set_source(make_source(root, node));
    const std::vector<Shape> top_shapes = infer_top_shapes(*layer, bottoms, node);
    std::vector<Blob*> tops = add_tops(info, top_shapes, node);
    if (layer->loss_weight() != 0.f) loss_layers_.push_back(static_cast<int>(layers_.size()));
    bottom_.push_back(std::move(bottoms));
    top_.push_back(std::move(tops));
    layers_.push_back(std::move(layer));
  }
  for (const auto& b : blobs_)
    if (!consumed.count(b->name)) outputs_.push_back(b.get());
  forward_fused_.assign(layers_.size(), false);
  if (opts_.fuse_activations) fuse_activations();
  allocate_params();
  plan_backward();
  index_blobs();
  // Values a skipped channel range leaves unwritten are defined (zeros), not uninitialized memory.
  if (opts_.skip_unused && !opts_.shapes_only)
    for (const auto& b : blobs_)
      if (!b->value.is_view()) b->value.zero();
  if (opts_.device.is_cuda() && !opts_.shapes_only) setup_device_check();
}

void Net::setup_device_check() {
  check_.resize(1, opts_.device);
  clear_device_check();
  std::vector<const float*> tops;
  std::vector<float> weights;
  for (int li : loss_layers_) {
    tops.push_back(top_[li][0]->value.data());
    weights.push_back(layers_[li]->loss_weight());
  }
  std::vector<TopRef> table;
  for (size_t i = 0; i < layers_.size(); ++i)
    for (size_t t = 0; t < top_[i].size(); ++t)
      if (!top_[i][t]->value.empty()) {
        table.push_back({top_[i][t]->value.data(), top_[i][t]->value.count()});
        top_table_.emplace_back(static_cast<int>(i), static_cast<int>(t));
      }
  auto upload = [&](auto& arr, const auto& host) {
    arr.resize(static_cast<int64_t>(std::max<size_t>(host.size(), 1)), opts_.device);
    if (!host.empty()) device_copy(arr.data(), opts_.device, host.data(), Device::cpu(), host.size() * sizeof(host[0]));
  };
  upload(loss_tops_dev_, tops);
  upload(loss_weights_dev_, weights);
  upload(top_table_dev_, table);
}

StepCheck Net::read_device_check() const {
  StepCheck c = step_check_clear();
  if (check_.data() != nullptr) device_copy(&c, Device::cpu(), check_.data(), opts_.device, sizeof(StepCheck));
  return c;
}

void Net::clear_device_check() {
  const StepCheck c = step_check_clear();
  device_copy(check_.data(), opts_.device, &c, Device::cpu(), sizeof(StepCheck));
}

void Net::record_losses(int k, bool check_finite, float* out) {
#if DROPNET_HAVE_CUDA
  record_losses_cuda(loss_tops_dev_.data(), loss_weights_dev_.data(), num_loss_layers(), k, check_finite, out,
                     check_.data(), cuda_stream());
#else
  (void)k, (void)check_finite, (void)out;
#endif
}

void Net::scan_tops(int k) {
#if DROPNET_HAVE_CUDA
  scan_tops_cuda(top_table_dev_.data(), static_cast<int>(top_table_.size()), k, check_.data(), cuda_stream());
#else
  (void)k;
#endif
}

float Net::objective(const float* loss_values) const {
  float loss = 0.f;
  for (size_t j = 0; j < loss_layers_.size(); ++j) loss += layers_[loss_layers_[j]]->loss_weight() * loss_values[j];
  return loss;
}

std::string Net::top_description(int t) const {
  const auto [i, k] = top_table_.at(static_cast<size_t>(t));
  return fmt::format("layer '{}' (top '{}')", layers_[i]->name(), top_[i][k]->name);
}

void Net::throw_label_error(const StepCheck& c) const {
  input_error("label {} at position {} is not a class index in [0, {})", c.label_value, c.label_pos, c.label_classes);
}

// The layer of the type's factory, with the net's settings; its own keys are all read here.
std::unique_ptr<Layer> Net::create_layer(const LayerInfo& info, ConfigNode& node) const {
  if (info.engine != "native" && opts_.device.is_cpu())
    node.fail("engine", fmt::format("engine '{}' needs a CUDA device (this net runs on cpu)", info.engine));
  std::unique_ptr<Layer> layer = make_layer(info, node);
  node.finish();
  layer->skip_unused_ = opts_.skip_unused;
  if (opts_.max_iter > 0 && layer->schedule_start() >= opts_.max_iter)
    node.fail("start", fmt::format("start {} is at or past solver.max_iter {}: the layer would never be added",
                                   layer->schedule_start(), opts_.max_iter));
  return layer;
}

std::vector<Blob*> Net::find_bottoms(const LayerInfo& info, ConfigNode& node) {
  std::vector<Blob*> bottoms;
  for (const auto& b : info.bottoms) {
    Blob* blob = this->blob(b);
    if (blob == nullptr) {
      std::vector<std::string> known;
      for (const auto& kv : blob_by_name_) known.push_back(kv.first);
      node.fail("bottom", fmt::format("bottom '{}' is not a top of an earlier layer (defined so far: {})", b,
                                      known.empty() ? std::string("none") : fmt::format("{}", fmt::join(known, ", "))));
    }
    bottoms.push_back(blob);
  }
  return bottoms;
}

// A data layer's batches: the source factory's, from the `data` section of the net's phase.
std::unique_ptr<BatchSource> Net::make_source(ConfigNode& root, ConfigNode& node) const {
  const std::string phase_str = opts_.phase == Phase::Train ? "train" : "test";
  if (opts_.source_factory == nullptr) node.fail("type", "this tool cannot feed a data layer");
  ConfigNode data_root = root.optional_child("data");
  if (!data_root.valid()) root.fail("", "a net with a data layer needs a 'data' section with train/test sources");
  ConfigNode section = data_root.optional_child(phase_str);
  if (!section.valid()) data_root.fail("", fmt::format("missing '{}' source for the {} net", phase_str, phase_str));
  SourceRequest req{section, opts_.phase, opts_.seed, opts_.rank, opts_.world, opts_.shapes_only};
  if (opts_.batch_override > 0) req.section.raw()["batch_size"] = opts_.batch_override;
  return opts_.source_factory(req);
}

// The layer's top shapes for its bottoms: a shape the layer rejects is an error at its config node,
// and so are absurd sizes (input errors, not allocation failures).
std::vector<Shape> Net::infer_top_shapes(Layer& layer, const std::vector<Blob*>& bottoms, ConfigNode& node) const {
  std::vector<Shape> bottom_shapes;
  for (const Blob* b : bottoms) bottom_shapes.push_back(b->shape());
  std::vector<Shape> top_shapes;
  try {
    top_shapes = layer.reshape(bottom_shapes);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Input) throw;
    node.fail("", e.what());
  }
  DN_CHECK(top_shapes.size() == layer.info().tops.size(), "layer {} returned {} top shapes for {} tops", layer.name(),
           top_shapes.size(), layer.info().tops.size());
  for (const Shape& ts : top_shapes)
    if (count_of(ts) > opts_.max_blob_floats)
      node.fail("", fmt::format("top shape {} is too large ({:.3g} values)", ts.str(), count_of(ts)));
  for (const ParamSpec& ps : layer.param_specs())
    if (count_of(ps.shape) > opts_.max_blob_floats)
      node.fail("", fmt::format("parameter '{}' of shape {} is too large ({:.3g} values)", ps.name, ps.shape.str(),
                                count_of(ps.shape)));
  return top_shapes;
}

std::vector<Blob*> Net::add_tops(const LayerInfo& info, const std::vector<Shape>& shapes, ConfigNode& node) {
  std::vector<Blob*> tops;
  for (size_t t = 0; t < info.tops.size(); ++t) {
    const std::string& tn = info.tops[t];
    if (blob_by_name_.count(tn))
      node.fail("top", fmt::format("top '{}' is already defined by an earlier layer (in-place layers are not "
                                   "supported: give the top a new name)", tn));
    auto b = std::make_unique<Blob>();
    b->name = tn;
    b->value = Tensor(shapes[t], opts_.device);
    tops.push_back(b.get());
    blob_by_name_[tn] = b.get();
    blobs_.push_back(std::move(b));
  }
  return tops;
}

void Net::index_blobs() {
  std::map<const Blob*, int> index;
  for (size_t b = 0; b < blobs_.size(); ++b) index[blobs_[b].get()] = static_cast<int>(b);
  bottom_index_.resize(layers_.size());
  top_index_.resize(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    for (const Blob* b : bottom_[i]) bottom_index_[i].push_back(index.at(b));
    for (const Blob* t : top_[i]) top_index_[i].push_back(index.at(t));
  }
  for (const Blob* o : outputs_) output_index_.push_back(index.at(o));
}

const Net::PassPlan& Net::plan_for(const RunContext& ctx) const {
  if (plan_.iter == ctx.iter && !plan_.active.empty()) return plan_;
  const size_t n = layers_.size();
  plan_.iter = ctx.iter;
  plan_.active.assign(n, 1);
  plan_.top_use.assign(n, ChannelRange{});
  plan_.grads = bottom_grad_;
  if (!opts_.skip_unused) {
    for (size_t i = 0; i < n; ++i) plan_.top_use[i] = whole_channels(top_[i][0]->shape());
    return plan_;
  }
  // Backwards from the outputs: what each blob's readers read, as one range per blob.
  std::vector<ChannelRange> use(blobs_.size());
  for (int o : output_index_) use[o] = whole_channels(blobs_[o]->shape());
  std::vector<std::vector<ChannelRange>> reads(n);
  std::vector<ChannelRange> tops, bottoms;
  for (size_t i = n; i-- > 0;) {
    tops.clear();
    bool read = layers_[i]->always_runs();
    for (int t : top_index_[i]) {
      tops.push_back(use[t]);
      read = read || !use[t].empty();
    }
    plan_.top_use[i] = tops[0];
    plan_.active[i] = read;
    bottoms.clear();
    for (const Blob* b : bottom_[i]) bottoms.push_back(read ? whole_channels(b->shape()) : ChannelRange{});
    if (read && !bottoms.empty()) layers_[i]->bottom_use(ctx, tops, bottoms);
    for (size_t b = 0; b < bottoms.size(); ++b) use[bottom_index_[i][b]] = hull(use[bottom_index_[i][b]], bottoms[b]);
    reads[i] = bottoms;
  }
  // Gradients: a layer that does not run sends none, nor does one to a bottom it does not read;
  // the first writer of each blob in backward order overwrites (beta 0), later ones accumulate.
  std::vector<char> written(blobs_.size(), 0);
  for (size_t i = n; opts_.phase == Phase::Train && i-- > 0;)
    for (size_t b = 0; b < bottom_[i].size(); ++b) {
      BottomGrad& g = plan_.grads[i][b];
      g.needed = g.needed && plan_.active[i] && !reads[i][b].empty();
      if (!g.needed) continue;
      char& w = written[bottom_index_[i][b]];
      g.beta = w ? 1.f : 0.f;
      w = 1;
    }
  return plan_;
}

double Net::layer_forward_flops(int i, const RunContext& ctx) const {
  const PassPlan& plan = plan_for(ctx);
  return plan.active[i] ? layers_[i]->forward_flops_used(ctx, plan.top_use[i]) : 0.0;
}

void Net::allocate_params() {
  int64_t total = 0;
  for (size_t li = 0; li < layers_.size(); ++li) {
    const auto& specs = layers_[li]->param_specs();
    for (size_t pi = 0; pi < specs.size(); ++pi) {
      ParamRef r{static_cast<int>(li), static_cast<int>(pi), layers_[li]->name() + "." + specs[pi].name, total,
                 specs[pi].shape.count(), specs[pi].lr_mult, specs[pi].decay_mult};
      // Keep every parameter 16-float aligned (64 bytes) inside the arena.
      total += (r.count + 15) / 16 * 16;
      params_.push_back(r);
    }
  }
  // The arena is one allocation (values; gradients and momentum alike): bounded too.
  if (static_cast<double>(total) > opts_.max_param_floats)
    input_error("the parameters of the net total {} floats ({:.1f} GiB), more than the parameter arena may hold ({} "
                "floats)", total, static_cast<double>(total) * 4.0 / (1 << 30), opts_.max_param_floats);
  if (opts_.share_from != nullptr) {
    const Net& src = *opts_.share_from;
    param_values_ = src.param_values_;
    param_grads_ = src.param_grads_;
    for (auto& r : params_) {
      Layer& l = *layers_[r.layer];
      int si = src.find_layer(l.name());
      if (si < 0) input_error("layer '{}' has parameters in the {} net but no counterpart in the {} net", l.name(),
                              phase_name(opts_.phase), phase_name(src.phase()));
      const Layer& sl = src.layer(si);
      if (sl.params().size() != l.param_specs().size())
        input_error("layer '{}': {} parameters in {} but {} in {}", l.name(), l.param_specs().size(),
                    phase_name(opts_.phase), sl.params().size(), phase_name(src.phase()));
      const Blob& sb = sl.params()[r.index];
      if (sb.shape() != l.param_specs()[r.index].shape)
        input_error("layer '{}': parameter '{}' is {} in {} but {} in {}", l.name(), l.param_specs()[r.index].name,
                    l.param_specs()[r.index].shape.str(), phase_name(opts_.phase), sb.shape().str(),
                    phase_name(src.phase()));
      if (l.params_.size() <= static_cast<size_t>(r.index)) l.params_.resize(r.index + 1);
      l.params_[r.index] = sb;
    }
    // Offsets refer to the shared arena.
    for (auto& r : params_) {
      const Net& s = *opts_.share_from;
      for (const auto& sr : s.params())
        if (sr.name == r.name) r.offset = sr.offset;
    }
    return;
  }
  param_values_ = std::make_shared<Tensor>(Shape({std::max<int64_t>(total, 1)}), opts_.device);
  param_grads_ = std::make_shared<Tensor>(Shape({std::max<int64_t>(total, 1)}), opts_.device);
  if (!opts_.shapes_only) {
    param_values_->zero();
    param_grads_->zero();
  }
  for (auto& r : params_) {
    Layer& l = *layers_[r.layer];
    if (l.params_.size() <= static_cast<size_t>(r.index)) l.params_.resize(r.index + 1);
    Blob& b = l.params_[r.index];
    b.name = r.name;
    b.value = Tensor::view(*param_values_, r.offset, l.param_specs()[r.index].shape);
    b.grad = Tensor::view(*param_grads_, r.offset, l.param_specs()[r.index].shape);
  }
  if (!opts_.shapes_only) fill_params();
}

void Net::fill_params() {
  for (auto& r : params_) {
    Layer& l = *layers_[r.layer];
    const ParamSpec& spec = l.param_specs()[r.index];
    std::vector<float> host(static_cast<size_t>(r.count));
    HostRng rng(opts_.seed, name_hash(r.name));
    const FillerSpec& f = spec.filler;
    if (f.type == "constant") {
      for (auto& x : host) x = f.value;
    } else if (f.type == "uniform") {
      for (auto& x : host) x = rng.uniform(f.min, f.max);
    } else if (f.type == "gaussian") {
      for (auto& x : host) x = rng.normal(f.mean, f.std);
    } else if (f.type == "xavier") {
      float a = std::sqrt(3.0f / static_cast<float>(spec.fan_in));
      for (auto& x : host) x = rng.uniform(-a, a);
    } else if (f.type == "msra") {
      float s = std::sqrt(2.0f / static_cast<float>(spec.fan_in));
      for (auto& x : host) x = rng.normal(0.f, s);
    } else {
      DN_CHECK(false, "unknown filler {}", f.type);
    }
    l.params_[r.index].value.from_host(host);
  }
}

void Net::plan_backward() {
  const size_t n = layers_.size();
  layer_backward_.assign(n, false);
  bottom_grad_.assign(n, {});
  if (opts_.phase != Phase::Train) return;
  std::set<const Blob*> needs_grad;
  if (opts_.force_backward)
    for (size_t i = 0; i < n; ++i)
      if (dynamic_cast<DataLayer*>(layers_[i].get()))
        for (Blob* t : top_[i]) needs_grad.insert(t);
  for (size_t i = 0; i < n; ++i) {
    bool need = !layers_[i]->param_specs().empty();
    for (size_t b = 0; b < bottom_[i].size(); ++b)
      if (needs_grad.count(bottom_[i][b]) && layers_[i]->can_backprop_to(static_cast<int>(b))) need = true;
    layer_backward_[i] = need;
    if (need)
      for (Blob* t : top_[i]) needs_grad.insert(t);
  }
  // Blob grads: the first writer in backward order overwrites (beta 0), later ones accumulate.
  std::set<const Blob*> written;
  for (size_t i = n; i-- > 0;) {
    bottom_grad_[i].resize(bottom_[i].size());
    for (size_t b = 0; b < bottom_[i].size(); ++b) {
      Blob* blob = bottom_[i][b];
      BottomGrad& g = bottom_grad_[i][b];
      g.needed = layer_backward_[i] && needs_grad.count(blob) && layers_[i]->can_backprop_to(static_cast<int>(b));
      if (!g.needed) continue;
      g.beta = written.count(blob) ? 1.f : 0.f;
      written.insert(blob);
    }
  }
  for (const auto& b : blobs_) {
    if (!needs_grad.count(b.get())) continue;
    b->grad = Tensor(b->shape(), opts_.device);
    if (!opts_.shapes_only) b->grad.zero();  // stays zero where no consumer writes it
  }
  for (int li : loss_layers_) {
    Blob* top = top_[li][0];
    if (top->grad.empty()) top->grad = Tensor(top->shape(), opts_.device);
    if (!opts_.shapes_only) top->grad.fill(layers_[li]->loss_weight());
  }
}

void Net::fuse_activations() {
  std::map<const Blob*, int> producer, consumers;
  for (size_t i = 0; i < layers_.size(); ++i) {
    for (const Blob* t : top_[i]) producer[t] = static_cast<int>(i);
    for (const Blob* b : bottom_[i]) ++consumers[b];
  }
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::optional<Activation> act = layers_[i]->as_activation();
    if (!act || bottom_[i].size() != 1 || top_[i].size() != 1) continue;
    Blob* in = bottom_[i][0];
    auto it = producer.find(in);
    if (it == producer.end() || top_[it->second].size() != 1 || consumers[in] != 1) continue;
    if (!layers_[it->second]->fuse_activation(*act)) continue;
    // The producer writes act(output) into its top; the activation's top is the same storage.
    top_[i][0]->value = Tensor::view(in->value, 0, in->shape());
    forward_fused_[i] = true;
  }
}

namespace {
// While a layer runs: its name for kernel-launch errors, and the net's GPU as the current device
// (the thread's kernels and cuda_stream() follow it).
class LayerScope {
 public:
  LayerScope(const Device& dev, const std::string& name) : prev_(set_launch_context(name.c_str())) {
    if (dev.is_cuda()) cuda_set_device(dev.index);
  }
  ~LayerScope() { set_launch_context(prev_); }
  LayerScope(const LayerScope&) = delete;
  LayerScope& operator=(const LayerScope&) = delete;

 private:
  const char* prev_;
};
}  // namespace

void Net::forward_layer(int i, const RunContext& ctx) {
  const PassPlan& plan = plan_for(ctx);
  if (forward_fused_[i] || !plan.active[i]) return;
  LayerScope scope(opts_.device, layers_[i]->name());
  layers_[i]->top_use_ = plan.top_use[i];
  if (check_.data() != nullptr && ctx.check == nullptr) {
    RunContext c = ctx;
    c.check = check_.data();
    layers_[i]->forward(bottom_[i], top_[i], c);
    return;
  }
  layers_[i]->forward(bottom_[i], top_[i], ctx);
}

void Net::backward_layer(int i, const RunContext& ctx) {
  const PassPlan& plan = plan_for(ctx);
  if (!layer_backward_[i] || !plan.active[i]) return;
  LayerScope scope(opts_.device, layers_[i]->name());
  layers_[i]->top_use_ = plan.top_use[i];
  layers_[i]->backward(top_[i], bottom_[i], plan.grads[i], ctx);
}

void Net::forward_queued(const RunContext& ctx) {
  for (int i = 0; i < num_layers(); ++i) forward_layer(i, ctx);
}

float Net::forward(const RunContext& ctx) {
  forward_queued(ctx);
  float loss = 0.f;
  for (int li : loss_layers_) {
    float v = 0.f;
    device_copy(&v, Device::cpu(), top_[li][0]->value.data(), opts_.device, sizeof(float));
    loss += layers_[li]->loss_weight() * v;
  }
  if (check_.data() != nullptr) {
    const StepCheck c = read_device_check();
    if (c.halt != kStepOk) {
      clear_device_check();
      if (c.halt == kStepLabel) throw_label_error(c);
    }
  }
  return loss;
}

void Net::backward(const RunContext& ctx) {
  DN_CHECK(opts_.phase == Phase::Train, "backward on a {} net", phase_name(opts_.phase));
  for (int i = num_layers(); i-- > 0;) backward_layer(i, ctx);
}

void Net::zero_param_grads() {
  if (param_grads_) param_grads_->zero();
}

std::vector<std::pair<std::string, double>> Net::layer_metrics(const RunContext& ctx) const {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& l : layers_)
    for (auto& m : l->metrics(ctx)) out.emplace_back(l->name() + "." + m.first, m.second);
  return out;
}

}  // namespace dropnet
