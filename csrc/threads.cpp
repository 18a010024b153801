// A minimal fork-join pool tuned for many short phases: workers spin for a while on a generation
// counter before sleeping on it (C++20 atomic wait), so a sequence of calls does not pay a wake-up each.
#include "threads.h"

#include "engine.h"

#include <immintrin.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace fastlstm::cpu {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

class Pool {
 public:
  static Pool& instance() {
    static Pool* pool = new Pool();  // never destroyed: workers may outlive static destruction order
    return *pool;
  }

  std::mutex call_mutex;  // held by the TeamLease that owns the pool

  void ensure_workers(int n) {  // caller holds call_mutex
    while (static_cast<int>(workers_.size()) < n) {
      const int tid = static_cast<int>(workers_.size()) + 1;
      // The generation it has seen is fixed here, not when the thread gets going: the call that
      // follows bumps it, possibly before the new thread first looks.
      const unsigned seen = generation_.load(std::memory_order_acquire);
      workers_.emplace_back([this, tid, seen] { loop(tid, seen); });
      workers_.back().detach();
    }
  }

  void run(int n, TeamFn fn, void* ctx) {  // caller holds call_mutex
    fn_ = fn;
    ctx_ = ctx;
    team_ = n;
    pending_.store(n - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    fn(ctx, 0, n);
    for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
      if (spins < 20000) cpu_relax(); else std::this_thread::yield();
    }
  }

 private:
  void loop(int tid, unsigned seen) {
    for (;;) {
      unsigned g;
      auto idle_since = std::chrono::steady_clock::now();
      for (int spins = 0;; ++spins) {
        g = generation_.load(std::memory_order_acquire);
        if (g != seen) break;
        if ((spins & 1023) == 1023 &&
            std::chrono::steady_clock::now() - idle_since > std::chrono::microseconds(200)) {
          generation_.wait(seen, std::memory_order_acquire);
        } else {
          cpu_relax();
        }
      }
      seen = g;
      if (tid < team_) {
        fn_(ctx_, tid, team_);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }

  std::vector<std::thread> workers_;
  TeamFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int team_ = 1;
  alignas(64) std::atomic<unsigned> generation_{0};
  alignas(64) std::atomic<int> pending_{0};
};

}  // namespace

int hardware_threads() {
  static const int n = [] {
    const unsigned h = std::thread::hardware_concurrency();
    return h == 0 ? 1 : static_cast<int>(h);
  }();
  return n;
}

void Barrier::wait() {
  if (n_ <= 1) return;
  const unsigned gen = generation_.load(std::memory_order_acquire);
  if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
    count_.store(0, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    return;
  }
  for (int spins = 0; generation_.load(std::memory_order_acquire) == gen; ++spins) {
    if (spins < 4000) cpu_relax(); else std::this_thread::yield();
  }
}

void barrier_wait(Barrier* barrier) { barrier->wait(); }

TeamLease::TeamLease(int requested) {
  int n = requested < 1 ? 1 : requested;
  if (n > hardware_threads()) n = hardware_threads();
  if (n > 1) {
    Pool& pool = Pool::instance();
    if (pool.call_mutex.try_lock()) {
      try {
        pool.ensure_workers(n - 1);
        holds_pool_ = true;
      } catch (...) {  // no thread to be had: run on the caller's alone
        pool.call_mutex.unlock();
        n = 1;
      }
    } else {
      n = 1;
    }
  }
  size_ = n;
}

TeamLease::~TeamLease() {
  if (holds_pool_) Pool::instance().call_mutex.unlock();
}

void TeamLease::run(TeamFn fn, void* ctx) {
  if (size_ == 1) {
    fn(ctx, 0, 1);
    return;
  }
  Pool::instance().run(size_, fn, ctx);
}

}  // namespace fastlstm::cpu
