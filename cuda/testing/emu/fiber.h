// Fibers for the execution model: each emulated CUDA thread is a ucontext with its own mmap'd stack (a guard
// page below it turns an overflow into SIGSEGV instead of silent corruption), switched cooperatively by its
// block's scheduler. ThreadSanitizer and AddressSanitizer are told about every switch, so the race checker
// sees each CUDA thread as a thread of its own. Test-only.
#pragma once

#include <pthread.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if defined(__SANITIZE_THREAD__)
#define FASTLSTM_EMU_TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define FASTLSTM_EMU_ASAN 1
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) && !defined(FASTLSTM_EMU_TSAN)
#define FASTLSTM_EMU_TSAN 1
#endif
#if __has_feature(address_sanitizer) && !defined(FASTLSTM_EMU_ASAN)
#define FASTLSTM_EMU_ASAN 1
#endif
#endif

#if defined(FASTLSTM_EMU_TSAN)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(FASTLSTM_EMU_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif

namespace fastlstm::emu::detail {

#if defined(FASTLSTM_EMU_TSAN)
inline constexpr bool kTsan = true;
#else
inline constexpr bool kTsan = false;
#endif
#if defined(FASTLSTM_EMU_ASAN)
inline constexpr bool kAsan = true;
#else
inline constexpr bool kAsan = false;
#endif

[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "fastlstm emu: %s\n", what);
  std::abort();
}

// Stack bytes per emulated thread: FASTLSTM_EMU_STACK_KB, else 64 KiB (256 KiB under a sanitizer, whose
// instrumented frames are several times larger). Kernels keep little on the stack, but a deep call chain or a
// large local array needs more: the guard page reports an overflow as SIGSEGV at the fiber's stack bottom.
inline std::size_t fiber_stack_bytes() {
  static const std::size_t bytes = [] {
    const char* env = std::getenv("FASTLSTM_EMU_STACK_KB");
    const long kb = env != nullptr ? std::atol(env) : ((kTsan || kAsan) ? 256 : 64);
    return static_cast<std::size_t>(kb < 16 ? 16 : kb) * 1024;
  }();
  return bytes;
}

// A switchable execution context: a block thread's own (its scheduler) or an emulated CUDA thread's fiber.
struct Context {
  ucontext_t uc{};
  void* map = nullptr;  // the fiber's mapping: guard page, then the stack
  std::size_t map_bytes = 0;
  const void* stack_bottom = nullptr;  // usable stack (AddressSanitizer needs the bounds of the target)
  std::size_t stack_size = 0;
  void* tsan = nullptr;  // ThreadSanitizer's fiber handle
  void* asan_fake = nullptr;
  bool owns_tsan = false;

  Context() = default;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context() { release(); }

  // Wraps the calling OS thread (the block's scheduler).
  void adopt_current_thread() {
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      void* addr = nullptr;
      std::size_t size = 0;
      pthread_attr_getstack(&attr, &addr, &size);
      stack_bottom = addr;
      stack_size = size;
      pthread_attr_destroy(&attr);
    }
#if defined(FASTLSTM_EMU_TSAN)
    tsan = __tsan_get_current_fiber();
#endif
  }

  // A fiber that starts in entry(lo, hi) with (hi << 32 | lo) the address of its argument (makecontext passes
  // ints only).
  void make_fiber(void (*entry)(unsigned, unsigned), void* arg, const char* name) {
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    map_bytes = fiber_stack_bytes() + page;
    map = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1,
               0);
    if (map == MAP_FAILED) die("mmap of a fiber stack failed (lower FASTLSTM_EMU_STACK_KB or the block size)");
    if (mprotect(map, page, PROT_NONE) != 0) die("mprotect of a fiber guard page failed");
    stack_bottom = static_cast<char*>(map) + page;
    stack_size = map_bytes - page;
    if (getcontext(&uc) != 0) die("getcontext failed");
    uc.uc_stack.ss_sp = const_cast<void*>(stack_bottom);
    uc.uc_stack.ss_size = stack_size;
    uc.uc_link = nullptr;  // a fiber never returns: it switches away for the last time
    const auto bits = reinterpret_cast<std::uintptr_t>(arg);
    makecontext(&uc, reinterpret_cast<void (*)()>(entry), 2, static_cast<unsigned>(bits & 0xffffffffu),
                static_cast<unsigned>(bits >> 32));
#if defined(FASTLSTM_EMU_TSAN)
    tsan = __tsan_create_fiber(0);
    __tsan_set_fiber_name(tsan, name);
    owns_tsan = true;
#else
    (void)name;
#endif
  }

  // Frees a fiber's stack; must not be called on the running fiber.
  void release() {
#if defined(FASTLSTM_EMU_TSAN)
    if (owns_tsan) __tsan_destroy_fiber(tsan);
#endif
    owns_tsan = false;
    if (map != nullptr) munmap(map, map_bytes);
    map = nullptr;
  }
};

// Suspends `from` (the running context) and resumes `to`. sync: ThreadSanitizer takes the switch as a
// happens-before edge; the model passes it only for a fiber's first entry (it must see the launch's
// arguments). Every other switch is unsynchronised, so the only orderings TSan sees between CUDA threads are
// the ones CUDA defines (barriers, shuffles' sync, atomics), and a missing barrier is a reported race.
// last: `from` never runs again (AddressSanitizer frees its fake stack).
inline void switch_context(Context& from, Context& to, bool sync, bool last = false) {
#if defined(FASTLSTM_EMU_TSAN)
  __tsan_switch_to_fiber(to.tsan, sync ? 0u : static_cast<unsigned>(__tsan_switch_to_fiber_no_sync));
#else
  (void)sync;
#endif
#if defined(FASTLSTM_EMU_ASAN)
  __sanitizer_start_switch_fiber(last ? nullptr : &from.asan_fake, to.stack_bottom, to.stack_size);
#else
  (void)last;
#endif
  if (swapcontext(&from.uc, &to.uc) != 0) die("swapcontext failed");
#if defined(FASTLSTM_EMU_ASAN)
  __sanitizer_finish_switch_fiber(from.asan_fake, nullptr, nullptr);
#endif
}

// After a failed launch: the block's scheduler takes over everything an abandoned fiber did (it never exits,
// so it never publishes its work), so that freeing the launch's memory is not reported as a race. TSan's
// switch with sync is a happens-before edge each way; no stack is switched.
inline void absorb_fiber(Context& self, Context& fiber) {
#if defined(FASTLSTM_EMU_TSAN)
  if (fiber.owns_tsan) {
    __tsan_switch_to_fiber(fiber.tsan, 0);
    __tsan_switch_to_fiber(self.tsan, 0);
  }
#else
  (void)self;
  (void)fiber;
#endif
}

// The first thing a fiber runs (AddressSanitizer: completes the switch that started it).
inline void fiber_started() {
#if defined(FASTLSTM_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
}

}  // namespace fastlstm::emu::detail
