// The CPU engine's packed weights and saved training state.
#pragma once

#include <atomic>
#include <cstddef>
#include <vector>

#include "common/memory.h"
#include "cpu/family.h"
#include "cpu/rows.h"
#include "fastlstm/engine.h"

namespace fastlstm::cpu {

// Weights packed for one kernel family and cell. Layout per layer and direction (U = the family's units per
// vector, NB = ceil(H/U) unit blocks, G = the cell's gates, Hp = NB*U), all in the family's weight format:
//   w_ih [NB][I][G][U], w_hh [NB][Hout][G][U]: gate-interleaved panels, units >= H zero;
//   bias [NB][G][U] = b_ih + b_hh; peep [3][Hp] (the cell's per-unit parameters); w_hr [ceil(P/U)][H][U].
// Training adds the transposed panels backward needs: w_ih_t [ceil(I/U)][G*Hp][U], w_hh_t [ceil(Hout/U)][G*Hp][U]
// (rows in the packed gate order) and w_hr_t [NB][P][U].
struct PackedModel final : PackedWeights {
  const KernelFamily* family = nullptr;
  Cell cell = Cell::kLstm;
  int units = 1;    // U
  int gates = 4;    // G
  struct Offsets {  // bytes into data
    std::size_t w_ih = 0, w_hh = 0, bias = 0, peep = 0, w_hr = 0, w_ih_t = 0, w_hh_t = 0, w_hr_t = 0;
  };
  std::vector<Offsets> layers;  // [k * D + d]
  AlignedBuffer data;
  // The direction the next forward call's first weight pass runs (DirTask::first_down): opposite to the
  // direction the last call's pass ended in, so that consecutive calls (streaming steps above all) start on
  // the panels still in cache. Only an order of independent blocks: no result depends on it.
  mutable std::atomic<bool> next_down{false};
  const void* at(std::size_t offset) const { return static_cast<const char*>(data.data()) + offset; }
  const CellKernels& kernels() const { return family->cells[static_cast<int>(cell)]; }
};

// What a training forward keeps for backward: per layer and direction the post-activation gates
// [steps][B][G*Hp] and cell states [steps][B][Hp] and the initial state; per layer its input
// [steps][B][width] (rows sorted by length). That is (5*Hp + width) * B values per step, layer and
// direction at most (LSTM); h, tanh(c) and everything else are recomputed by backward.
struct TrainState final : SavedState {
  const KernelFamily* family = nullptr;
  RowOrder order;
  std::int64_t h_ld = 0, c_ld = 0;
  struct Saved {  // byte offsets into data, per [k * D + d]
    std::size_t gates, c, h0, c0;
  };
  std::vector<Saved> saved;
  std::vector<std::size_t> inputs;  // byte offsets of each layer's input
  char* base = nullptr;             // the state: `own`, or a caller's buffer it only views
  AlignedBuffer own;
  char* at(std::size_t offset) const { return base + offset; }
};

// Lays out the saved state of a call of T steps whose rows run in `order`, in `buffer` (`bytes` long, 64-byte
// aligned, at least saved_state_bytes(.., T, ..)) or, when buffer is null, in memory of its own. for_writing (a
// training forward): the bytes of a caller's buffer the forward will not write are zeroed, so its content is
// a function of the call's inputs. Throws std::invalid_argument naming `saved` when the buffer is too small or
// misaligned.
void layout_train_state(TrainState& st, const PackedModel& m, const RowOrder& order, void* buffer, std::size_t bytes,
                        bool for_writing);

// Packing (pack.cpp): throws std::invalid_argument for a shape out of range, std::bad_alloc.
std::unique_ptr<PackedModel> pack_model(const KernelFamily& family, Cell cell, const ModelShape& shape,
                                        const RawLayer* layers, bool training);

// The drivers (forward.cpp, backward.cpp). They validate the arguments' values first (std::invalid_argument).
void run_forward(const PackedModel& m, const ForwardArgs& args);
std::unique_ptr<TrainState> run_forward_train(const PackedModel& m, const ForwardArgs& args, const void* const* masks,
                                              void* saved, std::size_t saved_bytes);
// Checks a call's lengths ([B] in [1, T], or null): std::invalid_argument naming `lengths`.
void check_lengths(const std::int64_t* lengths, int T, int B);
void run_backward(const PackedModel& m, const TrainState& state, const BackwardArgs& args);

// What a call of `steps` steps on B rows needs with every row alive (the most a call of that shape can
// need) on a team of nthreads: the forward's workspace, the saved state, backward's workspace.
struct Geometry {
  const KernelFamily* family;
  Cell cell;
  ModelShape shape;
};
std::size_t forward_workspace_bytes(const Geometry& g, int steps, int B, int nthreads, bool train);
// The arrays a call returns (y, h_n, c_n; train: backward's dx, dh0, dc0 and the parameter gradients too).
std::size_t output_bytes(const ModelShape& s, int T, int B, std::size_t elem, bool train);
std::size_t saved_state_bytes(const Geometry& g, int steps, int B);
std::size_t backward_workspace_bytes(const Geometry& g, int steps, int B, int nthreads);

}  // namespace fastlstm::cpu
