#include "core/tensor.h"

#include <fmt/format.h>

#include "core/error.h"

namespace dropnet {

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::vector<int64_t>(dims)) {}

Shape::Shape(const std::vector<int64_t>& dims) {
  DN_CHECK(dims.size() <= kMaxDims, "shape with {} dims (max {})", dims.size(), kMaxDims);
  ndim_ = static_cast<int>(dims.size());
  for (int i = 0; i < ndim_; ++i) {
    DN_CHECK(dims[i] >= 0, "negative extent {} in dim {}", dims[i], i);
    d_[i] = dims[i];
  }
}

int64_t Shape::count_from(int start) const {
  int64_t c = 1;
  for (int i = start; i < ndim_; ++i)
    if (__builtin_mul_overflow(c, d_[i], &c)) input_error("shape {} has too many elements", str());
  return c;
}

std::string Shape::str() const {
  std::string s = "(";
  for (int i = 0; i < ndim_; ++i) s += (i ? ", " : "") + std::to_string(d_[i]);
  return s + ")";
}

bool Shape::operator==(const Shape& o) const {
  if (ndim_ != o.ndim_) return false;
  for (int i = 0; i < ndim_; ++i)
    if (d_[i] != o.d_[i]) return false;
  return true;
}

Storage::Storage(Device dev, size_t nbytes) : device(dev), bytes(nbytes), ptr(device_alloc(dev, nbytes)) {}
Storage::~Storage() { device_free(device, ptr, bytes); }

Tensor::Tensor(const Shape& shape, Device dev) : device_(dev) { reshape(shape); }

void Tensor::reshape(const Shape& shape) {
  size_t need = static_cast<size_t>(shape.count()) * sizeof(float);
  if (view_) {
    DN_CHECK(static_cast<size_t>(shape.count()) <= static_cast<size_t>(shape_.count()),
             "view of {} cannot grow to {}", shape_.str(), shape.str());
  } else if (!storage_ || storage_->bytes < need) {
    storage_ = std::make_shared<Storage>(device_, need);
    offset_ = 0;
  }
  shape_ = shape;
}

void Tensor::to(Device dev) {
  if (dev == device_) return;
  DN_CHECK(!view_, "cannot move a view to {}", dev.str());
  if (!storage_) {
    device_ = dev;
    return;
  }
  auto s = std::make_shared<Storage>(dev, static_cast<size_t>(count()) * sizeof(float));
  device_copy(s->ptr, dev, data(), device_, static_cast<size_t>(count()) * sizeof(float));
  storage_ = std::move(s);
  offset_ = 0;
  device_ = dev;
}

Tensor Tensor::view(const Tensor& base, int64_t offset, const Shape& shape) {
  DN_CHECK(base.storage_, "view of an unallocated tensor");
  DN_CHECK(static_cast<size_t>((base.offset_ + offset + shape.count())) * sizeof(float) <= base.storage_->bytes,
           "view [{}, +{}) outside storage of {} bytes", offset, shape.count(), base.storage_->bytes);
  Tensor t;
  t.storage_ = base.storage_;
  t.offset_ = base.offset_ + offset;
  t.shape_ = shape;
  t.device_ = base.device_;
  t.view_ = true;
  return t;
}

void Tensor::zero() {
  if (count()) device_zero(device_, data(), static_cast<size_t>(count()) * sizeof(float));
}

void Tensor::fill(float v) {
  if (count()) device_fill(device_, data(), static_cast<size_t>(count()), v);
}

void Tensor::copy_from(const Tensor& src) {
  DN_CHECK(src.count() == count(), "copy {} -> {}", src.shape().str(), shape_.str());
  device_copy(data(), device_, src.data(), src.device_, static_cast<size_t>(count()) * sizeof(float));
}

std::vector<float> Tensor::to_host() const {
  std::vector<float> v(static_cast<size_t>(count()));
  if (!v.empty()) device_copy(v.data(), Device::cpu(), data(), device_, v.size() * sizeof(float));
  return v;
}

void Tensor::from_host(const std::vector<float>& v) { from_host(v.data(), static_cast<int64_t>(v.size())); }

void Tensor::from_host(const float* p, int64_t n) {
  DN_CHECK(n == count(), "from_host: {} values into {}", n, shape_.str());
  if (n) device_copy(data(), device_, p, Device::cpu(), static_cast<size_t>(n) * sizeof(float));
}

}  // namespace dropnet
