// Host memory paths of the device API, and the CUDA entry points of a build without CUDA.
#include <cstdlib>
#include <cstring>

#include "core/device.h"
#include "core/error.h"

namespace dropnet {

void* host_alloc(size_t bytes);
#if DROPNET_HAVE_CUDA
void* cuda_alloc(size_t bytes);
void cuda_free(void* p, size_t bytes);
void cuda_zero(void* p, size_t bytes);
void cuda_fill(float* p, size_t n, float v);
void cuda_copy(void* dst, bool dst_dev, const void* src, bool src_dev, size_t bytes);
void cuda_sync();
#endif

void* device_alloc(Device d, size_t bytes) {
  if (d.is_cpu()) return host_alloc(bytes);
#if DROPNET_HAVE_CUDA
  cuda_set_device(d.index);
  return cuda_alloc(bytes);
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
  cuda_zero(p, bytes);
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
  cuda_fill(p, n, value);
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
  cuda_copy(dst, dst_dev.is_cuda(), src, src_dev.is_cuda(), bytes);
#else
  input_error("device copy {} -> {}: this build has no CUDA support", src_dev.str(), dst_dev.str());
#endif
}

void device_synchronize(Device d) {
#if DROPNET_HAVE_CUDA
  if (d.is_cuda()) cuda_sync();
#else
  (void)d;
#endif
}

#if !DROPNET_HAVE_CUDA
bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
void cuda_set_device(int) { input_error("this build has no CUDA support (DROPNET_CUDA=OFF)"); }
Stream cuda_stream() { return nullptr; }
size_t cuda_bytes_in_use() { return 0; }
size_t cuda_bytes_cached() { return 0; }
#endif

}  // namespace dropnet
