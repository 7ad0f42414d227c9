// Fibers for the emulated threads of a block (fiber.h): an x86-64 stack switch (the callee-saved
// registers; the MXCSR and x87 control words are shared, as nothing here changes rounding modes),
// stacks from mmap with a guard page.
#include "emu/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if !defined(__x86_64__)
#error "the emulated CUDA device's fibers switch stacks in x86-64 assembly"
#endif

extern "C" {
#if DN_EMU_ASAN
void __asan_unpoison_memory_region(void const volatile* addr, size_t size);
#endif
#if DN_EMU_TSAN
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
#endif
#if DN_EMU_ASAN
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, size_t* size_old);
#endif
// Saves the callee-saved registers on the current stack, stores the stack pointer in *save and
// continues on the stack `next` (saved the same way, or prepared by Fiber::reset).
void dn_emu_switch(void** save, void* next);
void dn_emu_fiber_trampoline();
}

asm(R"(
  .text
  .globl dn_emu_switch
  .type dn_emu_switch, @function
dn_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size dn_emu_switch, .-dn_emu_switch

  .globl dn_emu_fiber_trampoline
  .type dn_emu_fiber_trampoline, @function
dn_emu_fiber_trampoline:
  movq %r12, %rdi
  call dn_emu_fiber_start
  ud2
  .size dn_emu_fiber_trampoline, .-dn_emu_fiber_trampoline
)");

namespace dn_emu {

namespace {
#if DN_EMU_ASAN || DN_EMU_TSAN
constexpr size_t kStackBytes = size_t(512) << 10;  // sanitizers grow frames
#else
constexpr size_t kStackBytes = size_t(128) << 10;
#endif
}  // namespace

void hb_release(void* addr) {
#if DN_EMU_TSAN
  __tsan_release(addr);
#else
  (void)addr;
#endif
}

void hb_acquire(void* addr) {
#if DN_EMU_TSAN
  __tsan_acquire(addr);
#else
  (void)addr;
#endif
}

Fiber::Fiber() {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  mapped_ = kStackBytes + page;
  void* m = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    std::fprintf(stderr, "dropnet emulated CUDA: cannot map a %zu KB fiber stack\n", mapped_ >> 10);
    std::abort();
  }
  stack_ = static_cast<char*>(m);
  mprotect(stack_, page, PROT_NONE);  // overflow faults instead of corrupting a neighbour
#if DN_EMU_TSAN
  tsan_fiber_ = __tsan_create_fiber(0);
#endif
}

Fiber::~Fiber() {
#if DN_EMU_TSAN
  if (tsan_fiber_ != nullptr) __tsan_destroy_fiber(tsan_fiber_);
#endif
  munmap(stack_, mapped_);
}

// Not instrumented for TSan: the initial frame is written here by the scheduler and then used by
// the fiber's own code, which TSan sees as another thread.
__attribute__((no_sanitize_thread)) void Fiber::reset(Entry entry, void* arg) {
#if DN_EMU_ASAN
  // A fiber abandoned mid-kernel (its block faulted) left its frames' redzones poisoned.
  if (!finished()) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    __asan_unpoison_memory_region(stack_ + page, mapped_ - page);
  }
#endif
  entry_.store(entry, std::memory_order_relaxed);
  arg_.store(arg, std::memory_order_relaxed);
  finished_.store(false, std::memory_order_relaxed);
  // The initial frame that dn_emu_switch pops: a padding slot, r15, r14, r13, r12 (= this, for
  // the trampoline), rbx, rbp, return address (the trampoline). The trampoline is entered with a
  // 16-byte aligned stack pointer, so its call leaves the callee aligned as the ABI wants.
  auto top = reinterpret_cast<uintptr_t>(stack_ + mapped_) & ~uintptr_t(15);
  auto* slot = reinterpret_cast<uint64_t*>(top);
  slot[-1] = reinterpret_cast<uint64_t>(&dn_emu_fiber_trampoline);  // at top - 8
  slot[-2] = 0;                                                      // rbp
  slot[-3] = 0;                                                      // rbx
  slot[-4] = reinterpret_cast<uint64_t>(this);                       // r12
  slot[-5] = 0;                                                      // r13
  slot[-6] = 0;                                                      // r14
  slot[-7] = 0;                                                      // r15
  slot[-8] = 0;
  sp_ = &slot[-8];
}

void Fiber::resume() {
  void* const target = sp_;  // read as the scheduler (TSan attributes what follows to the fiber)
#if DN_EMU_TSAN
  tsan_sched_.store(__tsan_get_current_fiber(), std::memory_order_relaxed);
  __tsan_switch_to_fiber(tsan_fiber_, 1 /* __tsan_switch_to_fiber_no_sync */);
#endif
#if DN_EMU_ASAN
  void* fake = nullptr;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  __sanitizer_start_switch_fiber(&fake, stack_ + page, mapped_ - page);
#endif
  dn_emu_switch(&sched_sp_, target);
#if DN_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

void Fiber::switch_out(bool dying) {
#if DN_EMU_TSAN
  __tsan_switch_to_fiber(tsan_sched_.load(std::memory_order_relaxed), 1);
#endif
#if DN_EMU_ASAN
  __sanitizer_start_switch_fiber(dying ? nullptr : &asan_fake_, sched_bottom_, sched_size_);
#endif
  (void)dying;
  dn_emu_switch(&sp_, sched_sp_);
  // Resumed (never after dying).
#if DN_EMU_ASAN
  __sanitizer_finish_switch_fiber(asan_fake_, &sched_bottom_, &sched_size_);
#endif
}

void Fiber::suspend() { switch_out(false); }

void Fiber::arrived(Fiber* self) {
#if DN_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &self->sched_bottom_, &self->sched_size_);
#else
  (void)self;
#endif
}

void Fiber::start(Fiber* self) {
  // The entry catches everything: nothing unwinds past this frame.
  self->entry_.load(std::memory_order_relaxed)(self->arg_.load(std::memory_order_relaxed));
  self->finished_.store(true, std::memory_order_relaxed);
  self->switch_out(true);
  std::abort();  // a finished fiber is never resumed
}

}  // namespace dn_emu

extern "C" void dn_emu_fiber_start(dn_emu::Fiber* self);
// ASan is told about the new stack before anything else runs on it (start never returns, so the
// compiler puts an __asan_handle_no_return, which unpoisons "the current stack", before the call).
extern "C" void dn_emu_fiber_start(dn_emu::Fiber* self) {
  dn_emu::Fiber::arrived(self);
  dn_emu::Fiber::start(self);
}
