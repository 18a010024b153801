// Internal interface between the sequence driver (dispatch.cpp, baseline flags) and the kernel families
// (lstm_kernels_<isa>.cpp, each built with its own flags): plain structs and function pointers only.
#pragma once

#include <cstddef>
#include <cstdint>


namespace fastlstm::cpu {

class Barrier;  // threads.h
void barrier_wait(Barrier* barrier);  // out of line, so kernel files never compile <atomic> code

// One layer and direction of one call, as seen by every thread of the group that runs it.
// Rows are in the driver's order (sorted by length, longest first), so the rows alive at time t are a
// prefix 0 .. active[t]-1 in both directions. Step s runs time t = s (forward) or steps-1-s (reverse),
// reads h[s & 1] and writes h[(s + 1) & 1] for the alive rows only.
struct DirTask {
  int steps = 0;                   // time steps run: the longest length
  int B = 0, I = 0, H = 0, P = 0;  // P = 0 without projection; Hout = P ? P : H
  bool reverse = false, peephole = false;
  const void* x = nullptr;         // x(t, r) = x + t * x_st + x_rows[r] * x_sb, I contiguous elements
  std::int64_t x_st = 0, x_sb = 0;
  const std::int32_t* x_rows = nullptr;  // [B], null = identity
  void* y = nullptr;               // y(t, r) = y + t * y_st + y_rows[r] * y_sb, Hout contiguous elements
  std::int64_t y_st = 0, y_sb = 0;
  const std::int32_t* y_rows = nullptr;
  const std::int32_t* active = nullptr;  // [T] rows alive at time t, null = all B
  const void *w_ih = nullptr, *w_hh = nullptr, *bias = nullptr, *peep = nullptr, *w_hr = nullptr;  // packed
  void* h[2] = {nullptr, nullptr};  // [B][h_ld] state double buffer (Hout used)
  void* c = nullptr;                // [B][c_ld] cell state, updated in place
  void* hpre = nullptr;             // [B][c_ld] o * tanh(c) before the projection (P > 0 only)
  std::int64_t h_ld = 0, c_ld = 0;
  int chunk = 1;                    // steps per input-projection chunk
  Barrier* barrier = nullptr;       // the group's barrier
};

// Per-thread workspace of run_direction, in elements of the dtype: G [blocks][chunk * B][4U], then
// chunk * B row pointers.
std::size_t direction_workspace_bytes(const DirTask& task, int units, int max_blocks, std::size_t elem);

struct KernelTable {
  int units[2];  // U: hidden units per vector, per DType (f32, f64)
  // Runs the whole sequence of one layer and direction; thread `tid` of `nthreads` owns a contiguous
  // range of unit blocks (and of projection blocks). Workspace: direction_workspace_bytes.
  void (*run_direction[2])(const DirTask& task, int tid, int nthreads, void* workspace);
  void (*activation[2])(int which, const void* in, void* out, std::size_t n);
};

const KernelTable& kernels_scalar();
#if defined(FASTLSTM_HAVE_AVX2)
const KernelTable& kernels_avx2();
#endif
#if defined(FASTLSTM_HAVE_AVX512)
const KernelTable& kernels_avx512();
#endif

// (static: every kernel file gets its own copy, so no wide-ISA instance can leak into baseline code.)
// The [begin, end) share of n items for member `tid` of `nthreads` (contiguous, sizes differ by <= 1).
static inline void split_range(int n, int tid, int nthreads, int* begin, int* end) {
  *begin = static_cast<int>(static_cast<std::int64_t>(n) * tid / nthreads);
  *end = static_cast<int>(static_cast<std::int64_t>(n) * (tid + 1) / nthreads);
}

}  // namespace fastlstm::cpu
