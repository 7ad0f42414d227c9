// Devices and raw memory. CUDA memory goes through a caching allocator (device_cuda.cu); in a
// build without CUDA every CUDA entry point throws an error that says so.
#pragma once

#include <cstddef>
#include <cstdint>
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
// The upload stream of the current CUDA device: HostStaging's host-to-device copies run on it,
// beside the compute stream, fenced by events.
Stream cuda_copy_stream();
// Blocks the host until `s` has run everything queued on it (counted by cuda_host_syncs).
void cuda_stream_wait_host(Stream s);
// Counters of this process, for tests and benchmarks: the times the host blocked on the GPU
// (stream, event or device synchronize, and copies to host memory, which wait for their stream),
// and the uploads queued on a copy stream (HostStaging::copy_to). Both 0 without CUDA.
uint64_t cuda_host_syncs();
uint64_t cuda_copy_stream_uploads();
// Names what the calling thread is running (a layer), for the errors of kernel launches
// (core/launch.cuh); returns the previous name. The pointer must outlive its use.
const char* set_launch_context(const char* what);
// Bytes held by the CUDA caching allocator (in use, cached), all devices.
size_t cuda_bytes_in_use();
size_t cuda_bytes_cached();

// Host staging for host-to-device copies (the data layer's batches). For a CUDA target there are
// two slots, each a page-locked host buffer (cudaHostAlloc) and a device buffer. copy_to queues
// the upload (page-locked -> device slot) on the copy stream and records an event; the compute
// stream waits on that event and copies the slot into the destination. So the upload of the next
// batch runs while the compute stream still works on the previous one (whose kernels read the
// destination, never the slot), and nothing blocks the host: acquire() hands out a slot whose
// previous upload has completed (it asks the event, and waits only if it has not fired), and the
// copy stream waits on the compute stream's event before overwriting a slot's device buffer.
// For a CPU target: one plain buffer, no fence.
class HostStaging {
 public:
  HostStaging() = default;
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;
  ~HostStaging();

  // A buffer of at least n floats that no queued copy still reads.
  float* acquire(size_t n, Device target);
  // Queues the copy of the acquired buffer's first n floats to dst (on the target device): it
  // reaches dst in the compute stream's order.
  void copy_to(float* dst, size_t n);

 private:
  struct Slot {
    float* host = nullptr;    // page-locked (CUDA) or plain (CPU)
    float* device = nullptr;  // CUDA: the upload's landing buffer
    void* uploaded = nullptr;  // cudaEvent_t: the upload from host has completed (copy stream)
    void* consumed = nullptr;  // cudaEvent_t: the copy out of `device` has completed (compute stream)
    bool upload_pending = false, consume_recorded = false;
  };
  void release();
  Slot slots_[2];
  int current_ = 0;  // the slot acquire() handed out
  size_t capacity_ = 0;
  Device target_;
};

}  // namespace dropnet
