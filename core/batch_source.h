// The interface between the data pipeline (data/) and the `data` layer. data/ implements it;
// layers/ only sees this header. It lives in core/, below both, so the readers know nothing of
// the graph (core <- kernels <- layers <- data).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/phase.h"
#include "core/tensor.h"

namespace dropnet {

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Shape of one sample, e.g. (1, 28, 28).
  virtual Shape sample_shape() const = 0;
  virtual int64_t batch_size() const = 0;
  virtual int64_t num_samples() const = 0;  // size of this rank's shard
  virtual int num_classes() const { return 0; }
  // Fills data (batch, C, H, W) and labels (batch) on the host. Wraps around at epoch end.
  virtual void next_batch(float* data, float* labels) = 0;
  // Position for snapshots / resume: opaque integers restored by seek().
  virtual std::vector<int64_t> state() const = 0;
  virtual void restore(const std::vector<int64_t>& state) = 0;
  // Seconds the consumer spent waiting inside next_batch (prefetching sources).
  virtual double wait_seconds() const { return 0.0; }
};

// Builds a source from the config's data section for a phase (`data.train` / `data.test`).
// Registered by data/ (or tests); the Net calls it for each `data` layer.
struct SourceRequest {
  ConfigNode section;  // data.train or data.test
  Phase phase;
  uint64_t seed = 0;
  int rank = 0, world = 1;  // shard
  // Shapes, not data (summaries, dry runs): the section's keys are checked as always, but nothing
  // is read beyond what tells the sample shape; the source gives no batches.
  bool shapes_only = false;
};
using SourceFactory = std::unique_ptr<BatchSource> (*)(SourceRequest& req);

}  // namespace dropnet
