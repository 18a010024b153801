// Planted bugs the execution model must catch: a missing __syncthreads, a divergent barrier, a lane missing
// from a shuffle and a missing grid sync (the list), plus the collective misuses next to them. The
// races are caught twice: the plain build shows a wrong result under some schedule (the interleaving is
// deterministic per schedule), the ThreadSanitizer build reports the data race naming the kernel.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "harness.h"

namespace {

namespace emu = fastlstm::emu;
namespace prim = fastlstm::cuda::prim;
using emu::testing::caught;

constexpr unsigned kFull = 0xffffffffu;

// Runs fn under the forward and the reverse schedule; a wrong result under either is the catch.
template <class F>
void under_schedules(const char* bug, F&& fn) {
  for (emu::Order o : {emu::Order::forward, emu::Order::reverse}) {
    emu::set_schedule({o, 1});
    if (!fn())
      caught(std::string(bug) + " shows a wrong result under the " +
             (o == emu::Order::forward ? "forward" : "reverse") + " schedule");
  }
}

// ---- 1. A missing __syncthreads: reversing a block through shared memory -------------------------------
template <bool kBarrier>
__global__ void reverse_in_smem(const int* in, int* out) {
  __shared__ int tile[128];
  const unsigned t = threadIdx.x;
  tile[t] = in[blockIdx.x * blockDim.x + t];
  if constexpr (kBarrier) __syncthreads();
  out[blockIdx.x * blockDim.x + t] = tile[blockDim.x - 1 - t];
}

bool reverse_is_right(void (*kernel)(const int*, int*)) {
  std::vector<int> in(256), out(256, -1);
  for (int i = 0; i < 256; ++i) in[i] = 1000 + i;
  emu::launch({dim3(2), dim3(128)}, kernel, in.data(), out.data());
  for (int i = 0; i < 256; ++i) {
    if (out[i] != in[(i / 128) * 128 + 127 - i % 128]) return false;
  }
  return true;
}

EMU_TEST(barrier_present_is_clean) {
  for (emu::Order o : {emu::Order::forward, emu::Order::reverse, emu::Order::random}) {
    emu::set_schedule({o, 7});
    CHECK(reverse_is_right(reverse_in_smem<true>));
  }
}

EMU_PLANTED_RACE(planted_missing_syncthreads, "reverse_in_smem") {
  under_schedules("a missing __syncthreads", [] { return reverse_is_right(reverse_in_smem<false>); });
}

// ---- 2. A divergent barrier: only the first warp reaches the first __syncthreads -----------------------
__global__ void divergent_barrier(int* out) {
  __shared__ int s[64];
  s[threadIdx.x] = static_cast<int>(threadIdx.x);
  if (threadIdx.x < 32) __syncthreads();  // the bug: the second warp skips it...
  __syncthreads();                        // ...and meets the first warp's threads at another barrier
  out[threadIdx.x] = s[63 - threadIdx.x];
}

EMU_TEST(planted_divergent_barrier) {
  std::vector<int> out(64);
  EXPECT_FAULT(emu::launch({dim3(1), dim3(64)}, divergent_barrier, out.data()), "divergent barrier",
               "threads 0-31 (warp 0 lanes 0-31): waits at __syncthreads",
               emu::testing::site_of(__FILE__, "the bug: the second warp skips it"),
               "threads 32-63 (warp 1 lanes 0-31): waits at __syncthreads",
               emu::testing::site_of(__FILE__, "meets the first warp's threads at another"));
}

// ---- 3. A lane missing from a shuffle: lane 31 skips a full-mask butterfly -----------------------------
__global__ void shuffle_missing_lane(float* out) {
  float v = static_cast<float>(threadIdx.x);
  if (prim::lane_id() != 31) v += __shfl_xor_sync(kFull, v, 1);  // the bug: the mask names lane 31
  out[threadIdx.x] = v;
}

EMU_TEST(planted_shuffle_missing_lane) {
  std::vector<float> out(32);
  EXPECT_FAULT(emu::launch({dim3(1), dim3(32)}, shuffle_missing_lane, out.data()), "deadlock",
               "threads 0-30 (warp 0 lanes 0-30): waits at __shfl_xor_sync mask 0xffffffff, ",
               emu::testing::site_of(__FILE__, "the bug: the mask names lane 31"),
               "thread 31 (warp 0 lane 31): exited");
}

// The same lane missing, but it goes on to a barrier instead of exiting: still a deadlock, with both sites.
__global__ void shuffle_missing_lane_then_barrier(float* out) {
  float v = static_cast<float>(threadIdx.x);
  if (prim::lane_id() != 31) v += __shfl_xor_sync(kFull, v, 1);
  __syncthreads();
  out[threadIdx.x] = v;
}

EMU_TEST(planted_shuffle_missing_lane_at_barrier) {
  std::vector<float> out(32);
  EXPECT_FAULT(emu::launch({dim3(1), dim3(32)}, shuffle_missing_lane_then_barrier, out.data()), "deadlock",
               "waits at __shfl_xor_sync", "thread 31 (warp 0 lane 31): waits at __syncthreads");
}

// ---- 4. A missing grid sync: phase 2 reads what other blocks write in phase 1 --------------------------
template <bool kGridSync>
__global__ void two_phase(const float* x, float* partial, float* out, int nblocks) {
  // Phase 1: each block sums its slice (thread 0 writes the block's partial sum).
  __shared__ float s[64];
  s[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0.0f;
    for (unsigned i = 0; i < blockDim.x; ++i) sum += s[i];
    partial[blockIdx.x] = sum;
  }
  if constexpr (kGridSync) prim::grid_sync();  // the bug when absent: other blocks' partials may not exist yet
  // Phase 2: every block needs the total.
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int b = 0; b < nblocks; ++b) total += partial[b];
    out[blockIdx.x] = total;
  }
}

