// The CPU engine's public interface: the plain structs the bindings fill, and the entry points.
// No Python types here or anywhere below; the bindings are the only pybind11 file.
//
// GENERAL NOTES (the letters of API.md)
//   T time steps, B batch, I input size, H hidden size, P proj_size, Hout = P if P > 0 else H,
//   D = 2 if bidirectional else 1, L layers, k layer index, d direction (0 forward, 1 reverse).
//   Gate order everywhere (weights, biases, pre-activations z): i, f, g, o, blocks of H (torch's order).
//   Per step:  z = x_t W_ih^T + (b_ih + b_hh) + h_{t-1} W_hh^T;  z_i += p_i c_{t-1};  z_f += p_f c_{t-1};
//              c_t = sigmoid(z_f) c_{t-1} + sigmoid(z_i) tanh(z_g);  z_o += p_o c_t;
//              h_t = sigmoid(z_o) tanh(c_t)  [then h_t = h_t W_hr^T with a projection].
//   Summation order is fixed per output element (bias, then x_t W_ih^T over i ascending, then h_{t-1} W_hh^T
//   over k ascending), independent of the thread count and of which rows share a tile: every result is
//   bitwise reproducible, whatever the thread count, batch composition or call path (step or sequence).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

#include "fastlstm/isa.h"

