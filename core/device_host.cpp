// Host memory paths of the device API, and the CUDA entry points of a build without CUDA.
#include <algorithm>
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
  for (Slot& s : slots_) {
    if (s.host == nullptr) continue;
#if DROPNET_HAVE_CUDA
    if (target_.is_cuda()) {
      cuda_event_destroy(s.uploaded);  // each waits for its fenced work first
      cuda_event_destroy(s.consumed);
      cuda_pinned_free(s.host);
      device_free(target_, s.device, capacity_ * sizeof(float));
      s = Slot{};
      continue;
    }
#endif
    std::free(s.host);
    s = Slot{};
  }
  current_ = 0;
}

float* HostStaging::acquire(size_t n, Device target) {
  if (slots_[0].host != nullptr && (n > capacity_ || !(target == target_))) release();
  if (slots_[0].host == nullptr) {
    target_ = target;
    capacity_ = n;
#if DROPNET_HAVE_CUDA
    if (target.is_cuda()) {
      for (Slot& s : slots_) {
        s.host = static_cast<float*>(cuda_pinned_alloc(std::max<size_t>(n, 1) * sizeof(float)));
        s.device = static_cast<float*>(device_alloc(target, std::max<size_t>(n, 1) * sizeof(float)));
        s.uploaded = cuda_event_create(target.index);
        s.consumed = cuda_event_create(target.index);
      }
      current_ = 0;
      return slots_[0].host;
    }
#endif
    slots_[0].host = static_cast<float*>(host_alloc(n * sizeof(float)));
    current_ = 0;
    return slots_[0].host;
  }
#if DROPNET_HAVE_CUDA
  if (target_.is_cuda()) {
    Slot& s = slots_[current_];
    if (s.upload_pending) cuda_event_wait_host(s.uploaded);  // normally fired long ago
    s.upload_pending = false;
  }
#endif
  return slots_[current_].host;
}

void HostStaging::copy_to(float* dst, size_t n) {
  Slot& s = slots_[current_];
  DN_CHECK(s.host != nullptr && n <= capacity_, "HostStaging::copy_to: {} floats from a buffer of {}", n, capacity_);
#if DROPNET_HAVE_CUDA
  if (target_.is_cuda()) {
    if (n > 0)
      cuda_staged_upload(target_.index, dst, s.device, s.host, n * sizeof(float), s.uploaded, s.consumed,
                         s.consume_recorded);
    if (n > 0) s.upload_pending = s.consume_recorded = true;
    current_ ^= 1;
    return;
  }
#endif
  device_copy(dst, target_, s.host, Device::cpu(), n * sizeof(float));
}

#if !DROPNET_HAVE_CUDA
bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
void cuda_set_device(int) { input_error("this build has no CUDA support (DROPNET_CUDA=OFF)"); }
int cuda_current_device() { return 0; }
Stream cuda_stream() { return nullptr; }
Stream cuda_copy_stream() { return nullptr; }
void cuda_stream_wait_host(Stream) {}
uint64_t cuda_host_syncs() { return 0; }
uint64_t cuda_copy_stream_uploads() { return 0; }
const char* set_launch_context(const char*) { return nullptr; }
size_t cuda_bytes_in_use() { return 0; }
size_t cuda_bytes_cached() { return 0; }
#endif

}  // namespace dropnet
