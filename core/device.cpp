#include "core/device.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/device_internal.h"
#include "core/error.h"

namespace dropnet {

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::cpu();
  if (s == "auto") return cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu();
  if (s == "cuda" || s.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (s.size() > 5) {
      char* end = nullptr;
      long v = std::strtol(s.c_str() + 5, &end, 10);
      if (*end != '\0' || v < 0) input_error("device '{}': expected cpu, cuda, cuda:N or auto", s);
      index = static_cast<int>(v);
    }
    if (!cuda_compiled()) input_error("device '{}': this build has no CUDA support (DROPNET_CUDA=OFF)", s);
    int n = cuda_device_count();
    if (index >= n) input_error("device '{}': {} CUDA device(s) present", s, n);
    return Device::cuda(index);
  }
  input_error("device '{}': expected cpu, cuda, cuda:N or auto", s);
}

namespace {
constexpr size_t kHostAlign = 64;  // one cache line / one AVX-512 vector
}

void* host_alloc(size_t bytes) {
  size_t rounded = (bytes + kHostAlign - 1) / kHostAlign * kHostAlign;
  void* p = std::aligned_alloc(kHostAlign, rounded == 0 ? kHostAlign : rounded);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace dropnet
