#include "data/prefetch.h"

#include <chrono>
#include <cstring>

#include "core/error.h"

namespace dropnet::data {

PrefetchSource::PrefetchSource(std::unique_ptr<BatchSource> inner, int depth)
    : inner_(std::move(inner)), depth_(depth) {
  DN_CHECK(inner_ != nullptr && depth_ > 0, "prefetch depth {}", depth_);
  consumer_state_ = inner_->state();
  const size_t n = static_cast<size_t>(inner_->batch_size() * inner_->sample_shape().count());
  for (int i = 0; i < depth_ + 1; ++i) {
    auto s = std::make_unique<Slot>();
    s->data.resize(n);
    s->labels.resize(static_cast<size_t>(inner_->batch_size()));
    free_.push_back(std::move(s));
  }
}

PrefetchSource::~PrefetchSource() { stop(); }

void PrefetchSource::start() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = false;
  running_ = true;
  thread_ = std::thread([this] { produce_loop(); });
}

void PrefetchSource::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!running_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  running_ = false;
  while (!ready_.empty()) {
    free_.push_back(std::move(ready_.front()));
    ready_.pop_front();
  }
  error_ = nullptr;
}

void PrefetchSource::produce_loop() {
  while (true) {
    std::unique_ptr<Slot> slot;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || (static_cast<int>(ready_.size()) < depth_ && !free_.empty()); });
      if (stopping_) return;
      slot = std::move(free_.back());
      free_.pop_back();
    }
    std::exception_ptr err;
    try {
      inner_->next_batch(slot->data.data(), slot->labels.data());
      slot->state_after = inner_->state();
    } catch (...) {
      err = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (err) {
        error_ = err;
        free_.push_back(std::move(slot));
      } else {
        ready_.push_back(std::move(slot));
      }
    }
    cv_.notify_all();
    if (err) return;  // the consumer rethrows once the batches before the failure are used up
  }
}

void PrefetchSource::next_batch(float* data, float* labels) {
  if (!running_) start();
  std::unique_ptr<Slot> slot;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (ready_.empty() && !error_) {
      auto t0 = std::chrono::steady_clock::now();
      cv_.wait(lock, [&] { return !ready_.empty() || error_; });
      wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    if (ready_.empty()) {
      std::exception_ptr e = error_;
      lock.unlock();
      // Leave the source restartable: a later restore() or next_batch() begins afresh from the
      // consumer's position.
      stop();
      inner_->restore(consumer_state_);
      std::rethrow_exception(e);
    }
    slot = std::move(ready_.front());
    ready_.pop_front();
  }
  std::memcpy(data, slot->data.data(), slot->data.size() * sizeof(float));
  std::memcpy(labels, slot->labels.data(), slot->labels.size() * sizeof(float));
  consumer_state_ = slot->state_after;
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(slot));
  }
  cv_.notify_all();
}

void PrefetchSource::restore(const std::vector<int64_t>& state) {
  stop();
  inner_->restore(state);
  consumer_state_ = inner_->state();
}

}  // namespace dropnet::data
