// The engine seam: one interface every backend implements (the CPU engine today, the CUDA sequence engine
// next). An engine is made for one key (the caller's dtype, the precision of its math, the cell) and packs
// weights, answers how much memory a call needs, and runs inference, the training forward and backward.
// Only the plain structs below cross it; the bindings are the only code that knows Python.
//
// Results of the CPU engine's fp32 and fp64 families: the summation order is fixed per output element (bias,
// then x_t W_ih^T over i ascending, then h_{t-1} W_hh^T over k ascending), independent of the thread count and
// of which rows share a tile, so every result is bitwise reproducible for any thread count, batch
// composition or call path (step or sequence); inference results are also identical across the fp32 (fp64)
// families of every ISA. Other precisions state their own promises (docs/design.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "fastlstm/types.h"

namespace fastlstm {

struct EngineKey {
  DType dtype = DType::kF32;  // the caller's arrays and parameters
  Precision precision = Precision::kDefault;
  Cell cell = Cell::kLstm;
};

// Weights packed by one engine for its kernels: immutable once built, shared by concurrent calls.
class PackedWeights {
 public:
  virtual ~PackedWeights() = default;
  ModelShape shape;
  bool training = false;        // also holds what backward needs
  std::size_t nbytes = 0;       // the packed form's size
  const void* owner = nullptr;  // what packed them: an engine refuses another's weights
};

// What a training forward keeps for backward. Immutable: backward may run on it more than once.
class SavedState {
 public:
  virtual ~SavedState() = default;
  ModelShape shape;
  int T = 0, B = 0;
  std::size_t nbytes = 0;
  const void* owner = nullptr;
};

// One forward call. Element (t, b, i) of x is x[t * x_st + b * x_sb + i]; y likewise with y_st, y_sb
// (directions concatenated along the last axis). x and y must not overlap.
//   x [T, B, I] (strided as above)   y [T, B, D*Hout] (strided), written; y[t, b] = 0 for t >= lengths[b]
//   h0 [D*L, B, Hout], c0 [D*L, B, H]: contiguous, or null for zeros.   h_n, c_n: the same shapes, written.
//   lengths [B] or null (then all T): each in [1, T] (the engine checks).
struct ForwardArgs {
  const PackedWeights* weights = nullptr;
  int T = 0, B = 0;
  const void* x = nullptr;
  std::int64_t x_st = 0, x_sb = 0;
  const void *h0 = nullptr, *c0 = nullptr;
  const std::int64_t* lengths = nullptr;
  void* y = nullptr;
  std::int64_t y_st = 0, y_sb = 0;
  void *h_n = nullptr, *c_n = nullptr;
  int num_threads = 1;
  void* stream = nullptr;  // CUDA engines: the cudaStream_t the call is ordered on (null: legacy default stream)
};

// Backpropagation through time of the forward that produced `state`. dy has y's layout (dy_st, dy_sb), dx
// x's; dh_n/dc_n and dh0/dc0 as h_n/c_n (dh_n, dc_n may be null: zeros). masks[k] (k < L-1, or null): the
// dropout mask the forward applied to layer k's output, [T][B][D*Hout] contiguous. Gradients are written,
// not accumulated, in the user's layouts ([L * D] GradPointers); both bias gradients get the same values.
struct BackwardArgs {
  const PackedWeights* weights = nullptr;  // packed with training = true
  const SavedState* state = nullptr;
  const void* dy = nullptr;
  std::int64_t dy_st = 0, dy_sb = 0;
  const void *dh_n = nullptr, *dc_n = nullptr;
  void* dx = nullptr;
  std::int64_t dx_st = 0, dx_sb = 0;
  void *dh0 = nullptr, *dc0 = nullptr;
  const void* const* masks = nullptr;
  const GradPointers* grads = nullptr;
  int num_threads = 1;
  void* stream = nullptr;  // as ForwardArgs::stream
};

// Bytes a call needs besides the packed weights: the outputs (allocated by the caller), the engine's
// workspace (freed when the call returns) and, for training, the saved state (kept for backward).
struct CallSizes {
  std::size_t outputs = 0, workspace = 0, saved = 0;
  std::size_t total() const {  // saturating: a sum past SIZE_MAX is more than any machine has
    const std::size_t max = static_cast<std::size_t>(-1);
    if (workspace > max - outputs || saved > max - outputs - workspace) return max;
    return outputs + workspace + saved;
  }
};

class Engine {
 public:
  virtual ~Engine() = default;
  // What runs, for messages and backends(): e.g. "cpu avx512, float32 math, float32 weights".
  virtual std::string name() const = 0;
  virtual const EngineKey& key() const = 0;
  virtual bool trains() const = 0;  // false: inference only (forward_train and backward throw)

  // Packs `layers` ([k * D + d], num_layers * D entries, the shapes of RawLayer). Throws
  // std::invalid_argument for a shape out of range, std::bad_alloc when memory cannot be had.
  virtual std::unique_ptr<PackedWeights> pack(const ModelShape& shape, const RawLayer* layers, bool training) const = 0;
  // What a call of T steps on B rows needs (train: the training forward and its backward), at most.
  virtual CallSizes sizes(const ModelShape& shape, int T, int B, bool train) const = 0;
  // Each call validates what its arguments' values must satisfy (std::invalid_argument naming the argument)
  // before anything is written.
  virtual void forward(const ForwardArgs& args) const = 0;
  // The training forward. masks[k] (k < L-1, or null): the dropout mask applied to layer k's output,
  // [T][B][D*Hout] contiguous. The saved state lives in memory of the engine's own, or in `saved` when given
  // (`saved_bytes` long, 64-byte aligned, at least sizes(..).saved: a framework's "reserve" tensor, as
  // cuDNN's RNN API has it); the returned object then only views it.
  virtual std::unique_ptr<SavedState> forward_train(const ForwardArgs& args, const void* const* masks,
                                                    void* saved = nullptr, std::size_t saved_bytes = 0) const = 0;
  // A view of a state forward_train wrote into a caller's buffer, for backward: the same weights, T, B and
  // lengths as that call (the engine checks sizes and lengths; other numbers give other gradients).
  virtual std::unique_ptr<SavedState> saved_view(const PackedWeights& weights, int T, int B,
                                                 const std::int64_t* lengths, void* saved,
                                                 std::size_t saved_bytes) const = 0;
  virtual void backward(const BackwardArgs& args) const = 0;
};

// Refuses, with std::bad_alloc carrying a message, a call whose `bytes` exceed what the machine can still
// back (MemAvailable + SwapFree): overcommitted memory would be promised now and the process killed later,
// when first touched. Calls under 64 MiB are not checked (reading /proc/meminfo costs ~30 us).
void check_available_memory(std::size_t bytes, const char* what);

// The error check_available_memory throws: a bad_alloc with a message ("x: needs 3.2 GiB, 1.1 GiB available").
class OutOfMemory : public std::bad_alloc {
 public:
  explicit OutOfMemory(std::string what) : what_(std::move(what)) {}
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};

}  // namespace fastlstm
