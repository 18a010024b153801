// The execution model's schedulers: per block (fibers, barriers, warp collectives) and per launch (the turn
// between co-resident blocks, grid and cluster barriers), the reports of what each thread waits for, and the
// watchdog. Declarations and the design notes are in emu/runtime.h. Test-only.
#pragma once

#include <chrono>
#include <cinttypes>
#include <thread>

#include "emu/runtime.h"

namespace fastlstm::emu {

namespace detail {

inline Schedule schedule_from_env() {
  Schedule s;
  const char* env = std::getenv("FASTLSTM_EMU_SCHEDULE");
  if (env == nullptr || std::strcmp(env, "forward") == 0) return s;
  if (std::strcmp(env, "reverse") == 0) {
    s.order = Order::reverse;
  } else if (std::strncmp(env, "random", 6) == 0) {
    s.order = Order::random;
    if (env[6] == ':') s.seed = std::strtoull(env + 7, nullptr, 10);
  } else {
    die("FASTLSTM_EMU_SCHEDULE must be forward, reverse or random[:SEED]");
  }
  return s;
}

inline Schedule& schedule_slot() {
  static Schedule s = schedule_from_env();
  return s;
}

inline std::uint64_t next_random(std::uint64_t& state) {  // splitmix64: small, seedable, good enough
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Indices 0..n-1 in the schedule's order.
inline std::vector<unsigned> ordered(unsigned n, const Schedule& s, std::uint64_t& rng) {
  std::vector<unsigned> v(n);
  for (unsigned i = 0; i < n; ++i) v[i] = s.order == Order::reverse ? n - 1 - i : i;
  if (s.order == Order::random) {
    for (unsigned i = n; i > 1; --i) std::swap(v[i - 1], v[next_random(rng) % i]);
  }
  return v;
}

inline std::string dim_text(uint3 v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

inline std::string where_text(const Thread& t) {
  return dim_text(t.idx) + " of block " + dim_text(t.block->idx) + " (warp " + std::to_string(t.warp) + ", lane " +
         std::to_string(t.lane) + ")";
}

// One line per run of consecutive threads in the same state: "threads 0-30 (warp 0 lanes 0-30): waits at
// __shfl_xor_sync mask 0xffffffff, file:line".
inline std::string describe_block(const Block& b) {
  auto state_of = [](const Thread& t) {
    const Wait w = t.wait.load(std::memory_order_relaxed);
    if (w == Wait::exited) return std::string("exited");
    if (w == Wait::runnable && !t.started.load(std::memory_order_relaxed)) return std::string("not started");
    const std::source_location loc = t.where.load(std::memory_order_relaxed);
    std::string s = std::string(w == Wait::yield ? "spins at " : "waits at ") + t.what.load(std::memory_order_relaxed);
    if (w == Wait::warp) {
      char mask[16];
      std::snprintf(mask, sizeof mask, "0x%08x", t.mask.load(std::memory_order_relaxed));
      s += std::string(" mask ") + mask;
    }
    return s + ", " + loc.file_name() + ":" + std::to_string(loc.line());
  };
  std::string out = "  block " + dim_text(b.idx) + ":\n";
  const std::size_t n = b.threads.size();
  for (std::size_t i = 0; i < n;) {
    const std::string s = state_of(*b.threads[i]);
    std::size_t j = i + 1;
    while (j < n && state_of(*b.threads[j]) == s) ++j;
    const Thread& first = *b.threads[i];
    const Thread& last = *b.threads[j - 1];
    std::string who = j - i == 1 ? "thread " + std::to_string(first.linear)
                                 : "threads " + std::to_string(first.linear) + "-" + std::to_string(last.linear);
    if (first.warp == last.warp) {
      who += " (warp " + std::to_string(first.warp) + " lane" +
             (j - i == 1 ? " " + std::to_string(first.lane)
                         : "s " + std::to_string(first.lane) + "-" + std::to_string(last.lane)) +
             ")";
    }
    out += "    " + who + ": " + s + "\n";
    i = j;
  }
  return out;
}

inline std::string launch_text(const Launch& L) {
  return "kernel launched at " + std::string(L.cfg.where.file_name()) + ":" + std::to_string(L.cfg.where.line()) +
         " grid " + dim_text(L.cfg.grid) + " block " + dim_text(L.cfg.block) +
         (L.cfg.cooperative ? " cooperative" : "") +
         (L.cluster_blocks > 1 ? " cluster " + dim_text(L.cfg.cluster) : "");
}

// ---- The turn between co-resident blocks -------------------------------------------------------------

// With L.m held: resolves the grid and cluster barriers, then hands the turn to the next ready block after
// `from` in schedule order (from itself last). No ready block and some not finished: a deadlock across blocks.
inline void pass_turn_locked(Launch& L, unsigned from) {
  std::size_t ngrid = 0, nfin = 0;
  for (unsigned b : L.group) {
    ngrid += L.state[b] == BlockState::grid;
    nfin += L.state[b] == BlockState::finished;
  }
  if (ngrid > 0 && ngrid + nfin == L.group.size()) {
    if (nfin > 0) {
      std::string who;
      for (unsigned b : L.group) {
        if (L.state[b] == BlockState::finished) who += " " + dim_text(L.blocks[b]->idx);
      }
      L.fault = "grid sync never completes: block(s)" + who + " exited without reaching it, while the others wait";
      L.aborted = true;
    } else {
      for (unsigned b : L.group) L.state[b] = BlockState::ready;
    }
  }
  // Clusters: every block of a cluster at its barrier releases them; a finished member deadlocks it.
  for (unsigned b : L.group) {
    if (L.state[b] != BlockState::cluster) continue;
    const unsigned c = L.blocks[b]->cluster_id;
    bool all = true, any_finished = false;
    for (unsigned o : L.group) {
      if (L.blocks[o]->cluster_id != c) continue;
      all = all && (L.state[o] == BlockState::cluster || L.state[o] == BlockState::finished);
      any_finished = any_finished || L.state[o] == BlockState::finished;
    }
    if (all && any_finished) {
      L.fault = "cluster sync never completes: a block of cluster " + std::to_string(c) + " exited before it";
      L.aborted = true;
    } else if (all) {
      for (unsigned o : L.group) {
        if (L.blocks[o]->cluster_id == c) L.state[o] = BlockState::ready;
      }
    }
  }
  const std::size_t n = L.group.size();
  const std::size_t pos = std::find(L.group.begin(), L.group.end(), from) - L.group.begin();
  bool any_left = false;
  for (std::size_t k = 1; k <= n && !L.aborted; ++k) {
    const unsigned b = L.group[(pos + k) % n];
    any_left = any_left || L.state[b] != BlockState::finished;
    if (L.state[b] == BlockState::ready) {
      L.owner = b;
      L.cv.notify_all();
      return;
    }
  }
  if (any_left && !L.aborted) {
    L.fault = "deadlock across blocks: every block waits at a grid or cluster barrier that cannot complete\n";
    for (unsigned b : L.group) L.fault += describe_block(*L.blocks[b]);
    L.aborted = true;
  }
  L.abort_flag.store(L.aborted, std::memory_order_relaxed);
  L.cv.notify_all();
}

// The block enters state s (a barrier across blocks, or ready again after a yield) and waits for its turn.
// Returns false when the launch was aborted meanwhile.
inline bool wait_for_turn(Launch& L, Block& b, BlockState s) {
  std::unique_lock<std::mutex> lk(L.m);
  L.state[b.linear] = s;
  pass_turn_locked(L, b.linear);
  L.cv.wait(lk, [&] { return L.aborted || (L.owner == b.linear && L.state[b.linear] == BlockState::ready); });
  return !L.aborted;
}

// The block's first turn: the launch names the first owner, the rest follows from pass_turn_locked.
inline bool wait_for_first_turn(Launch& L, Block& b) {
  std::unique_lock<std::mutex> lk(L.m);
  L.cv.wait(lk, [&] { return L.aborted || L.owner == b.linear; });
  return !L.aborted;
}

// ---- The block scheduler -------------------------------------------------------------------------------

inline void fiber_entry(unsigned lo, unsigned hi) {
  Thread* t = reinterpret_cast<Thread*>((static_cast<std::uintptr_t>(hi) << 32) | lo);
  fiber_started();
  t->block->launch->body();
  // Pending cp.async copies die with the thread, as nothing can wait for them any more.
  hb_release(t->block->hb_done);
  t->wait.store(Wait::exited, std::memory_order_relaxed);
  switch_context(t->ctx, t->block->sched, false, true);
  die("an exited fiber was resumed");
}

inline void make_runnable(Block& b, const std::vector<Thread*>& ts) {
  const Schedule& s = b.launch->sched;
  std::vector<unsigned> order = ordered(static_cast<unsigned>(ts.size()), s, b.rng);
  for (unsigned i : order) {
    ts[i]->wait.store(Wait::runnable, std::memory_order_relaxed);
    b.runnable.push_back(ts[i]);
  }
}

inline bool same_site(const Thread& a, const Thread& b) {
  const std::source_location x = a.where.load(std::memory_order_relaxed), y = b.where.load(std::memory_order_relaxed);
  return x.line() == y.line() && x.column() == y.column() && std::strcmp(x.file_name(), y.file_name()) == 0 &&
         std::strcmp(a.what.load(std::memory_order_relaxed), b.what.load(std::memory_order_relaxed)) == 0;
}

// All live threads are at a barrier of kind w: they must have come through one call site (CUDA requires a
// __syncthreads to be reached by the whole block; reaching different ones is a divergent barrier).
inline bool barrier_sites_agree(Block& b, Wait w, std::vector<Thread*>& at) {
  at.clear();
  for (auto& t : b.threads) {
    if (t->wait.load(std::memory_order_relaxed) == w) at.push_back(t.get());
  }
  for (Thread* t : at) {
    if (!same_site(*t, *at.front())) {
      b.launch->fail("divergent barrier: the threads of block " + dim_text(b.idx) +
                     " wait at different barriers (CUDA requires every thread of the block at the same one)\n" +
                     describe_block(b) + "  in the " + launch_text(*b.launch));
      return false;
    }
  }
  return true;
}

// __syncthreads and its reductions: in[0] is the thread's predicate; out[0] gets the count of true ones,
// out[1] the number of threads that arrived.
inline void complete_barrier(Block& b) {
  std::vector<Thread*> at;
  if (!barrier_sites_agree(b, Wait::barrier, at)) return;
  std::uint64_t count = 0;
  for (Thread* t : at) count += t->in[0].load(std::memory_order_relaxed) != 0;
  for (Thread* t : at) {
    t->out[0].store(count, std::memory_order_relaxed);
    t->out[1].store(at.size(), std::memory_order_relaxed);
  }
  b.at_barrier = 0;
  make_runnable(b, at);
}

// A warp collective completes when every lane of its mask posted the same collective (resolver, mask, aux);
// until then it waits (another collective may complete first and bring the missing lanes).
inline void try_resolve_warp(Block& b, Thread& t) {
  const unsigned mask = t.mask.load(std::memory_order_relaxed), aux = t.aux.load(std::memory_order_relaxed);
  const Resolver r = t.resolver.load(std::memory_order_relaxed);
  Thread* lanes[32] = {};
  for (unsigned l = 0; l < 32; ++l) {
    if (((mask >> l) & 1u) == 0) continue;
    const std::size_t i = static_cast<std::size_t>(t.warp) * 32 + l;
    if (i >= b.threads.size()) {
      b.launch->fail(std::string(t.what.load(std::memory_order_relaxed)) + ": mask names lane " + std::to_string(l) +
                     " of warp " + std::to_string(t.warp) + ", which the block does not have\n" + describe_block(b));
      return;
    }
    Thread& o = *b.threads[i];
    if (o.wait.load(std::memory_order_relaxed) != Wait::warp || o.mask.load(std::memory_order_relaxed) != mask ||
        o.resolver.load(std::memory_order_relaxed) != r || o.aux.load(std::memory_order_relaxed) != aux) {
      return;  // not all there yet
    }
    lanes[l] = &o;
  }
  std::vector<Thread*> done;
  for (Thread* o : lanes) {
    if (o == nullptr) continue;
    if ((aux & kAligned) != 0 && !same_site(*o, t)) {
      b.launch->fail(std::string(t.what.load(std::memory_order_relaxed)) +
                     " is .aligned: every lane must execute the same instruction, these come from different sites\n" +
                     describe_block(b));
      return;
    }
    done.push_back(o);
  }
  std::string err;
  r(lanes, mask, aux, err);
  if (!err.empty()) {
    b.launch->fail(err + "\n  at " + t.where.load(std::memory_order_relaxed).file_name() + ":" +
                   std::to_string(t.where.load(std::memory_order_relaxed).line()) + ", warp " + std::to_string(t.warp) +
                   " of block " + dim_text(b.idx));
    return;
  }
  make_runnable(b, done);
}

// Runs one block to completion on the calling OS thread (its own thread: __shared__ is thread_local).
inline void run_block(Launch& L, Block& b) {
  b.sched.adopt_current_thread();
  std::vector<Thread*> all;
  for (auto& t : b.threads) {
    const std::string name = "CUDA thread " + where_text(*t);
    t->ctx.make_fiber(fiber_entry, t.get(), name.c_str());
    all.push_back(t.get());
  }
  b.live = static_cast<unsigned>(all.size());
  make_runnable(b, all);
  bool ok = wait_for_first_turn(L, b);
  std::size_t spins = 0;  // yields since the last progress
  while (ok && b.live > 0) {
    if (L.abort_flag.load(std::memory_order_relaxed)) break;
    if (b.runnable.empty()) {
      // Everything left waits: for the other blocks (grid / cluster barrier), or for nothing that can come.
      std::vector<Thread*> at;
      if (b.at_grid == b.live || b.at_cluster == b.live) {
        const bool grid = b.at_grid == b.live;
        if (!barrier_sites_agree(b, grid ? Wait::grid : Wait::cluster, at)) break;
        if (!wait_for_turn(L, b, grid ? BlockState::grid : BlockState::cluster)) break;
        (grid ? b.at_grid : b.at_cluster) = 0;
        make_runnable(b, at);
        continue;
      }
      L.fail("deadlock: no thread of block " + dim_text(b.idx) + " can continue\n" + describe_block(b) + "  in the " +
             launch_text(L));
      break;
    }
    Thread* t = b.runnable.front();
    b.runnable.pop_front();
    const bool first = !t->started.load(std::memory_order_relaxed);
    t->started.store(true, std::memory_order_relaxed);
    t_thread.store(t, std::memory_order_relaxed);
    switch_context(b.sched, t->ctx, first);
    t_thread.store(nullptr, std::memory_order_relaxed);
    const Wait w = t->wait.load(std::memory_order_relaxed);
    if (w != Wait::yield) spins = 0;
    switch (w) {
      case Wait::yield:
        b.runnable.push_back(t);
        // Every runnable thread only spun since the last progress: let the other blocks run.
        if (++spins > b.runnable.size() && L.group.size() > 1) {
          spins = 0;
          ok = wait_for_turn(L, b, BlockState::ready);
        }
        break;
      case Wait::exited:
        --b.live;
        t->ctx.release();
        if (b.at_barrier > 0 && b.at_barrier == b.live) complete_barrier(b);
        break;
      case Wait::barrier:
        if (++b.at_barrier == b.live) complete_barrier(b);
        break;
      case Wait::warp:
        try_resolve_warp(b, *t);
        break;
      case Wait::grid:
        ++b.at_grid;
        break;
      case Wait::cluster:
        ++b.at_cluster;
        break;
      case Wait::fault:
        ok = false;
        break;
      case Wait::runnable:
        die("a fiber switched back without saying why");
    }
  }
  // No hb_acquire(b.hb_done) here: a scheduler that took its fibers' clocks would pass them through the turn's
  // mutex to the next block and hide races between blocks. The launch thread acquires it after the join.
  for (auto& t : b.threads) {  // abandoned fibers of a failed launch too (never resumed, never unwound)
    if (t->started.load(std::memory_order_relaxed) && t->wait.load(std::memory_order_relaxed) != Wait::exited) {
      absorb_fiber(b.sched, t->ctx);
    }
    t->ctx.release();
  }
  std::lock_guard<std::mutex> lk(L.m);
  L.state[b.linear] = BlockState::finished;
  if (!L.aborted) pass_turn_locked(L, b.linear);
}

inline uint3 unflatten(unsigned i, dim3 d) { return uint3{i % d.x, (i / d.x) % d.y, i / (d.x * d.y)}; }

inline void validate(const Launch& L) {
  const LaunchConfig& c = L.cfg;
  auto bad = [&](const std::string& why) { throw KernelFault("emu::launch: " + why + " (" + launch_text(L) + ")"); };
  if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0 || c.block.x == 0 || c.block.y == 0 || c.block.z == 0)
    bad("a zero grid or block dimension");
  if (L.block_threads > 1024) bad("more than 1024 threads per block");
  if (c.grid.y > 65535 || c.grid.z > 65535 || c.block.z > 64) bad("a grid or block dimension over CUDA's limit");
  if (c.dynamic_smem > 227 * 1024) bad("more dynamic shared memory than any GPU has (227 KiB)");
  if (c.grid.x % c.cluster.x != 0 || c.grid.y % c.cluster.y != 0 || c.grid.z % c.cluster.z != 0)
    bad("the grid is not a whole number of clusters");
  if (L.cluster_blocks > 16) bad("a cluster of more than 16 blocks");
}

// The watchdog: a launch that runs past FASTLSTM_EMU_TIMEOUT_S (default 120) seconds is a livelock (a spin
// that never ends); the process prints what every thread of the running group does and aborts.
struct Watchdog {
  Launch& L;
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::thread th;
  explicit Watchdog(Launch& l) : L(l) {
    const char* env = std::getenv("FASTLSTM_EMU_TIMEOUT_S");
    const long s = env != nullptr ? std::atol(env) : 120;
    th = std::thread([this, s] {
      std::unique_lock<std::mutex> lk(m);
      if (cv.wait_for(lk, std::chrono::seconds(s), [this] { return done; })) return;
      std::string text =
          "fastlstm emu: the launch ran past " + std::to_string(s) + " s (a livelock?): " + launch_text(L) + "\n";
      std::lock_guard<std::mutex> lg(L.m);  // no scheduler holds it while a fiber spins
      for (unsigned b : L.group) text += describe_block(*L.blocks[b]);
      std::fputs(text.c_str(), stderr);
      std::abort();
    });
  }
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lk(m);
      done = true;
    }
    cv.notify_all();
    th.join();
  }
};

inline void run_launch(const LaunchConfig& cfg, std::function<void()> body) {
  if (t_thread.load(std::memory_order_relaxed) != nullptr) die("emu::launch from inside a kernel is not supported");
  Launch L;
  L.cfg = cfg;
  L.sched = schedule_slot();
  L.body = std::move(body);
  L.nblocks = cfg.grid.x * cfg.grid.y * cfg.grid.z;
  L.block_threads = cfg.block.x * cfg.block.y * cfg.block.z;
  L.cluster_blocks = cfg.cluster.x * cfg.cluster.y * cfg.cluster.z;
  validate(L);
  L.state.assign(L.nblocks, BlockState::finished);
  L.hb_cluster = std::make_unique<std::atomic<std::uint64_t>[]>(L.nblocks);
  L.smem_stride = (cfg.dynamic_smem + 127) / 128 * 128;
  const dim3 cgrid(cfg.grid.x / cfg.cluster.x, cfg.grid.y / cfg.cluster.y, cfg.grid.z / cfg.cluster.z);
  // Co-resident groups, run one after another: the whole grid (cooperative), a cluster, or a single block.
  auto cluster_of = [&](uint3 bi) {
    const uint3 ci{bi.x / cfg.cluster.x, bi.y / cfg.cluster.y, bi.z / cfg.cluster.z};
    return ci.x + ci.y * cgrid.x + ci.z * cgrid.x * cgrid.y;
  };
  const unsigned nclusters = L.nblocks / L.cluster_blocks;
  std::vector<std::vector<unsigned>> by_cluster(cfg.cooperative ? 1 : nclusters);
  for (unsigned i = 0; i < L.nblocks; ++i)
    by_cluster[cfg.cooperative ? 0 : cluster_of(unflatten(i, cfg.grid))].push_back(i);
  std::vector<std::vector<unsigned>> groups;
  std::uint64_t rng = L.sched.seed;
  for (unsigned c : ordered(static_cast<unsigned>(by_cluster.size()), L.sched, rng))
    groups.push_back(std::move(by_cluster[c]));
  L.blocks.resize(L.nblocks);
  Watchdog dog(L);
  for (const auto& members : groups) {
    // Blocks and threads are built here, before the block threads start, so the watchdog can read them.
    L.smem.assign(L.smem_stride * members.size() + 128, std::byte{0xff});  // poison: NaN in every float
    std::byte* base = L.smem.data() + (128 - reinterpret_cast<std::uintptr_t>(L.smem.data()) % 128) % 128;
    for (std::size_t k = 0; k < members.size(); ++k) {
      auto b = std::make_unique<Block>();
      b->launch = &L;
      b->linear = members[k];
      b->idx = unflatten(members[k], cfg.grid);
      const uint3 in{b->idx.x % cfg.cluster.x, b->idx.y % cfg.cluster.y, b->idx.z % cfg.cluster.z};
      b->cluster_id = cluster_of(b->idx);
      b->cluster_rank = in.x + in.y * cfg.cluster.x + in.z * cfg.cluster.x * cfg.cluster.y;
      b->dyn_smem = base + k * L.smem_stride;
      b->rng = L.sched.seed * 0x100000001b3ull + members[k];
      for (unsigned i = 0; i < L.block_threads; ++i) {
        auto t = std::make_unique<Thread>();
        t->block = b.get();
        t->idx = unflatten(i, cfg.block);
        t->linear = i;
        t->warp = i / 32;
        t->lane = i % 32;
        b->threads.push_back(std::move(t));
      }
      L.blocks[members[k]] = std::move(b);
    }
    {
      std::lock_guard<std::mutex> lk(L.m);
      std::uint64_t grng = rng;
      L.group.clear();
      for (unsigned k : ordered(static_cast<unsigned>(members.size()), L.sched, grng)) L.group.push_back(members[k]);
      for (unsigned b : members) L.state[b] = BlockState::ready;
      L.owner = L.group.front();
    }
    std::vector<std::thread> threads;
    for (unsigned b : members) threads.emplace_back([&L, b] { run_block(L, *L.blocks[b]); });
    for (auto& th : threads) th.join();
    for (unsigned b : members) hb_acquire(L.blocks[b]->hb_done);
    if (L.aborted) break;
    std::lock_guard<std::mutex> lk(L.m);  // the watchdog reads the group's blocks under it
    for (unsigned b : members) L.blocks[b].reset();
    L.group.clear();
  }
  if (L.aborted) throw KernelFault("fastlstm emu: " + L.fault);
}

}  // namespace detail

inline void set_schedule(Schedule s) { detail::schedule_slot() = s; }
inline Schedule schedule() { return detail::schedule_slot(); }

}  // namespace fastlstm::emu
