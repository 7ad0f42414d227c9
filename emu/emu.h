// What the emulated vendor libraries (emu/cublas.cpp, emu/cudnn.cpp, emu/nccl.cpp) and the
// emulator's own tests use of the emulated runtime (emu/runtime.cpp). Not for dropnet's code:
// dropnet sees only the CUDA API (emu/include/*.h).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace dn_emu {

// An error inside queued work (a kernel, a copy, a library call): the op stops, and the stream's
// device records `code` with the message as its sticky error, returned by the next call that
// waits on that work (as a GPU fault surfaces at the next synchronization).
struct Fault : std::runtime_error {
  cudaError_t code;
  Fault(cudaError_t c, const std::string& what) : std::runtime_error(what), code(c) {}
};

// Where a pointer lives.
struct Range {
  int device = -1;          // owning emulated device; -1 for pinned host memory
  bool pinned = false;      // page-locked host memory (cudaHostAlloc)
  const char* base = nullptr;
  size_t size = 0;          // bytes of the allocation
};
// The allocation that holds all of [p, p + bytes), if any.
bool find_range(const void* p, size_t bytes, Range* out);
// Throws Fault(cudaErrorIllegalAddress) unless [p, p + bytes) lies in memory that `device` can
// address (its own allocations or pinned host memory). `what` names the access in the message.
void check_device_access(int device, const void* p, size_t bytes, const std::string& what);

int current_device();
int device_count();
// The device a stream belongs to (nullptr: the current device's default stream).
int stream_device(cudaStream_t s);

// Queues fn on s, in order with the work queued before it. Returns the error of an invalid
// stream (as the CUDA call would), else cudaSuccess. A Fault thrown by fn becomes sticky.
cudaError_t enqueue(cudaStream_t s, const char* what, std::function<void()> fn);
// Runs everything queued on s (as cudaStreamSynchronize does), returning the sticky error.
cudaError_t drain(cudaStream_t s);

// Records e (with the message appended to its CUDA text) as the calling thread's last error and
// returns it; for the vendor emulations' argument errors.
cudaError_t set_error(cudaError_t e, const std::string& detail);

// A warp-collective operation of the calling fiber (emu/mma.cpp): every lane of its warp deposits
// `operands`, then each runs fn with the 32 lanes' operands (lanes[l] of lane l). `what` names the
// op; all 32 lanes must be live and at the same op, else the kernel faults.
void warp_collective(const char* what, const void* operands, void (*fn)(const void* const* lanes, void* ctx),
                     void* ctx);

// Kernels launched so far (names as written at the launch site, template arguments stripped),
// with how often; the coverage test reads these.
std::vector<std::pair<std::string, long>> launched_kernels();
// At exit the runtime appends them, one "file:kernel count" line each, to the file named by
// DROPNET_EMU_LAUNCH_LOG (if set).
}  // namespace dn_emu
