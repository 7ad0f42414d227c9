// Internal to core: the memory entry points behind device.h's device_* functions and HostStaging
// (core/device_host.cpp). Not for the other modules, which go through device.h.
#pragma once

#include <cstddef>

namespace dropnet {

// core/device.cpp: 64-byte aligned host memory (std::free releases it); throws std::bad_alloc.
void* host_alloc(size_t bytes);

#if DROPNET_HAVE_CUDA
// core/device_cuda.cu: each takes the CUDA device the memory lives on (-1: host memory) and
// leaves the calling thread's current device as it was.
void* cuda_alloc(int device, size_t bytes);
void cuda_free(void* p, size_t bytes);
void cuda_zero(int device, void* p, size_t bytes);
void cuda_fill(int device, float* p, size_t n, float v);
void cuda_copy(void* dst, int dst_dev, const void* src, int src_dev, size_t bytes);
void cuda_sync(int device);
void* cuda_pinned_alloc(size_t bytes);
void cuda_pinned_free(void* p);
void* cuda_event_create(int device);
void cuda_event_destroy(void* e);
void cuda_event_record(int device, void* e);
void cuda_event_wait_host(void* e);  // returns at once when the event has fired (not counted)
// HostStaging's pipeline: on the copy stream, wait for `consumed` (may be null), copy `bytes` from
// page-locked `host` to `device_buf`, record `uploaded`; then on the compute stream, wait for
// `uploaded`, copy `device_buf` to `dst`, record `consumed`.
void cuda_staged_upload(int device, float* dst, float* device_buf, const float* host, size_t bytes, void* uploaded,
                        void* consumed, bool wait_consumed);
#endif

}  // namespace dropnet
