// Devices and raw memory. CUDA memory goes through a caching allocator (device_cuda.cu); in a
// build without CUDA every CUDA entry point throws an error that says so.
#pragma once

#include <cstddef>
#include <string>

struct CUstream_st;

namespace dropnet {

using Stream = CUstream_st*;  // cudaStream_t without including the CUDA headers

enum class DeviceType { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  static Device cpu() { return {}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool operator==(const Device& o) const { return type == o.type && (is_cpu() || index == o.index); }
  std::string str() const;
};

// Parses "cpu", "cuda", "cuda:1", "auto" (CUDA when a GPU is present). Throws Input errors.
Device parse_device(const std::string& s);

bool cuda_compiled();
int cuda_device_count();  // 0 when not compiled or no driver/GPU
// The calling thread's current CUDA device: where cuda_stream() queues, where kernels run.
// Allocations, fills and copies use the device their memory lives on and leave it unchanged.
void cuda_set_device(int index);
int cuda_current_device();

void* device_alloc(Device d, size_t bytes);
void device_free(Device d, void* p, size_t bytes);
void device_zero(Device d, void* p, size_t bytes);
void device_fill(Device d, float* p, size_t n, float value);
// Copies between any two devices (host<->device, device<->device).
void device_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
void device_synchronize(Device d);
// The compute stream of the current CUDA device (all kernels of a net run on it).
Stream cuda_stream();
// Names what the calling thread is running (a layer), for the errors of kernel launches
// (core/launch.cuh); returns the previous name. The pointer must outlive its use.
const char* set_launch_context(const char* what);
// Bytes held by the CUDA caching allocator (in use, cached), all devices.
size_t cuda_bytes_in_use();
size_t cuda_bytes_cached();

// Host staging for host-to-device copies (the data layer's batches). For a CUDA target the buffer
// is page-locked (cudaHostAlloc), so the copy queued on the compute stream is asynchronous, and an
// event fences it: acquire() waits until the GPU has read the previous contents before handing
// the buffer out again. For a CPU target: plain memory, no fence.
class HostStaging {
 public:
  HostStaging() = default;
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;
  ~HostStaging();

  // A buffer of at least n floats that no queued copy still reads.
  float* acquire(size_t n, Device target);
  // Queues the copy of the buffer's first n floats to dst (on the target device) and fences it.
  void copy_to(float* dst, size_t n);

 private:
  void release();
  float* data_ = nullptr;
  size_t capacity_ = 0;
  Device target_;
  void* event_ = nullptr;  // cudaEvent_t of the last queued copy
  bool pending_ = false;
};

}  // namespace dropnet
