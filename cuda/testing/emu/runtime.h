// The execution model's core: emulated CUDA threads (fibers), blocks (one OS thread each, with its own
// shared memory and a scheduler that resolves barriers and warp collectives) and the launch (co-resident
// groups of blocks that pass one turn between them, grid and cluster barriers, deadlock reports). Test-only.
//
// Determinism: one block runs at a time, and inside a block one fiber runs until it blocks (a barrier, a
// warp collective, an atomic, a spin) or exits. The interleaving is therefore a function of the schedule
// (Order: forward, reverse or seeded random, for threads and blocks alike), so a failure reproduces exactly.
// Races that no schedule exposes are ThreadSanitizer's job: build with -fsanitize=thread (docs/cuda.md).
//
// ThreadSanitizer notes. Every fiber switch is unsynchronised (fiber.h), and all scheduler state that fibers
// and schedulers share is relaxed atomics: an acquire/release anywhere in the scheduler would order every
// CUDA thread after every other one and hide the races the checker is there to find. The orderings CUDA
// defines are modelled explicitly: each barrier participant releases a per-barrier variable before it waits
// and acquires it after (hb_release / hb_acquire).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <source_location>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "emu/fiber.h"
#include "emu/keywords.h"

namespace fastlstm::emu {

// The order in which runnable threads (and co-resident blocks) are resumed.
enum class Order { forward, reverse, random };
struct Schedule {
  Order order = Order::forward;
  std::uint64_t seed = 1;  // for Order::random
};

// A kernel launch: <<<grid, block, dynamic_smem>>>, cudaLaunchCooperativeKernel (cooperative) or a launch
// with a cluster dimension (cudaLaunchKernelEx with cudaLaunchAttributeClusterDimension).
struct LaunchConfig {
  dim3 grid{1, 1, 1};
  dim3 block{1, 1, 1};
  std::size_t dynamic_smem = 0;
  bool cooperative = false;
  dim3 cluster{1, 1, 1};
  std::source_location where = std::source_location::current();
};

// A launch that failed: a deadlock, a divergent barrier, a collective with a bad mask, a grid sync outside a
// cooperative launch, ... what() says which threads wait where.
class KernelFault : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The schedule of later launches on this process (tests switch it; FASTLSTM_EMU_SCHEDULE=forward|reverse|
// random:SEED sets the initial one).
void set_schedule(Schedule s);
Schedule schedule();

namespace detail {

constexpr int kIn = 12;  // per-thread payload words of a collective (mma: 4 + 2 + 4 registers)
constexpr int kOut = 8;  // per-thread result words (ldmatrix .trans: 4 registers x 2 addresses)

enum class Wait : std::uint8_t { runnable, yield, barrier, warp, grid, cluster, exited, fault };

struct Thread;
struct Block;
struct Launch;

// Resolves a warp collective once every lane of `mask` posted it: reads lanes[l]->in, writes ->out. A
// non-empty err faults the launch. aux is the collective's own parameter (it must match across lanes).
using Resolver = void (*)(Thread* const* lanes, unsigned mask, unsigned aux, std::string& err);
constexpr unsigned kAligned = 1u << 31;  // aux flag: .aligned instruction, all lanes from one call site

struct Copy {  // a pending cp.async
  void* dst;
  const void* src;
  unsigned bytes, src_bytes;  // src_bytes < bytes: zero-fill the rest
};

struct Thread {
  Context ctx;
  Block* block = nullptr;
  uint3 idx{};
  unsigned linear = 0, warp = 0, lane = 0;
  // Shared with the scheduler and the watchdog (relaxed only; see the ThreadSanitizer notes above).
  std::atomic<bool> started{false};
  std::atomic<Wait> wait{Wait::runnable};
  std::atomic<const char*> what{""};
  std::atomic<std::source_location> where{};
  std::atomic<unsigned> mask{0}, aux{0};
  std::atomic<Resolver> resolver{nullptr};
  std::atomic<std::uint64_t> in[kIn] = {}, out[kOut] = {};
  std::atomic<std::uint64_t> hb{0};  // this lane's release point (__syncwarp)
  // Private to the thread itself.
  std::vector<Copy> cp_open;
  std::deque<std::vector<Copy>> cp_groups;
};

enum class BlockState { ready, grid, cluster, finished };

struct Block {
  Launch* launch = nullptr;
  uint3 idx{};
  unsigned linear = 0, cluster_id = 0, cluster_rank = 0;
  std::vector<std::unique_ptr<Thread>> threads;
  std::byte* dyn_smem = nullptr;
  Context sched;
  // Scheduler-private (the block's OS thread only).
  std::deque<Thread*> runnable;
  unsigned live = 0, at_barrier = 0, at_grid = 0, at_cluster = 0;
  std::uint64_t rng = 0;
  // Happens-before variables for ThreadSanitizer.
  std::atomic<std::uint64_t> hb_barrier{0}, hb_done{0};
};

struct Launch {
  LaunchConfig cfg;
  Schedule sched;
  unsigned nblocks = 0, block_threads = 0, cluster_blocks = 1;
  std::function<void()> body;  // runs the kernel on a private copy of the arguments
  std::vector<std::unique_ptr<Block>> blocks;
  std::vector<std::byte> smem;  // dynamic shared memory of the running group, 128-byte aligned windows
  std::size_t smem_stride = 0;
  // The turn: which block of the running group may run (guarded by m).
  std::mutex m;
  std::condition_variable cv;
  std::vector<unsigned> group;  // the running group's blocks, in schedule order
  std::vector<BlockState> state;
  unsigned owner = 0;
  bool aborted = false;
  std::string fault;
  std::atomic<bool> abort_flag{false};
  std::atomic<std::uint64_t> hb_grid{0};
  std::unique_ptr<std::atomic<std::uint64_t>[]> hb_cluster;

  void fail(const std::string& what) {
    std::lock_guard<std::mutex> lk(m);
    if (!aborted) fault = what;
    aborted = true;
    abort_flag.store(true, std::memory_order_relaxed);
    cv.notify_all();
  }
};

inline thread_local std::atomic<Thread*> t_thread{nullptr};

inline Thread& current() {
  Thread* t = t_thread.load(std::memory_order_relaxed);
  if (t == nullptr) die("a device function was called outside an emulated kernel launch");
  return *t;
}
inline Block& current_block() { return *current().block; }

inline void hb_release(std::atomic<std::uint64_t>& v) {
  if constexpr (kTsan) v.fetch_add(1, std::memory_order_release);
}
inline void hb_acquire(const std::atomic<std::uint64_t>& v) {
  if constexpr (kTsan) (void)v.load(std::memory_order_acquire);
}

std::string where_text(const Thread& t);
std::string describe_block(const Block& b);
void run_launch(const LaunchConfig& cfg, std::function<void()> body);

// Blocks the calling emulated thread until its scheduler resumes it.
inline void block_on(Wait w, const char* what, std::source_location where) {
  Thread& t = current();
  t.what.store(what, std::memory_order_relaxed);
  t.where.store(where, std::memory_order_relaxed);
  t.wait.store(w, std::memory_order_relaxed);
  switch_context(t.ctx, t.block->sched, false);
}

// Faults the launch from inside a kernel: the thread never resumes.
[[noreturn]] inline void fault(const std::string& what, std::source_location where) {
  Thread& t = current();
  t.block->launch->fail(what + "\n  at " + where.file_name() + ":" + std::to_string(where.line()) + " in thread " +
                        where_text(t));
  block_on(Wait::fault, "fault", where);
  die("a faulted thread was resumed");
}

// A scheduling point for spin-waits and atomics: lets the other threads of the block (and other blocks) run.
inline void yield_point(const char* what, std::source_location where) { block_on(Wait::yield, what, where); }

// Posts a warp collective and waits for its resolution. The calling lane must be in mask (CUDA: undefined
// otherwise; here a fault).
inline void warp_collective(const char* what, unsigned mask, Resolver r, unsigned aux, std::source_location where) {
  Thread& t = current();
  if (((mask >> t.lane) & 1u) == 0) {
    fault(std::string(what) + ": the calling lane " + std::to_string(t.lane) + " is not in its mask", where);
  }
  t.mask.store(mask, std::memory_order_relaxed);
  t.resolver.store(r, std::memory_order_relaxed);
  t.aux.store(aux, std::memory_order_relaxed);
  block_on(Wait::warp, what, where);
}

}  // namespace detail

// Launches kernel(args...) on the execution model and returns when every thread has finished; throws
// KernelFault on a deadlock or a misuse. Each emulated thread gets its own copy of the arguments, as a kernel's
// parameters are per thread.
template <class... P, class... A>
void launch(const LaunchConfig& cfg, void (*kernel)(P...), A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "emu::launch: argument count differs from the kernel's");
  const std::tuple<std::decay_t<P>...> params(static_cast<std::decay_t<P>>(std::forward<A>(args))...);
  detail::run_launch(cfg, [&params, kernel] {
    auto own = params;
    std::apply(kernel, own);
  });
}

}  // namespace fastlstm::emu

// CUDA's built-in variables, per emulated thread.
#define threadIdx (::fastlstm::emu::detail::current().idx)
#define blockIdx (::fastlstm::emu::detail::current_block().idx)
#define blockDim (static_cast<const dim3&>(::fastlstm::emu::detail::current_block().launch->cfg.block))
#define gridDim (static_cast<const dim3&>(::fastlstm::emu::detail::current_block().launch->cfg.grid))
