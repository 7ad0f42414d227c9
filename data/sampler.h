// IndexedSource: a BatchSource over a Dataset. Per epoch the first `limit` samples are permuted
// (Fisher-Yates from HostRng(seed, epoch stream); identity without shuffle), the same on every
// rank; rank r of W owns permutation positions p with p % W == r. Batches run across the epoch
// end into the next (reshuffled) epoch. The position (epoch, cursor) is the whole state: crop
// offsets and mirror flips are a pure function of (seed, epoch, position), so restore() resumes
// exactly.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/batch_source.h"
#include "data/dataset.h"
#include "data/transform.h"

namespace dropnet::data {

struct SamplerOptions {
  int64_t batch_size = 1;
  bool shuffle = false;
  uint64_t seed = 0;
  int rank = 0, world = 1;
  int64_t limit = 0;  // 0 = all samples
};

class IndexedSource : public BatchSource {
 public:
  IndexedSource(std::shared_ptr<const Dataset> ds, TransformSpec transform, SamplerOptions opt);

  Shape sample_shape() const override { return sample_shape_; }
  int64_t batch_size() const override { return opt_.batch_size; }
  int64_t num_samples() const override { return shard_size_; }
  int num_classes() const override { return ds_->num_classes(); }
  void next_batch(float* data, float* labels) override;
  std::vector<int64_t> state() const override { return {epoch_, cursor_}; }
  void restore(const std::vector<int64_t>& state) override;

  int64_t total_samples() const { return total_; }  // before sharding (after limit)
  const Dataset& dataset() const { return *ds_; }
  // Index into the dataset of shard position `cursor` in `epoch` (tests, debugging).
  int64_t sample_index(int64_t epoch, int64_t cursor) const;

 private:
  void build_permutation(int64_t epoch, std::vector<int64_t>* perm) const;
  void load_one(int64_t index, int64_t epoch, int64_t pos, float* out, float* label,
                std::vector<uint8_t>& scratch) const;

  std::shared_ptr<const Dataset> ds_;
  TransformSpec t_;
  SamplerOptions opt_;
  int64_t total_ = 0, shard_size_ = 0;
  Shape sample_shape_;  // (C, H, W)
  int64_t epoch_ = 0, cursor_ = 0;
  int64_t perm_epoch_ = -1;
  std::vector<int64_t> perm_;  // permutation of [0, total_) for perm_epoch_ (empty: identity)
  std::vector<std::vector<uint8_t>> scratch_;  // one per thread
};

}  // namespace dropnet::data
