// DeviceArray<T>: `count` elements of a trivially copyable T on a device, for the integer arrays
// kernels keep beside the float tensors (pooling's argmax).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/device.h"

namespace dropnet {

template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(int64_t count, Device dev) { resize(count, dev); }
  ~DeviceArray() { device_free(device_, data_, bytes_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  // Like Tensor::reshape: reallocates only when the allocation is too small (or on another
  // device), and then the contents are lost.
  void resize(int64_t count, Device dev) {
    const size_t need = static_cast<size_t>(count) * sizeof(T);
    if (data_ == nullptr || bytes_ < need || !(device_ == dev)) {
      device_free(device_, data_, bytes_);
      data_ = nullptr;  // stays null if the allocation throws
      data_ = static_cast<T*>(device_alloc(dev, need));
      bytes_ = need;
      device_ = dev;
    }
    count_ = count;
  }

  T* data() { return data_; }  // null until the first resize
  const T* data() const { return data_; }
  int64_t count() const { return count_; }
  std::vector<T> to_host() const {
    std::vector<T> v(static_cast<size_t>(count_));
    if (!v.empty()) device_copy(v.data(), Device::cpu(), data_, device_, v.size() * sizeof(T));
    return v;
  }

 private:
  T* data_ = nullptr;
  size_t bytes_ = 0;
  int64_t count_ = 0;
  Device device_;
};

}  // namespace dropnet
