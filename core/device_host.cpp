// Host memory paths of the device API, and the CUDA entry points of a build without CUDA.
#include <cstdlib>
#include <cstring>

#include "core/device.h"
#include "core/device_internal.h"
#include "core/error.h"

namespace dropnet {

void* device_alloc(Device d, size_t bytes) {
  if (d.is_cpu()) return host_alloc(bytes);
#if DROPNET_HAVE_CUDA
  return cuda_alloc(d.index, bytes);
#else
  input_error("device {}: this build has no CUDA support", d.str());
#endif
}

void device_free(Device d, void* p, size_t bytes) {
  if (p == nullptr) return;
  if (d.is_cpu()) {
    std::free(p);
    return;
  }
#if DROPNET_HAVE_CUDA
  cuda_free(p, bytes);
#else
  (void)bytes;
#endif
}

void device_zero(Device d, void* p, size_t bytes) {
  if (d.is_cpu()) {
    std::memset(p, 0, bytes);
    return;
  }
#if DROPNET_HAVE_CUDA
  cuda_zero(d.index, p, bytes);
#else
  input_error("device {}: this build has no CUDA support", d.str());
#endif
}

void device_fill(Device d, float* p, size_t n, float value) {
  if (d.is_cpu()) {
    for (size_t i = 0; i < n; ++i) p[i] = value;
    return;
  }
#if DROPNET_HAVE_CUDA
  cuda_fill(d.index, p, n, value);
#else
  input_error("device {}: this build has no CUDA support", d.str());
#endif
}

void device_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memmove(dst, src, bytes);
    return;
  }
#if DROPNET_HAVE_CUDA
  cuda_copy(dst, dst_dev.is_cuda() ? dst_dev.index : -1, src, src_dev.is_cuda() ? src_dev.index : -1, bytes);
#else
  input_error("device copy {} -> {}: this build has no CUDA support", src_dev.str(), dst_dev.str());
#endif
}

void device_synchronize(Device d) {
#if DROPNET_HAVE_CUDA
  if (d.is_cuda()) cuda_sync(d.index);
#else
  (void)d;
#endif
}

HostStaging::~HostStaging() { release(); }

void HostStaging::release() {
  if (data_ == nullptr) return;
#if DROPNET_HAVE_CUDA
  if (target_.is_cuda()) {
    cuda_event_destroy(event_);  // waits for a queued copy first
    cuda_pinned_free(data_);
    event_ = nullptr;
    pending_ = false;
    data_ = nullptr;
    return;
  }
#endif
  std::free(data_);
  data_ = nullptr;
}

float* HostStaging::acquire(size_t n, Device target) {
  if (data_ != nullptr && (n > capacity_ || !(target == target_))) release();
  if (data_ == nullptr) {
    target_ = target;
    capacity_ = n;
#if DROPNET_HAVE_CUDA
    if (target.is_cuda()) {
      data_ = static_cast<float*>(cuda_pinned_alloc(n * sizeof(float)));
      event_ = cuda_event_create(target.index);
      return data_;
    }
#endif
    data_ = static_cast<float*>(host_alloc(n * sizeof(float)));
    return data_;
  }
#if DROPNET_HAVE_CUDA
  if (pending_) cuda_event_wait_host(event_);
  pending_ = false;
#endif
  return data_;
}

void HostStaging::copy_to(float* dst, size_t n) {
  DN_CHECK(data_ != nullptr && n <= capacity_, "HostStaging::copy_to: {} floats from a buffer of {}", n, capacity_);
  device_copy(dst, target_, data_, Device::cpu(), n * sizeof(float));
#if DROPNET_HAVE_CUDA
  if (target_.is_cuda()) {
    cuda_event_record(target_.index, event_);
    pending_ = true;
  }
#endif
}

#if !DROPNET_HAVE_CUDA
bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
void cuda_set_device(int) { input_error("this build has no CUDA support (DROPNET_CUDA=OFF)"); }
int cuda_current_device() { return 0; }
Stream cuda_stream() { return nullptr; }
const char* set_launch_context(const char*) { return nullptr; }
size_t cuda_bytes_in_use() { return 0; }
size_t cuda_bytes_cached() { return 0; }
#endif

}  // namespace dropnet
