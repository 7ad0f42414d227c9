#include "tests/testing/harness.h"

#include <cmath>
#include <limits>

#include "core/rng.h"

namespace dropnet::testing {

::testing::AssertionResult all_close(const std::vector<float>& ref, const std::vector<float>& got,
                                     float atol, float rtol) {
  if (ref.size() != got.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != reference size " << ref.size();
  size_t worst = 0, bad = 0;
  double worst_excess = -1.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double diff = std::fabs(static_cast<double>(ref[i]) - got[i]);
    double tol = atol + rtol * std::fabs(static_cast<double>(ref[i]));
    double excess = std::isnan(diff) ? 1e30 : diff - tol;
    if (excess > 0) ++bad;
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << ref.size() << " elements out of tolerance (atol "
                                       << atol << ", rtol " << rtol << "); worst at [" << worst
                                       << "]: ref " << ref[worst] << " got " << got[worst];
}

::testing::AssertionResult all_close(const Tensor& ref, const Tensor& got, float atol, float rtol) {
  if (ref.shape() != got.shape())
    return ::testing::AssertionFailure() << "shape " << got.shape().str() << " != " << ref.shape().str();
  return all_close(ref.to_host(), got.to_host(), atol, rtol);
}

std::vector<float> random_vector(int64_t n, uint64_t seed, float lo, float hi) {
  HostRng rng(seed, 7);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

Tensor random_tensor(const Shape& s, uint64_t seed, float lo, float hi, Device d) {
  Tensor t(s, d);
  t.from_host(random_vector(s.count(), seed, lo, hi));
  return t;
}

bool cuda_present() { return cuda_device_count() > 0; }

Tensor on_device(const std::vector<float>& v, Device dev) {
  Tensor t(Shape{static_cast<int64_t>(v.size())}, dev);
  t.from_host(v);
  return t;
}

Tensor nan_tensor(int64_t n, Device dev) {
  Tensor t(Shape{n}, dev);
  t.fill(std::numeric_limits<float>::quiet_NaN());
  return t;
}

void host_staging_round_trip(Device target) {
  HostStaging staging;
  std::vector<Tensor> dst;
  for (int round = 0; round < 4; ++round) {
    const size_t n = round < 2 ? 1000 : 3000;  // grows once: reallocated
    float* h = staging.acquire(n, target);
    for (size_t i = 0; i < n; ++i) h[i] = static_cast<float>(round * 10000 + static_cast<int>(i));
    dst.emplace_back(Shape({static_cast<int64_t>(n)}), target);
    staging.copy_to(dst.back().data(), n);
  }
  for (int round = 0; round < 4; ++round) {
    const std::vector<float> got = dst[static_cast<size_t>(round)].to_host();
    std::vector<float> want(got.size());
    for (size_t i = 0; i < want.size(); ++i) want[i] = static_cast<float>(round * 10000 + static_cast<int>(i));
    EXPECT_TRUE(all_close(want, got, 0.f, 0.f)) << "batch " << round;
  }
}

}  // namespace dropnet::testing
