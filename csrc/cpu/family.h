// The interface between the CPU engine's drivers (forward.cpp, backward.cpp: baseline flags) and its kernel
// families (kernels/family_<isa>[_<precision>].cpp, each built with its own flags): plain structs and
// function pointers only. A kernel family is registered by (ISA, compute type, weight format) in registry.cpp;
// each family carries the kernels of every cell (kernels/cells/).
//
// ALIASING: every array of a task is distinct from every other unless a comment says otherwise; the drivers
// lay them out in disjoint workspace pieces.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fastlstm/isa.h"
#include "fastlstm/types.h"

namespace fastlstm::cpu {

class Barrier;                        // threads.h
void barrier_wait(Barrier* barrier);  // out of line, so kernel files never compile <atomic> code

// One layer and direction of one call, as seen by every thread of the group that runs it.
// Rows are in the driver's order (sorted by length, longest first), so the rows alive at time t are a
// prefix 0 .. active[t]-1 in both directions. Step s runs time t = s (forward) or steps-1-s (reverse),
// reads h[s & 1] and writes h[(s + 1) & 1] for the alive rows only.
struct DirTask {
  int steps = 0;                   // time steps run: the longest length
  int B = 0, I = 0, H = 0, P = 0;  // P = 0 without projection; Hout = P ? P : H
  bool reverse = false, peephole = false;
  const void* x = nullptr;  // x(t, r) = x + t * x_st + x_rows[r] * x_sb, I contiguous elements
  std::int64_t x_st = 0, x_sb = 0;
  const std::int32_t* x_rows = nullptr;  // [B], null = identity
  void* y = nullptr;                     // y(t, r) = y + t * y_st + y_rows[r] * y_sb, Hout contiguous elements
  std::int64_t y_st = 0, y_sb = 0;
  const std::int32_t* y_rows = nullptr;
  const std::int32_t* active = nullptr;  // [T] rows alive at time t, null = all B
  // Packed weights (pack.cpp's layouts); peep [3][c_ld]: the cell's per-unit parameters (LSTM: p_i, p_f, p_o).
  const void *w_ih = nullptr, *w_hh = nullptr, *bias = nullptr, *peep = nullptr, *w_hr = nullptr;
  void* h[2] = {nullptr, nullptr};  // [B][h_ld] state double buffer (Hout used)
  void* c = nullptr;                // [B][c_ld] cell state, updated in place
  void* hpre = nullptr;             // [B][c_ld] o * tanh(c) before the projection (P > 0 only)
  std::int64_t h_ld = 0, c_ld = 0;
  int chunk = 1;                 // steps per input-projection chunk
  std::int64_t group_bytes = 0;  // panel bytes (W_hh, W_ih) a pass of the row tiles covers at once (0: all of mine)
  bool first_down = false;       // the weight passes of step 0 run last block to first (then alternate)
  Barrier* barrier = nullptr;    // the group's barrier
  // Training forward only (null otherwise): per (t, r) at index t * B + r, the post-activation gates
  // [4 * c_ld] in the packed order [NB][4][U] and the new cell state [c_ld]; and a dropout mask applied to
  // the y written: y(t, r) *= mask + t * m_st + m_rows[r] * m_sb (Hout contiguous).
  void* save_gates = nullptr;
  void* save_c = nullptr;
  const void* mask = nullptr;
  std::int64_t m_st = 0, m_sb = 0;
  const std::int32_t* m_rows = nullptr;
};

// Backpropagation through time of one layer and direction (lstm_train.h). Saved arrays of the forward
// (read only, so backward may run again on the same state): gates [steps][B][4 * c_ld], c [steps][B][c_ld];
// dz [steps][B][4 * c_ld] is written. Rows as in DirTask.
struct BackTask {
  int steps = 0, B = 0, H = 0, P = 0;
  bool reverse = false, peephole = false;
  const std::int32_t* active = nullptr;
  const void* gates = nullptr;
  void* dz = nullptr;
  const void* csave = nullptr;
  const void* c0 = nullptr;  // [B][c_ld] the state before the first step
  const void* h0 = nullptr;  // [B][h_ld]
  const void* dy = nullptr;  // dy(t, r) = dy + t * dy_st + dy_rows[r] * dy_sb, Hout contiguous
  std::int64_t dy_st = 0, dy_sb = 0;
  const std::int32_t* dy_rows = nullptr;
  void* dh = nullptr;        // [B][h_ld] in: dh_n, out: dh0 (carried gradient of h)
  void* dc = nullptr;        // [B][c_ld] in: dc_n, out: dc0
  void* dpre = nullptr;      // [B][c_ld] gradient of o * tanh(c) (P > 0)
  void* hall = nullptr;      // [steps][B][h_ld] out: h_t recomputed, for dW_hh
  void* hpre_all = nullptr;  // [steps][B][c_ld] out: o * tanh(c_t) (P > 0), for dW_hr
  void* dh_save = nullptr;   // [steps][B][h_ld] out: dh_t (P > 0), for dW_hr
  const void *w_hh_t = nullptr, *w_hr = nullptr, *w_hr_t = nullptr, *peep = nullptr;  // packed
  std::int64_t h_ld = 0, c_ld = 0;
  int k_slice = 0;  // dh = dz W_hh in slices of k this long (0: one pass per row tile; see dh_k_slice)
  Barrier* barrier = nullptr;
};

// The weight gradients of one layer and direction, as sums over every live (t, r) row m in a fixed
// order (t ascending, r ascending): outputs in the packed, transposed order, each thread its own blocks.
struct GradTask {
  int M = 0, I = 0, H = 0, P = 0;
  bool peephole = false;
  const void* const* dz_rows = nullptr;     // [M] -> [4 * c_ld]
  const void* const* x_rows = nullptr;      // [M] -> [I] the layer input
  const void* const* hprev_rows = nullptr;  // [M] -> [Hout] h_{t-1}
  const void* const* cprev_rows = nullptr;  // [M] -> [c_ld] c_{t-1} (peephole)
  const void* const* c_rows = nullptr;      // [M] -> [c_ld] c_t (peephole)
  const void* const* dh_rows = nullptr;     // [M] -> [h_ld] dh_t (P > 0)
  const void* const* hpre_rows = nullptr;   // [M] -> [c_ld] o * tanh(c_t) (P > 0)
  void* gw_ih_t = nullptr;                  // [I][4 * c_ld]
  void* gw_hh_t = nullptr;                  // [Hout][4 * c_ld]
  void* gb = nullptr;                       // [4 * c_ld]
  void* gp = nullptr;                       // [3][c_ld] (i, f, o)
  void* gw_hr_t = nullptr;                  // [H][h_ld]
  std::int64_t h_ld = 0, c_ld = 0;
  void* const* work = nullptr;           // per team thread: its scratch (training_workspace bytes)
  static constexpr int kRowChunk = 128;  // rows per pass of the weight gradients (grads-inl.h)
};

// dX of a layer: dx(m) = sum over directions of dz_d(m) W_ih_d, times a dropout mask for layers > 0.
struct DxTask {
  int M = 0, I = 0, D = 1;
  std::int64_t K = 0;                                  // 4 * c_ld
  const void* const* dz_rows[2] = {nullptr, nullptr};  // [M] per direction
  void* const* dx_rows = nullptr;                      // [M] -> [I] out
  const void* const* mask_rows = nullptr;              // [M] -> [I] or null
  const void* w_ih_t[2] = {nullptr, nullptr};          // packed [ceil(I/U)][K][U]
  int k_slice = 0, m_slice = 0;  // the native product in blocks of k and rows this long (0: one pass per row tile)
};

// The kernels of one cell in one family. Thread `tid` of `nthreads`: the direction's group for run_direction
// and run_backward, the whole team for the others; each owns a contiguous range of unit blocks.
struct CellKernels {
  int gates = 0;  // vectors per unit block in the packed panels and saved gates (LSTM: 4, i f g o)
  // The whole sequence of one layer and direction, on a per-thread workspace of
  // direction_workspace(chunk, B, max_blocks, I, hout) bytes (max_blocks: the most unit blocks a thread owns).
  void (*run_direction)(const DirTask& task, int tid, int nthreads, void* workspace) = nullptr;
  std::size_t (*direction_workspace)(int chunk, int B, int max_blocks, int I, int hout) = nullptr;
  // Training (null: the family runs inference only). run_backward and run_dx get the calling thread's scratch
  // (run_grads finds it in GradTask::work): training_workspace(B, widest layer input, hout, c_ld) bytes each.
  void (*run_backward)(const BackTask& task, int tid, int nthreads, void* scratch) = nullptr;
  void (*run_grads)(const GradTask& task, int tid, int nthreads) = nullptr;
  void (*run_dx)(const DxTask& task, int tid, int nthreads, void* scratch) = nullptr;
  std::size_t (*training_workspace)(int B, int widest_input, int hout, std::int64_t c_ld) = nullptr;
};

// A kernel family: one ISA's kernels for one compute type and weight format.
struct KernelFamily {
  Isa isa = Isa::kScalar;
  CpuFeature feature = CpuFeature::kNone;  // needed beyond the ISA's baseline
  DType compute = DType::kF32;             // what products accumulate in, and the caller's arrays' type
  WeightFormat weights = WeightFormat::kF32;
  int units = 1;                 // U: hidden units per vector
  CellKernels cells[kNumCells];  // indexed by Cell
  // Element-wise sigmoid (which = 0) or tanh (1) of n values of the compute type, any n.
  void (*activation)(int which, const void* in, void* out, std::size_t n) = nullptr;
};

// Per ISA: the benchmark's measured bounds.
struct IsaProbes {
  double (*fma)(long iterations);                                   // float32 FLOPs of a register-only FMA loop
  double (*read)(const void* buf, std::size_t bytes, long passes);  // bytes read by repeated vector sweeps
};

// (static: every kernel file gets its own copy, so no wide-ISA instance can leak into baseline code.)
// The [begin, end) share of n items for member `tid` of `nthreads` (contiguous, sizes differ by <= 1).
static inline void split_range(int n, int tid, int nthreads, int* begin, int* end) {
  *begin = static_cast<int>(static_cast<std::int64_t>(n) * tid / nthreads);
  *end = static_cast<int>(static_cast<std::int64_t>(n) * (tid + 1) / nthreads);
}

}  // namespace fastlstm::cpu
