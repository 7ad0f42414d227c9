// PrefetchSource: runs an inner BatchSource on a background thread that keeps up to `depth`
// ready batches in a bounded queue. state() is the position of the next batch the consumer will
// receive (the inner source runs ahead), so snapshots taken mid-run resume exactly; restore()
// stops the thread, drops queued batches and repositions the inner source. An error raised by the
// inner source is rethrown by the consumer's next_batch() call that would have received that batch.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/batch_source.h"

namespace dropnet::data {

class PrefetchSource : public BatchSource {
 public:
  PrefetchSource(std::unique_ptr<BatchSource> inner, int depth);
  ~PrefetchSource() override;

  Shape sample_shape() const override { return inner_->sample_shape(); }
  int64_t batch_size() const override { return inner_->batch_size(); }
  int64_t num_samples() const override { return inner_->num_samples(); }
  int num_classes() const override { return inner_->num_classes(); }
  void next_batch(float* data, float* labels) override;
  std::vector<int64_t> state() const override { return consumer_state_; }
  void restore(const std::vector<int64_t>& state) override;
  double wait_seconds() const override { return wait_seconds_; }

  int depth() const { return depth_; }
  BatchSource& inner() { return *inner_; }

 private:
  struct Slot {
    std::vector<float> data, labels;
    std::vector<int64_t> state_after;  // inner state once this batch was produced
  };
  void start();
  void stop();
  void produce_loop();

  std::unique_ptr<BatchSource> inner_;
  int depth_;
  std::vector<int64_t> consumer_state_;
  double wait_seconds_ = 0.0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Slot>> ready_;  // produced, not yet consumed (FIFO)
  std::vector<std::unique_ptr<Slot>> free_;  // recycled buffers
  std::exception_ptr error_;                 // from the producer; the queue ends there
  bool stopping_ = false;
  bool running_ = false;
  std::thread thread_;
};

}  // namespace dropnet::data
