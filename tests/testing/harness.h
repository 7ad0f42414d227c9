// The helpers every test uses: tolerance comparisons that print the worst element, random and
// device tensors, CUDA presence (tests labelled `cuda` skip without a device), the message of an
// expected input error, the emulated-device and sanitizer switches that shrink tests, and the
// HostStaging round trip. The rest of tests/testing/ is per topic (gradcheck.h: finite-difference
// gradient checks of layers; nets.h, solvers.h, configs.h, ...).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace dropnet::testing {

// |a - b| <= atol + rtol * |ref| for every element; the failure message names the worst one.
::testing::AssertionResult all_close(const std::vector<float>& ref, const std::vector<float>& got,
                                     float atol, float rtol);
::testing::AssertionResult all_close(const Tensor& ref, const Tensor& got, float atol, float rtol);

std::vector<float> random_vector(int64_t n, uint64_t seed, float lo = -1.f, float hi = 1.f);
Tensor random_tensor(const Shape& s, uint64_t seed, float lo = -1.f, float hi = 1.f,
                     Device d = Device::cpu());

bool cuda_present();

// A 1-D tensor holding `v` on `dev` (CUDA by default: the cuda_* tests' inputs).
Tensor on_device(const std::vector<float>& v, Device dev = Device::cuda());
// A 1-D tensor of n NaNs on `dev`: an output buffer whose every element a kernel must overwrite.
Tensor nan_tensor(int64_t n, Device dev = Device::cuda());

// The message of the Input error `f` throws; fails the test if it throws nothing or another kind.
template <typename F>
std::string input_error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Input) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error thrown";
  return "";
}

// True in the emulated-device build (DROPNET_CUDA=EMU), where a CUDA kernel runs on one host
// thread: tests keep every shape's indexing (odd sizes, tile edges, grid-stride tails) but shrink
// what only costs time there (batch sizes, element counts in the millions, long trainings).
constexpr bool cuda_emulated() { return DROPNET_CUDA_EMU != 0; }
// `full` on a GPU, `emulated` on the emulated device.
template <typename T>
constexpr T on_gpu_or_emulated(T full, T emulated) {
  return cuda_emulated() ? emulated : full;
}

// True in a sanitizer build (ASan + UBSan, or TSan: GCC's and Clang's own macros). There an emulated
// CUDA thread costs another 3x (ASan) to 30x (TSan, every thread its own TSan thread): the
// emulated tests keep each shape class's indexing on a still smaller image or batch.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized() { return true; }
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool sanitized() { return true; }
#else
constexpr bool sanitized() { return false; }
#endif
#else
constexpr bool sanitized() { return false; }
#endif
// `full` on a GPU, `emulated` on the emulated device, `sanitized` on the emulated device under a
// sanitizer.
template <typename T>
constexpr T on_gpu_or_emulated(T full, T emulated, T sanitized_emulated) {
  return cuda_emulated() ? (sanitized() ? sanitized_emulated : emulated) : full;
}

// HostStaging (the data layer's batch staging) to `target`: four fills, one regrow, every copied
// batch intact although each refill reuses the buffer (the fence must hold).
void host_staging_round_trip(Device target);

}  // namespace dropnet::testing

// First statement of every `cuda`-labelled test.
#define DN_REQUIRE_CUDA()                                             \
  do {                                                                \
    if (!::dropnet::testing::cuda_present()) GTEST_SKIP() << "no CUDA device present"; \
  } while (0)
