// A minimal fork-join pool tuned for many short phases: workers spin for a while on a generation
// counter before sleeping on it (C++20 atomic wait), so a sequence of calls does not pay a wake-up each.
//
// Each run is a generation. The caller bumps it and opens admission in one atomic word (the generation's
// tag, a closed bit, how many workers it wants, how many joined); a woken worker joins with a
// compare-and-swap while admission is open, then waits for the go. The caller closes admission when the
// team is full or its wait is over, so a worker that arrives late never touches the call's data.
#include "cpu/threads.h"

#include "fastlstm/cpu.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif
#include <thread>
#include <vector>

namespace fastlstm::cpu {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

using Clock = std::chrono::steady_clock;

// Admission word: [63:32] generation tag, [31] closed, [15:8] workers wanted, [7:0] workers joined.
constexpr std::uint64_t kClosed = 1ull << 31;
inline std::uint64_t admission(unsigned gen, int want) {
  return (static_cast<std::uint64_t>(gen) << 32) | (static_cast<std::uint64_t>(want) << 8);
}
inline unsigned tag_of(std::uint64_t v) { return static_cast<unsigned>(v >> 32); }
inline int want_of(std::uint64_t v) { return static_cast<int>((v >> 8) & 0xff); }
inline int joined_of(std::uint64_t v) { return static_cast<int>(v & 0xff); }

// Spins, then yields: for waits that are short unless a thread has lost its core.
template <class Done>
void spin_until(Done done) {
  for (int spins = 0; !done(); ++spins) {
    if (spins < 20000)
      cpu_relax();
    else
      std::this_thread::yield();
  }
}

class Pool {
 public:
  // Never destroyed: workers may outlive static destruction order. A child of fork() has none of the
  // parent's workers (and maybe a mutex some other thread held): it starts a pool of its own.
  static Pool& instance() {
    static Pool*& pool = []() -> Pool*& {
      static Pool* p = new Pool();
#if defined(__linux__)
      pthread_atfork(nullptr, nullptr, [] { p = new Pool(); });
#endif
      return p;
    }();
    return *pool;
  }

  std::mutex call_mutex;  // held by the TeamLease that owns the pool

  void ensure_workers(int n) {  // caller holds call_mutex
    while (static_cast<int>(workers_.size()) < n) {
      // The generation it has seen is fixed here, not when the thread gets going: the call that
      // follows bumps it, possibly before the new thread first looks.
      const unsigned seen = generation_.load(std::memory_order_acquire);
      workers_.emplace_back([this, seen] { loop(seen); });
      handles_.push_back(workers_.back().native_handle());
      workers_.back().detach();
      avoid_cpu_ = -1;  // the new one's placement is not set yet
    }
  }

  // Wakes the workers and admits up to `want` of them, waiting at most `wait` for them (forever when
  // negative). Returns how many joined; they wait for go(). Caller holds call_mutex.
  int admit(int want, std::chrono::nanoseconds wait) {
    keep_off_callers_cpu();
    // A sleeping worker takes ~25 us to wake (and waking it is a system call): a short call that finds
    // them all asleep runs without them. It wakes them only when calls follow each other closely (a
    // stream of steps), so the next ones find them spinning.
    const auto now = Clock::now();
    const bool close = now - last_admit_ < std::chrono::microseconds(200);
    last_admit_ = now;
    if (wait.count() >= 0 && wait < std::chrono::microseconds(50) &&
        asleep_.load(std::memory_order_acquire) >= static_cast<int>(workers_.size())) {
      if (!close) return 0;
      want = 0;
    }
    const unsigned gen = generation_.load(std::memory_order_relaxed) + 1;
    admission_.store(admission(gen, want), std::memory_order_release);
    generation_.store(gen, std::memory_order_release);
    generation_.notify_all();
    const auto deadline = Clock::now() + wait;
    for (int spins = 0; joined_of(admission_.load(std::memory_order_acquire)) < want; ++spins) {
      if (wait.count() >= 0 && (spins & 63) == 63 && Clock::now() >= deadline) break;
      if (spins < 20000)
        cpu_relax();
      else
        std::this_thread::yield();
    }
    return joined_of(admission_.fetch_or(kClosed, std::memory_order_acq_rel));
  }

  // Starts the admitted workers on fn (null: release them without work), runs member 0 on the caller's
  // thread, and returns when all are done.
  void go(int joined, TeamFn fn, void* ctx, int n) {
    fn_ = fn;
    ctx_ = ctx;
    team_ = n;
    pending_.store(joined, std::memory_order_relaxed);
    go_.store(generation_.load(std::memory_order_relaxed), std::memory_order_release);
    if (fn) fn(ctx, 0, n);
    spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; });
  }

 private:
  // Linux places a woken thread on its waker's CPU when it can; a worker woken there waits for the
  // caller to give up that CPU (~2 ms measured on a 2-vCPU VM, against ~25 us when it must go elsewhere)
  // and then shares it. So workers may run anywhere the caller may, except where the caller is now.
  void keep_off_callers_cpu() {
#if defined(__linux__)
    const int cpu = sched_getcpu();
    if (cpu < 0 || cpu == avoid_cpu_) return;
    avoid_cpu_ = cpu;
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0 || !CPU_ISSET(cpu, &allowed)) return;
    CPU_CLR(cpu, &allowed);
    if (CPU_COUNT(&allowed) == 0) return;
    for (pthread_t h : handles_) pthread_setaffinity_np(h, sizeof(allowed), &allowed);
