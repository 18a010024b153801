// The thread team: one persistent pool per process (the caller is member 0), and a spin barrier.
// Baseline-flag code only; kernels call into it through plain functions.
#pragma once

#include <atomic>

namespace fastlstm::cpu {

// A reusable barrier for a fixed number of threads: spins briefly (the common case, a step of a few
// microseconds), then yields so an oversubscribed machine still makes progress.
class Barrier {
 public:
  explicit Barrier(int n = 1) : n_(n) {}
  void reset(int n) { n_ = n; count_.store(0); }
  void wait();

 private:
  alignas(64) std::atomic<int> count_{0};
  alignas(64) std::atomic<unsigned> generation_{0};
  int n_;
};

using TeamFn = void (*)(void* ctx, int tid, int nthreads);

// Holds the process's pool for one call. The team size is what was asked, capped at the hardware's
// threads, and 1 when another call holds the pool (concurrent calls then run on their own thread,
// with the same results: the engine's output does not depend on the team size).
class TeamLease {
 public:
  explicit TeamLease(int requested);
  ~TeamLease();
  TeamLease(const TeamLease&) = delete;
  TeamLease& operator=(const TeamLease&) = delete;
  int size() const { return size_; }
  // Runs fn(ctx, tid, size()) for every tid; returns when all have returned. fn must not throw.
  void run(TeamFn fn, void* ctx);

 private:
  int size_ = 1;
  bool holds_pool_ = false;
};

int hardware_threads();

}  // namespace fastlstm::cpu
