// The threads of an emulated block: one fiber (own stack, cooperative switch) per CUDA thread, all
// on the host thread that runs the block. A fiber runs until it reaches a barrier or ends; the
// block's scheduler (emu/runtime.cpp) resumes the waiting fibers once every thread has arrived.
// Under ASan the stack switches are announced (no false stack reports); under TSan every fiber is
// its own TSan thread and switches carry no synchronization, so two threads of a block touching
// the same memory between two barriers is a data-race report (the racecheck).
#pragma once

#include <atomic>
#include <cstddef>

#if defined(__SANITIZE_THREAD__)
#define DN_EMU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DN_EMU_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define DN_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DN_EMU_ASAN 1
#endif
#endif

#ifndef DN_EMU_TSAN
#define DN_EMU_TSAN 0
#endif
#ifndef DN_EMU_ASAN
#define DN_EMU_ASAN 0
#endif

namespace dn_emu {

// Happens-before edges for TSan (no-ops otherwise): release on an address, acquire it later.
void hb_release(void* addr);
void hb_acquire(void* addr);

class Fiber {
 public:
  using Entry = void (*)(void* arg);
  Fiber();
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Prepares the fiber to run entry(arg) from the top of its stack at the next resume().
  void reset(Entry entry, void* arg);
  // From the scheduler: runs the fiber until it suspends or finishes.
  void resume();
  // From inside the fiber: back to the scheduler (resume() returns).
  void suspend();
  bool finished() const { return finished_.load(std::memory_order_relaxed); }
  // The first frames of the fiber's stack (called by the assembly trampoline): arrived() tells the
  // sanitizers, start() runs the entry and never returns.
  static void arrived(Fiber* self);
  static void start(Fiber* self);

 private:
  void switch_out(bool dying);

  char* stack_ = nullptr;   // lowest address of the mapping (a guard page)
  size_t mapped_ = 0;       // bytes mapped, guard included
  void* sp_ = nullptr;      // the fiber's saved stack pointer
  void* sched_sp_ = nullptr;
  // Written by the scheduler, read by the fiber (and back): relaxed atomics, so that TSan, which
  // sees the two as different threads, neither reports them nor infers an ordering from them.
  std::atomic<Entry> entry_{nullptr};
  std::atomic<void*> arg_{nullptr};
  std::atomic<bool> finished_{true};
  void* tsan_fiber_ = nullptr;
  std::atomic<void*> tsan_sched_{nullptr};
  void* asan_fake_ = nullptr;
  const void* sched_bottom_ = nullptr;
  size_t sched_size_ = 0;
};

}  // namespace dn_emu
