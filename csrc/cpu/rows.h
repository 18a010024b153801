// How a call organises its batch and its thread team, shared by the forward and backward drivers.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/threads.h"
#include "fastlstm/types.h"

namespace fastlstm::cpu {

// The order a call runs its rows in: sorted by length, longest first (stable), so the rows alive at any
// time are a prefix 0 .. alive(t)-1 in both directions. Without lengths: the identity, every row alive for
// all T steps (and nothing is allocated).
struct RowOrder {
  int T = 0, B = 0;
  int steps = 0;                      // the longest length: time steps that run
  std::vector<std::int64_t> lengths;  // [B] in the user's order, or empty (all T)
  std::vector<std::int32_t> perm;     // [B] sorted row -> user row, or empty
  std::vector<std::int32_t> active;   // [T] rows alive at t, or empty

  void build(int T_, int B_, const std::int64_t* lens);
  bool has_lengths() const { return !lengths.empty(); }
  int user_row(int r) const { return perm.empty() ? r : perm[r]; }
  int alive(int t) const { return active.empty() ? B : active[t]; }
  std::int64_t length_of_user(int b) const { return lengths.empty() ? T : lengths[b]; }
  std::int64_t length_of_sorted(int r) const { return lengths.empty() ? T : lengths[perm[r]]; }
  const std::int32_t* rows() const { return perm.empty() ? nullptr : perm.data(); }
  const std::int32_t* active_rows() const { return active.empty() ? nullptr : active.data(); }
  double work_rows() const;  // sum of the lengths: the (t, row) pairs that run
  // The forward step before time t of sorted row r in direction d (0 forward, 1 reverse), or -1 at the row's
  // first step.
  int prev_time(int d, int t, int r) const {
    if (d == 0) return t - 1;
    return (t + 1 < steps && r < alive(t + 1)) ? t + 1 : -1;
  }
};

// How a call's team runs the directions of a layer: with two directions and at least two threads, each
// direction on its own half of the team (a group with its own barrier), concurrently; otherwise one after
// the other on the whole team.
struct TeamSplit {
  int size = 1, groups = 1;
  Barrier team, group[2];

  void reset(int directions, int nthreads);
  int group_of(int tid) const { return groups == 2 && tid >= size / 2 ? 1 : 0; }
  int group_tid(int tid) const { return tid - (group_of(tid) == 1 ? size / 2 : 0); }
  int group_size(int g) const { return groups == 2 ? (g == 0 ? size / 2 : size - size / 2) : size; }
  int smallest_group() const { return group_size(0); }
  Barrier* barrier_of(int d) { return &group[groups == 2 ? d : 0]; }
};

// The floating-point operations of a forward pass over `rows` (time, batch) rows of a model.
double forward_flops(const ModelShape& shape, double rows);

// What decides whether a call gathers a thread team and how long it may wait for one: its operations in
// float32 FMA time. A vdpbf16ps does twice a float32 FMA's products and a vpdpbusd four; float64 half.
double team_work(double flops, WeightFormat weights);

}  // namespace fastlstm::cpu
