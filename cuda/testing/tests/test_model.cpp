// The execution model's own semantics, each against an independent statement of CUDA's rules: indices,
// shared memory, barriers and their reductions, every shuffle mode and width (the CUDA Programming Guide's
// prose, not the PTX pseudo-code the model implements), votes and reductions, __syncwarp with partial
// masks, atomics, grid sync, clusters with distributed shared memory, release / acquire flags between
// blocks, and cp.async's completion at the wait.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "harness.h"

namespace {

namespace emu = fastlstm::emu;
namespace prim = fastlstm::cuda::prim;

constexpr unsigned kFull = 0xffffffffu;

// ---- Indices -------------------------------------------------------------------------------------------
__global__ void record_indices(unsigned* out) {
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned i = block * (blockDim.x * blockDim.y * blockDim.z) + thread;
  out[2 * i] = i + 1;
  out[2 * i + 1] = prim::lane_id() + 100 * (thread / 32);
}

EMU_TEST(indices_cover_a_3d_grid_once) {
  const dim3 grid(3, 2, 2), block(5, 4, 3);  // 60 threads: two warps, the second partial
  const unsigned n = 12 * 60;
  std::vector<unsigned> out(2 * n, 0);
  emu::launch({grid, block}, record_indices, out.data());
  for (unsigned i = 0; i < n; ++i) {
    CHECK_EQ(out[2 * i], i + 1);
    const unsigned t = i % 60;
    CHECK_EQ(out[2 * i + 1], t % 32 + 100 * (t / 32));
  }
}

// ---- Shared memory and barriers ------------------------------------------------------------------------
__global__ void rotate_dynamic(const float* in, float* out, int* poisoned) {
  float* s = prim::dynamic_smem<float>();
  const unsigned t = threadIdx.x, n = blockDim.x;
  if (t == 0) *poisoned = std::isnan(s[n - 1]) && reinterpret_cast<std::uintptr_t>(s) % 128 == 0;
  __syncthreads();
  s[t] = in[blockIdx.x * n + t];
  __syncthreads();
  out[blockIdx.x * n + t] = s[(t + 1) % n];
}

EMU_TEST(dynamic_shared_memory_is_per_block_poisoned_and_aligned) {
  std::vector<float> in(3 * 96), out(3 * 96);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
  int poisoned = 0;
  emu::launch({dim3(3), dim3(96), 96 * sizeof(float)}, rotate_dynamic, in.data(), out.data(), &poisoned);
  CHECK(poisoned == 1);
  for (std::size_t i = 0; i < in.size(); ++i) CHECK_EQ(out[i], in[(i / 96) * 96 + (i % 96 + 1) % 96]);
}

__global__ void barrier_reductions(int* out) {
  const int t = static_cast<int>(threadIdx.x);
  const int count = __syncthreads_count(t % 3 == 0);
  const int all = __syncthreads_and(t < 1000);
  const int none = __syncthreads_and(t != 5);
  const int any = __syncthreads_or(t == 70);
  if (t == 0) {
    out[0] = count;
    out[1] = all;
    out[2] = none;
    out[3] = any;
  }
}

EMU_TEST(barrier_reductions_count_and_or) {
  std::vector<int> out(4, -1);
  emu::launch({dim3(1), dim3(100)}, barrier_reductions, out.data());
  CHECK_EQ(out[0], 34);
  CHECK_EQ(out[1], 1);
  CHECK_EQ(out[2], 0);
  CHECK_EQ(out[3], 1);
}

__global__ void early_exit_then_barrier(int* out) {
  if (threadIdx.x >= 40) return;  // exited threads count as arrived, as on hardware
  __shared__ int s[64];
  s[threadIdx.x] = static_cast<int>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = s[39 - threadIdx.x];
}

EMU_TEST(exited_threads_do_not_block_a_barrier) {
  std::vector<int> out(64, -1);
  emu::launch({dim3(1), dim3(64)}, early_exit_then_barrier, out.data());
  for (int i = 0; i < 40; ++i) CHECK_EQ(out[i], 39 - i);
}

// ---- Shuffles: every mode and width against the Programming Guide's rules -------------------------------
enum Mode { kIdx, kUp, kDown, kXor };

template <Mode M, int W>
__global__ void shuffle(const int* arg, int* out) {
  const int lane = static_cast<int>(threadIdx.x), v = 1000 + lane;
  int r = 0;
  if constexpr (M == kIdx) r = __shfl_sync(kFull, v, arg[lane], W);
  if constexpr (M == kUp) r = __shfl_up_sync(kFull, v, static_cast<unsigned>(arg[0]), W);
  if constexpr (M == kDown) r = __shfl_down_sync(kFull, v, static_cast<unsigned>(arg[0]), W);
  if constexpr (M == kXor) r = __shfl_xor_sync(kFull, v, arg[0], W);
  out[lane] = r;
}

// The source lane by the Guide: idx reads lane srcLane % width of the caller's segment; up / down leave the
// value unchanged when the source would leave the segment; xor may read an earlier segment but returns the
// caller's own value for a later one.
int guide_source(Mode m, int lane, int b, int w) {
  const int seg = lane / w * w;
  switch (m) {
    case kIdx:
      return seg + b % w;
    case kUp:
      return lane % w >= b ? lane - b : lane;
    case kDown:
      return lane % w + b < w ? lane + b : lane;
    case kXor:
      return (lane ^ b) >= seg + w ? lane : (lane ^ b);
  }
  return -1;
}

template <Mode M, int W>
void check_shuffle() {
  for (int b : {0, 1, 2, 3, 5, 8, 13, 16, 31}) {
    std::vector<int> arg(32), out(32, -1);
    for (int l = 0; l < 32; ++l) arg[l] = M == kIdx ? (l * 7 + b) % 41 : b;  // idx: per-lane sources, some >= 32
    emu::launch({dim3(1), dim3(32)}, shuffle<M, W>, arg.data(), out.data());
    for (int l = 0; l < 32; ++l) {
      const int want = 1000 + guide_source(M, l, M == kIdx ? arg[l] % 32 : b, W);
      if (out[l] != want) {
        emu::testing::fail(__FILE__, __LINE__,
                           "mode " + std::to_string(M) + " width " + std::to_string(W) + " b " + std::to_string(b) +
                               " lane " + std::to_string(l) + ": " + std::to_string(out[l]) + " vs " +
                               std::to_string(want));
      }
    }
  }
}

template <Mode M>
void check_widths() {
  check_shuffle<M, 32>();
  check_shuffle<M, 16>();
  check_shuffle<M, 8>();
  check_shuffle<M, 4>();
  check_shuffle<M, 2>();
  check_shuffle<M, 1>();
}

EMU_TEST(shuffles_every_mode_and_width) {
  check_widths<kIdx>();
  check_widths<kUp>();
  check_widths<kDown>();
  check_widths<kXor>();
}

// Two independent halves of a warp, each shuffling with its own mask; 64-bit and float payloads.
__global__ void split_warp_reduce(double* out) {
  const unsigned lane = prim::lane_id();
  const unsigned mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  double v = lane;
  for (int off = 8; off > 0; off /= 2) v += __shfl_xor_sync(mask, v, off);
  float f = static_cast<float>(lane);
  f = __shfl_down_sync(mask, f, 1, 16);
  __syncwarp();
  out[lane] = v + 1000.0 * f;
}

EMU_TEST(shuffles_in_split_warps_and_wide_types) {
  std::vector<double> out(32);
  emu::launch({dim3(1), dim3(32)}, split_warp_reduce, out.data());
  for (unsigned l = 0; l < 32; ++l) {
    const double sum = l < 16 ? 120.0 : 376.0;
    const double down = (l % 16) + 1 < 16 ? l + 1.0 : l;
    CHECK_EQ(out[l], sum + 1000.0 * down);
  }
}

// ---- Votes and reductions ------------------------------------------------------------------------------
__global__ void votes(unsigned* out) {
  const unsigned lane = prim::lane_id();
  out[0 * 32 + lane] = __ballot_sync(kFull, lane % 3 == 0);
  out[1 * 32 + lane] = static_cast<unsigned>(__any_sync(kFull, lane == 17));
  out[2 * 32 + lane] = static_cast<unsigned>(__all_sync(kFull, lane < 32));
  out[3 * 32 + lane] = static_cast<unsigned>(__all_sync(kFull, lane != 4));
  out[4 * 32 + lane] = __reduce_add_sync(kFull, lane);
  out[5 * 32 + lane] = __reduce_max_sync(kFull, lane * 3u);
  out[6 * 32 + lane] = static_cast<unsigned>(__reduce_min_sync(kFull, static_cast<int>(lane) - 7));
  out[7 * 32 + lane] = lane < 8 ? __ballot_sync(0xffu, lane & 1u) : __ballot_sync(~0xffu, 1);
}

EMU_TEST(votes_and_reductions) {
  std::vector<unsigned> out(8 * 32);
  emu::launch({dim3(1), dim3(32)}, votes, out.data());
  for (unsigned l = 0; l < 32; ++l) {
    CHECK_EQ(out[l], 0x49249249u);
    CHECK_EQ(out[32 + l], 1u);
    CHECK_EQ(out[64 + l], 1u);
    CHECK_EQ(out[96 + l], 0u);
    CHECK_EQ(out[128 + l], 496u);
    CHECK_EQ(out[160 + l], 93u);
    CHECK_EQ(out[192 + l], static_cast<unsigned>(-7));
    CHECK_EQ(out[224 + l], l < 8 ? 0xaau : ~0xffu);
  }
}

// ---- Atomics, and a spin-lock whose spin must yield --------------------------------------------------
__global__ void atomics(int* counter, float* fsum, unsigned* mx, int* lock, int* guarded) {
  atomicAdd(counter, 1);
  atomicAdd(fsum, 0.5f);
  atomicMax(mx, blockIdx.x * 1000u + threadIdx.x);
  if (threadIdx.x % 32 == 0) {  // one lane per warp: a spin-lock among lanes of one warp would deadlock
    while (atomicCAS(lock, 0, 1) != 0) {
    }
    // CUDA's atomics are relaxed: the lock alone orders nothing (a plain += here is a race, and
    // ThreadSanitizer says so), so the guarded update is atomic too; the point is that the spin yields.
    atomicAdd(guarded, 1);
    atomicExch(lock, 0);
  }
}

EMU_TEST(atomics_and_a_spin_lock) {
  int counter = 0, lock = 0, guarded = 0;
  float fsum = 0.0f;
  unsigned mx = 0;
  emu::launch({dim3(3), dim3(64)}, atomics, &counter, &fsum, &mx, &lock, &guarded);
  CHECK_EQ(counter, 192);
  CHECK_EQ(fsum, 96.0f);
  CHECK_EQ(mx, 2063u);
  CHECK_EQ(guarded, 6);
}

// ---- Grid sync over many steps (the recurrence's pattern) and release / acquire between blocks ----------
__global__ void steps_with_grid_sync(float* state, int steps, int nblocks) {
  // Each step every block reads all blocks' previous values and writes its own next value (double buffer).
  for (int s = 0; s < steps; ++s) {
    const float* cur = state + (s % 2) * nblocks;
    float* next = state + ((s + 1) % 2) * nblocks;
    if (threadIdx.x == 0) {
      float sum = 0.0f;
      for (int b = 0; b < nblocks; ++b) sum += cur[b];
      next[blockIdx.x] = sum / static_cast<float>(nblocks) + 1.0f;
    }
    prim::grid_sync();
  }
}

EMU_TEST(grid_sync_across_steps) {
  for (emu::Order o : {emu::Order::forward, emu::Order::reverse, emu::Order::random}) {
    emu::set_schedule({o, 5});
    const int nb = 5, steps = 6;
    std::vector<float> state(2 * nb, 0.0f);
    emu::LaunchConfig cfg{dim3(nb), dim3(64)};
    cfg.cooperative = true;
    emu::launch(cfg, steps_with_grid_sync, state.data(), steps, nb);
    for (int b = 0; b < nb; ++b) CHECK_EQ(state[(steps % 2) * nb + b], static_cast<float>(steps));
  }
}

__global__ void flag_handoff(std::uint32_t* flag, int* data, int* seen) {
  if (threadIdx.x != 0) return;
  if (blockIdx.x == 0) {
    *data = 42;
    prim::st_release_gpu(flag, 1);
  } else {
    while (prim::ld_acquire_gpu(flag) == 0) {
    }
    *seen = *data;
  }
}

EMU_TEST(release_acquire_flag_between_blocks) {
  for (emu::Order o : {emu::Order::forward, emu::Order::reverse}) {  // reverse: the reader spins first
    emu::set_schedule({o, 1});
    std::uint32_t flag = 0;
    int data = 0, seen = 0;
    emu::LaunchConfig cfg{dim3(2), dim3(32)};
    cfg.cooperative = true;  // co-resident: a spin on another block is legal only then
    emu::launch(cfg, flag_handoff, &flag, &data, &seen);
    CHECK_EQ(seen, 42);
  }
}

// ---- Clusters and distributed shared memory ------------------------------------------------------------
__global__ void cluster_exchange(int* out) {
  int* s = prim::dynamic_smem<int>();
  const unsigned rank = prim::cluster_rank(), n = prim::cluster_blocks();
  s[threadIdx.x] = static_cast<int>(1000 * blockIdx.x + threadIdx.x);
  prim::cluster_sync();
  const int* peer = prim::map_shared_rank(s, (rank + 1) % n);
  const int v = peer[threadIdx.x];
  prim::cluster_sync();  // the peer must not exit (or overwrite) while it is read
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

EMU_TEST(clusters_exchange_through_distributed_shared_memory) {
  std::vector<int> out(8 * 32, -1);
  emu::LaunchConfig cfg{dim3(8), dim3(32), 32 * sizeof(int)};
  cfg.cluster = dim3(4);
  emu::launch(cfg, cluster_exchange, out.data());
  for (int b = 0; b < 8; ++b) {
    const int peer = (b / 4) * 4 + (b % 4 + 1) % 4;
    for (int t = 0; t < 32; ++t) CHECK_EQ(out[b * 32 + t], 1000 * peer + t);
  }
}

// ---- cp.async: the copy lands at the wait that covers its group -------------------------------------------
__global__ void async_copies(const float* in, float* out) {
  float* s = prim::dynamic_smem<float>();
  const unsigned t = threadIdx.x;
  prim::cp_async_16(s + 4 * t, in + 4 * t);
  prim::cp_async_commit();
  prim::cp_async_16(s + 64 + 4 * t, in + 64 + 4 * t, t % 2 == 0);  // odd threads zero-fill
  prim::cp_async_commit();
  out[t] = s[4 * t];  // before any wait: still the poison
  prim::cp_async_wait<1>();
  out[16 + t] = s[4 * t];       // the first group has landed
  out[32 + t] = s[64 + 4 * t];  // the second has not
  prim::cp_async_wait<0>();
  out[48 + t] = s[64 + 4 * t];
}

EMU_TEST(cp_async_completes_at_its_wait) {
  std::vector<float> in(128), out(64);
  for (int i = 0; i < 128; ++i) in[i] = static_cast<float>(i + 1);
  emu::launch({dim3(1), dim3(16), 128 * sizeof(float)}, async_copies, in.data(), out.data());
  for (int t = 0; t < 16; ++t) {
    CHECK(std::isnan(out[t]));
    CHECK_EQ(out[16 + t], in[4 * t]);
    CHECK(std::isnan(out[32 + t]));
    CHECK_EQ(out[48 + t], t % 2 == 0 ? in[64 + 4 * t] : 0.0f);
  }
}

// ---- Conversions: the host references of the cvt instructions ------------------------------------------
EMU_TEST(conversions_round_as_the_isa_says) {
  using prim::bf16_bits;
  using prim::f16_bits;
  using prim::tf32_bits;
  CHECK_EQ(bf16_bits(1.0f), 0x3f80);
  CHECK_EQ(bf16_bits(prim::bits_float(0x3f808000u)), 0x3f80);  // tie -> even
  CHECK_EQ(bf16_bits(prim::bits_float(0x3f818000u)), 0x3f82);  // tie -> even (up)
  CHECK_EQ(bf16_bits(prim::bits_float(0x7f7fffffu)), 0x7f80);  // rounds to infinity
  CHECK_EQ(bf16_bits(NAN), 0x7fff);
  CHECK_EQ(tf32_bits(prim::bits_float(0x3f801000u)), 0x3f802000u);  // tie -> away from zero
  CHECK_EQ(tf32_bits(prim::bits_float(0xbf800fffu)), 0xbf800000u);
  CHECK_EQ(tf32_bits(INFINITY), 0x7f800000u);
#if defined(__FLT16_MAX__)
  // f16: every float32 sample against the compiler's own IEEE conversion (round to nearest even).
  std::uint32_t u = 0x12345678u;
  for (int i = 0; i < 200000; ++i) {
    u = u * 1664525u + 1013904223u;
    const float x = prim::bits_float(u);
    if (std::isnan(x)) continue;
    const auto h = static_cast<_Float16>(x);
    std::uint16_t want;
    std::memcpy(&want, &h, 2);
    CHECK_EQ(f16_bits(x), want);
    CHECK(prim::f16_float(want) == static_cast<float>(h));
  }
#endif
  CHECK_EQ(f16_bits(65519.0f), 0x7bff);
  CHECK_EQ(f16_bits(65520.0f), 0x7c00);
  CHECK_EQ(f16_bits(prim::bits_float(0x33000001u)), 0x0001);  // just over half the smallest subnormal
}

}  // namespace