#endif
  }

  void loop(unsigned seen) {
    for (;;) {
      unsigned g;
      const auto idle_since = Clock::now();
      for (int spins = 0;; ++spins) {
        g = generation_.load(std::memory_order_acquire);
        if (g != seen) break;
        if ((spins & 1023) == 1023 && Clock::now() - idle_since > std::chrono::microseconds(200)) {
          asleep_.fetch_add(1, std::memory_order_acq_rel);
          generation_.wait(seen, std::memory_order_acquire);
          asleep_.fetch_sub(1, std::memory_order_acq_rel);
        } else {
          cpu_relax();
        }
      }
      seen = g;
      int tid = 0;
      std::uint64_t v = admission_.load(std::memory_order_acquire);
      while (tag_of(v) == g && !(v & kClosed) && joined_of(v) < want_of(v)) {
        if (admission_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) {
          tid = joined_of(v) + 1;
          break;
        }
      }
      if (tid == 0) continue;  // late, or not wanted: this generation's call is none of my business
      spin_until([&] { return go_.load(std::memory_order_acquire) == g; });
      if (fn_) fn_(ctx_, tid, team_);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::vector<std::thread> workers_;
  std::vector<std::thread::native_handle_type> handles_;
  int avoid_cpu_ = -1;  // the CPU the workers were last kept off
  Clock::time_point last_admit_{};
  TeamFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int team_ = 1;
  alignas(64) std::atomic<unsigned> generation_{0};
  alignas(64) std::atomic<std::uint64_t> admission_{0};
  alignas(64) std::atomic<unsigned> go_{0};
  alignas(64) std::atomic<int> pending_{0};
  std::atomic<int> asleep_{0};  // workers blocked in generation_.wait
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
    if (spins < 4000)
      cpu_relax();
    else
      std::this_thread::yield();
  }
}

void barrier_wait(Barrier* barrier) { barrier->wait(); }

TeamLease::TeamLease(int requested) {
  int n = std::min(std::max(requested, 1), std::min(hardware_threads(), kMaxTeam));
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
  if (!holds_pool_) return;
  Pool& pool = Pool::instance();
  if (joined_waiting_) pool.go(size_ - 1, nullptr, nullptr, size_);  // formed, never run (setup threw)
  pool.call_mutex.unlock();
}

int TeamLease::form(double work_flops) {
  if (formed_) return size_;
  formed_ = true;
  if (size_ == 1) return 1;
  // Gathering a team and the barrier of each step cost a few cross-core round trips; below this much work
  // one thread finishes first. Streaming steps on Zen 5 (us per call alone / on two threads): float32
  // H = 128 (262 kFLOP) 4.0 / 3.7, H = 160 (410k) 6.5 / 6.1, H = 192 (590k) 10.5 / 6.6; int8 H = 256 (262k
  // in float32 time) 4.5 / 5.9, bf16 H = 256 (524k) 9.5 / 7.1.
  constexpr double kSoloFlops = 400e3;
  if (work_flops < kSoloFlops) {
    Pool::instance().call_mutex.unlock();
    holds_pool_ = false;
    size_ = 1;
    return 1;
  }
  // How long a worker is worth waiting for: an eighth of the call's time on one thread (at ~50 GFLOP/s),
  // between 3 us (a spinning worker joins in well under 1 us) and 2 ms (a sleeping one wakes in ~10-50).
  const double ns = work_flops >= kWholeTeam ? -1.0 : std::clamp(work_flops / 50.0 / 8.0, 3e3, 2e6);
  size_ = 1 + Pool::instance().admit(size_ - 1, std::chrono::nanoseconds(static_cast<std::int64_t>(ns)));
  joined_waiting_ = size_ > 1;
  if (size_ == 1) {  // nobody came: give the pool back to other calls at once
    Pool::instance().call_mutex.unlock();
    holds_pool_ = false;
  }
  return size_;
}

void TeamLease::run(TeamFn fn, void* ctx) {
  form(kWholeTeam);  // a lease run without form()
  if (size_ == 1) {
    fn(ctx, 0, 1);
    return;
  }
  Pool& pool = Pool::instance();
  // After the first run the team is fixed: every member is needed again, however long it takes.
  const int joined = joined_waiting_ ? size_ - 1 : pool.admit(size_ - 1, std::chrono::nanoseconds(-1));
  joined_waiting_ = false;
  pool.go(joined, fn, ctx, size_);
}

namespace {
std::atomic<int> g_default_threads{0};
}  // namespace

int default_num_threads() {
  const int n = g_default_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : hardware_threads();
}

void set_default_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("n: the number of threads must be >= 1");
  g_default_threads.store(n, std::memory_order_relaxed);
}

}  // namespace fastlstm::cpu
