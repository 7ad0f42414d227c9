// Shape, Tensor and Blob. float32, NCHW, up to 4 dims, contiguous, reference-counted storage on a
// Device. Tensors may be views into a flat arena (parameters and their gradients live in one).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"

namespace dropnet {

class Shape {
 public:
  static constexpr int kMaxDims = 4;
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(const std::vector<int64_t>& dims);

  int ndim() const { return ndim_; }
  int64_t operator[](int i) const { return d_[i]; }
  int64_t& operator[](int i) { return d_[i]; }
  int64_t count() const { return count_from(0); }  // 1 for a 0-d shape
  int64_t count_from(int start) const;
  // NCHW accessors; missing trailing dims read as 1.
  int64_t n() const { return dim_or_1(0); }
  int64_t c() const { return dim_or_1(1); }
  int64_t h() const { return dim_or_1(2); }
  int64_t w() const { return dim_or_1(3); }
  std::vector<int64_t> dims() const { return {d_.begin(), d_.begin() + ndim_}; }
  std::string str() const;  // "(64, 20, 24, 24)"
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  int64_t dim_or_1(int i) const { return i < ndim_ ? d_[i] : 1; }
  int ndim_ = 0;
  std::array<int64_t, kMaxDims> d_{};
};

struct Storage {
  Storage(Device dev, size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  Device device;
  size_t bytes;
  void* ptr;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(const Shape& shape, Device dev = Device::cpu());

  // Changes the shape; reallocates only when the storage is too small (never for a view,
  // whose size is fixed: a view that would grow is an internal error).
  void reshape(const Shape& shape);
  // Moves an owned tensor to another device (allocating there); contents are copied.
  void to(Device dev);
  // A view of `count(shape)` floats starting `offset` floats into `base`'s storage.
  static Tensor view(const Tensor& base, int64_t offset, const Shape& shape);

  float* data() { return ptr(); }
  const float* data() const { return ptr(); }
  const Shape& shape() const { return shape_; }
  int64_t count() const { return storage_ ? shape_.count() : 0; }
  Device device() const { return device_; }
  bool empty() const { return !storage_; }
  bool is_view() const { return view_; }
  bool shares_storage(const Tensor& o) const { return storage_ && storage_ == o.storage_; }

  void zero();
  void fill(float v);
  void copy_from(const Tensor& src);  // same count, any devices
  std::vector<float> to_host() const;
  void from_host(const std::vector<float>& v);
  void from_host(const float* p, int64_t n);

 private:
  float* ptr() const {
    return storage_ ? static_cast<float*>(storage_->ptr) + offset_ : nullptr;
  }
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;
  Shape shape_;
  Device device_;
  bool view_ = false;
};

// Caffe's Blob: a value and its gradient of the same shape.
struct Blob {
  std::string name;
  Tensor value;
  Tensor grad;
  const Shape& shape() const { return value.shape(); }
};

}  // namespace dropnet
