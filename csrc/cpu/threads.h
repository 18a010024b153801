// The thread team: one persistent pool per process (the caller is member 0), and a spin barrier.
// Baseline-flag code only; kernels call into it through plain functions.
#pragma once

#include <atomic>

namespace fastlstm::cpu {

// The most threads one call's team takes (the pool's admission word counts members in 8 bits).
inline constexpr int kMaxTeam = 64;

// A reusable barrier for a fixed number of threads: spins briefly (the common case, a step of a few
// microseconds), then yields so an oversubscribed machine still makes progress.
class Barrier {
 public:
  explicit Barrier(int n = 1) : n_(n) {}
  void reset(int n) {
    n_ = n;
    count_.store(0);
  }
  void wait();

 private:
  alignas(64) std::atomic<int> count_{0};
  alignas(64) std::atomic<unsigned> generation_{0};
  int n_;
};

using TeamFn = void (*)(void* ctx, int tid, int nthreads);

// Holds the process's pool for one call (a concurrent call that finds it held runs on its own thread:
// the engine's output does not depend on the team size).
//
// The team is formed, not assumed: form() wakes up to requested-1 workers and takes those that join
// within a wait scaled to the call's work. A small call (a streaming step) does not wait for a worker that
// is asleep or has lost its core to another process: it runs with fewer threads instead of stalling on
// one. A large call waits long enough for a sleeping worker to wake. Once formed, the size is fixed for
// every run() of the lease.
class TeamLease {
 public:
  explicit TeamLease(int requested);  // at most the hardware's threads
  ~TeamLease();
  TeamLease(const TeamLease&) = delete;
  TeamLease& operator=(const TeamLease&) = delete;
  // Forms the team for a call of about `work_flops` float32 operations' time (team_work); returns its size (>= 1).
  // kWholeTeam: every worker of the lease, however long it takes them to come (probes that measure a
  // team, and run() without form()).
  static constexpr double kWholeTeam = 1e300;
  int form(double work_flops);
  int size() const { return size_; }
  // Runs fn(ctx, tid, size()) for every tid; returns when all have returned. fn must not throw.
  void run(TeamFn fn, void* ctx);

 private:
  int size_ = 1;
  bool holds_pool_ = false;
  bool formed_ = false;
  bool joined_waiting_ = false;  // workers that joined at form() wait for the first run()
};

int hardware_threads();

}  // namespace fastlstm::cpu