namespace fastlstm::cpu {

enum class DType : int { kF32 = 0, kF64 = 1 };
inline std::size_t dtype_size(DType t) { return t == DType::kF32 ? 4 : 8; }

struct ModelShape {
  int input_size = 0, hidden_size = 0, num_layers = 1, proj_size = 0;
  bool bidirectional = false, bias = true, peephole = false;
  int directions() const { return bidirectional ? 2 : 1; }
  int out_size() const { return proj_size > 0 ? proj_size : hidden_size; }
  int layer_input(int k) const { return k == 0 ? input_size : directions() * out_size(); }
};

// One layer and direction as the user holds it: row-major, contiguous, in the model's dtype.
//   w_ih [4H, layer_input]  w_hh [4H, Hout]  b_ih, b_hh [4H] or null  w_hr [P, H] or null
//   p_i, p_f, p_o [H] or null (all three or none)
struct RawLayer {
  const void *w_ih = nullptr, *w_hh = nullptr, *b_ih = nullptr, *b_hh = nullptr, *w_hr = nullptr;
  const void *p_i = nullptr, *p_f = nullptr, *p_o = nullptr;
};

// A 64-byte aligned byte buffer, zero-initialised unless asked not to be (throws std::bad_alloc).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t bytes, bool zero = true);
  AlignedBuffer(AlignedBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();
  void* data() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  void* p_ = nullptr;
  std::size_t n_ = 0;
};

// Weights packed for one kernel family and dtype; immutable once built, shared by concurrent calls.
// Layout per layer and direction (U = the family's units per vector, NB = ceil(H/U) unit blocks):
//   w_ih [NB][I][4][U], w_hh [NB][Hout][4][U]: gate-interleaved panels, units >= H zero;
//   bias [NB][4][U] = b_ih + b_hh; peep [3][NB*U] (i, f, o); w_hr [ceil(P/U)][H][U].
struct PackedModel {
  ModelShape shape;
  Isa isa = Isa::kScalar;
  DType dtype = DType::kF32;
  int units = 1;  // U
  bool training = false;  // also holds the transposed panels backward needs
  // Element offsets into data. Training adds w_ih_t [ceil(I/U)][4*NB*U][U], w_hh_t [ceil(Hout/U)][4*NB*U][U]
  // (rows in the packed gate order) and w_hr_t [NB][P][U].
  struct Offsets { std::size_t w_ih, w_hh, bias, peep, w_hr, w_ih_t = 0, w_hh_t = 0, w_hr_t = 0; };
  std::vector<Offsets> layers;  // [k * D + d]
  std::size_t packed_bytes = 0;
  AlignedBuffer data;
  const void* at(std::size_t elem_offset) const {
    return static_cast<const char*>(data.data()) + elem_offset * dtype_size(dtype);
  }
};

// Packs `layers` ([k * D + d], shape.num_layers * D entries) for `isa`. Throws std::invalid_argument
// for a shape out of range, std::bad_alloc when memory cannot be had.
std::unique_ptr<PackedModel> pack_model(const ModelShape& shape, DType dtype, Isa isa, const RawLayer* layers,
                                        bool training = false);

// One inference call. Element (t, b, i) of x is x[t * x_st + b * x_sb + i]; y likewise with y_st, y_sb
// (directions concatenated along the last axis). x and y must not overlap.
//   h0 [D*L, B, Hout], c0 [D*L, B, H]: contiguous, or null for zeros.   h_n, c_n: same shapes, written.
//   lengths [B] in [1, T] or null (then all T). y[t, b] = 0 for t >= lengths[b].
struct ForwardArgs {
  const PackedModel* model = nullptr;
  int T = 0, B = 0;
  const void* x = nullptr;
  std::int64_t x_st = 0, x_sb = 0;
  const void *h0 = nullptr, *c0 = nullptr;
  const std::int64_t* lengths = nullptr;
  void* y = nullptr;
  std::int64_t y_st = 0, y_sb = 0;
  void *h_n = nullptr, *c_n = nullptr;
  int num_threads = 1;
};
void forward(const ForwardArgs& args);

// What a training forward keeps for backward: per layer and direction the post-activation gates
// [steps][B][4*Hp] and cell states [steps][B][Hp] (Hp = H rounded up to the vector width) and the initial
// state; per layer its input [steps][B][width] (rows sorted by length). That is (5*Hp + width) * B values per
// step, layer and direction at most; h, tanh(c) and everything else are recomputed by backward.
struct TrainState {
  ModelShape shape;
  DType dtype = DType::kF32;
  Isa isa = Isa::kScalar;
  int T = 0, B = 0, steps = 0;
  std::int64_t h_ld = 0, c_ld = 0;
  std::vector<std::int64_t> lengths;  // empty: every sequence has T steps
  std::vector<std::int32_t> perm;     // sorted row -> user row (with lengths)
  std::vector<std::int32_t> active;   // rows alive at t (with lengths)
  struct Saved { std::size_t gates, c, h0, c0; };  // byte offsets into data, per [k * D + d]
  std::vector<Saved> saved;
  std::vector<std::size_t> inputs;    // byte offsets of each layer's input
  AlignedBuffer data;
  char* at(std::size_t offset) const { return static_cast<char*>(data.data()) + offset; }
};

// The training forward: ForwardArgs' outputs, plus the saved state. masks[k] for k < L-1: the dropout mask
// applied to layer k's output, [T][B][D*Hout] contiguous in the user's row order; masks may be null.
std::unique_ptr<TrainState> forward_train(const ForwardArgs& args, const void* const* masks);

// Backpropagation through time of the forward that produced `state`. dy has y's layout (dy_st, dy_sb);
// dx likewise x's; dh_n/dc_n, dh0/dc0 as h_n/c_n (dh_n, dc_n may be null: zeros). Gradients are written,
// not accumulated, in the user's layouts; both bias gradients get the same values.
struct GradPointers {
  void *w_ih = nullptr, *w_hh = nullptr, *b_ih = nullptr, *b_hh = nullptr, *w_hr = nullptr;
  void *p_i = nullptr, *p_f = nullptr, *p_o = nullptr;
};
struct BackwardArgs {
  const PackedModel* model = nullptr;  // packed with training = true, for the state's isa and dtype
  const TrainState* state = nullptr;
  const void* dy = nullptr;
  std::int64_t dy_st = 0, dy_sb = 0;
  const void *dh_n = nullptr, *dc_n = nullptr;
  void* dx = nullptr;
  std::int64_t dx_st = 0, dx_sb = 0;
  void *dh0 = nullptr, *dc0 = nullptr;
  const void* const* masks = nullptr;  // those of forward_train
  const GradPointers* grads = nullptr;  // [L * D]
  int num_threads = 1;
};
void backward(const BackwardArgs& args);

// Element-wise activations of a kernel family, exposed for the accuracy tests. n elements, any n.
void activation(Isa isa, DType dtype, int which /*0 sigmoid, 1 tanh*/, const void* in, void* out, std::size_t n);

// The measured float32 FMA throughput of a kernel family on num_threads threads (GFLOP/s), from a
// register-only loop run for about `seconds`: the benchmark's peak.
double fma_peak_gflops(Isa isa, int num_threads, double seconds);

// The measured read bandwidth (GB/s, all threads together) of a kernel family's vector loads sweeping a
// private buffer of `bytes_per_thread` on each of num_threads threads, for about `seconds`: the bound of a
// call that streams that much weight per thread and step (L2-sized: the L2 rate; larger: L3 or DRAM).
double read_bandwidth_gbs(Isa isa, int num_threads, std::size_t bytes_per_thread, double seconds);

// The measured cost (microseconds) of one step's exchange on num_threads threads, as the recurrence does it:
// each thread writes its share of a `bytes` state vector, all meet at the barrier, each reads the whole
// vector. The per-step floor of a split recurrence beside the weight streaming, which cannot overlap it.
double step_exchange_us(int num_threads, std::size_t bytes, int steps);

// Thread team size used when a call does not say (FASTLSTM_NUM_THREADS, else the hardware's).
int default_num_threads();
void set_default_num_threads(int n);

}  // namespace fastlstm::cpu