bool two_phase_is_right(void (*kernel)(const float*, float*, float*, int)) {
  const int nb = 4;
  std::vector<float> x(nb * 64), partial(nb, 0.0f), out(nb, -1.0f);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7);
  emu::LaunchConfig cfg{dim3(nb), dim3(64)};
  cfg.cooperative = true;
  emu::launch(cfg, kernel, x.data(), partial.data(), out.data(), nb);
  float want = 0.0f;
  for (float v : x) want += v;
  for (float v : out) {
    if (v != want) return false;
  }
  return true;
}

EMU_TEST(grid_sync_present_is_clean) {
  for (emu::Order o : {emu::Order::forward, emu::Order::reverse, emu::Order::random}) {
    emu::set_schedule({o, 3});
    CHECK(two_phase_is_right(two_phase<true>));
  }
}

EMU_PLANTED_RACE(planted_missing_grid_sync, "two_phase") {
  under_schedules("a missing grid sync", [] { return two_phase_is_right(two_phase<false>); });
}

// ---- Misuses next to them ------------------------------------------------------------------------------
__global__ void grid_sync_not_cooperative(int* out) {
  prim::grid_sync();
  if (threadIdx.x == 0) out[blockIdx.x] = 1;
}

EMU_TEST(grid_sync_outside_a_cooperative_launch_faults) {
  std::vector<int> out(2);
  EXPECT_FAULT(emu::launch({dim3(2), dim3(32)}, grid_sync_not_cooperative, out.data()), "not cooperative");
}

__global__ void grid_sync_skipped_by_a_block(int* out) {
  if (blockIdx.x != 1) prim::grid_sync();  // block 1 exits without it
  if (threadIdx.x == 0) out[blockIdx.x] = 1;
}

EMU_TEST(grid_sync_skipped_by_a_block_faults) {
  std::vector<int> out(3);
  emu::LaunchConfig cfg{dim3(3), dim3(32)};
  cfg.cooperative = true;
  EXPECT_FAULT(emu::launch(cfg, grid_sync_skipped_by_a_block, out.data()), "grid sync never completes", "(1,0,0)");
}

__global__ void lane_outside_its_mask(int* out) {
  out[threadIdx.x] = __shfl_sync(0x0000ffffu, static_cast<int>(threadIdx.x), 0);  // lanes 16-31 not in mask
}

EMU_TEST(lane_outside_its_own_mask_faults) {
  std::vector<int> out(32);
  EXPECT_FAULT(emu::launch({dim3(1), dim3(32)}, lane_outside_its_mask, out.data()), "is not in its mask");
}

__global__ void reads_lane_outside_mask(int* out) {
  const unsigned mask = threadIdx.x < 16 ? 0x0000ffffu : 0xffff0000u;
  out[threadIdx.x] = __shfl_xor_sync(mask, static_cast<int>(threadIdx.x), 16);  // partner in the other half
}

EMU_TEST(shuffle_from_a_lane_outside_the_mask_faults) {
  std::vector<int> out(32);
  EXPECT_FAULT(emu::launch({dim3(1), dim3(32)}, reads_lane_outside_mask, out.data()), "which is not in the mask");
}

__global__ void full_mask_in_partial_warp(int* out) {
  out[threadIdx.x] = static_cast<int>(__ballot_sync(kFull, 1));  // 48 threads: warp 1 has lanes 0-15 only
}

EMU_TEST(mask_naming_missing_lanes_faults) {
  std::vector<int> out(48);
  EXPECT_FAULT(emu::launch({dim3(1), dim3(48)}, full_mask_in_partial_warp, out.data()),
               "which the block does not have");
}

// ---- A livelock: a spin on a flag nobody sets ends in the watchdog's report, not in a hung CI ----------
__global__ void spin_forever(const std::uint32_t* flag) {
  while (prim::ld_acquire_gpu(flag) == 0) {  // the bug: nothing ever sets the flag
  }
}

EMU_TEST_ABORTS(planted_livelock_watchdog, "spins at prim::ld_acquire_gpu") {
  setenv("FASTLSTM_EMU_TIMEOUT_S", "1", 1);
  std::uint32_t flag = 0;
  emu::launch({dim3(1), dim3(2)}, spin_forever, &flag);
}

}  // namespace
