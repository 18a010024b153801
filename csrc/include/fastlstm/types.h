// The vocabulary every engine shares: element types, weight formats, precisions, cells and the shape of a
// model. Plain enums and structs only; no Python, no CUDA, no engine internals.
//
// LETTERS (used in every comment of the engines)
//   T time steps, B batch, I input size, H hidden size, P proj_size, Hout = P if P > 0 else H,
//   D = 2 if bidirectional else 1, L layers, k layer index, d direction (0 forward, 1 reverse).
//   Gate order everywhere (weights, biases, pre-activations z): i, f, g, o, blocks of H (torch's order).
#pragma once

#include <cstddef>

namespace fastlstm {

// An element type: of the arrays a caller passes (the module's dtype), of an engine's arithmetic, or of
// stored weights.
enum class DType : int { kF32 = 0, kF64 = 1, kBF16 = 2, kI8 = 3 };
inline constexpr int kNumDTypes = 4;
const char* dtype_name(DType t);  // "float32", "float64", "bfloat16", "int8"
std::size_t dtype_size(DType t);
bool dtype_from_name(const char* name, DType* out);

// How an engine stores packed weights. The compute type (a DType) says what products accumulate in; the
// two are separate keys: bf16 weights are multiplied with bf16-rounded activations and accumulated in fp32,
// int8 weights carry one fp32 scale per output row and accumulate in int32.
enum class WeightFormat : int { kF32 = 0, kF64 = 1, kBF16 = 2, kI8RowScaled = 3 };
const char* weight_format_name(WeightFormat w);

// The math used inside a call, chosen per module (`precision=`); parameters keep the module's dtype.
// kDefault is the dtype's own math (fp32 or fp64), the reference for every other mode.
enum class Precision : int { kDefault = 0, kBF16 = 1, kInt8 = 2, kTF32 = 3, kFP16 = 4 };
inline constexpr int kNumPrecisions = 5;
const char* precision_name(Precision p);  // "default", "bf16", "int8", "tf32", "fp16"
bool precision_from_name(const char* name, Precision* out);

// The recurrent cell: the epilogue of each step's GEMM and its backward (csrc/cpu/kernels/cells/).
enum class Cell : int { kLstm = 0 };
inline constexpr int kNumCells = 1;
const char* cell_name(Cell c);
bool cell_from_name(const char* name, Cell* out);

// The shape and options of a model (torch.nn.LSTM's hyper-parameters, plus peepholes).
struct ModelShape {
  int input_size = 0, hidden_size = 0, num_layers = 1, proj_size = 0;
  bool bidirectional = false, bias = true, peephole = false;
  int directions() const { return bidirectional ? 2 : 1; }
  int out_size() const { return proj_size > 0 ? proj_size : hidden_size; }
  int layer_input(int k) const { return k == 0 ? input_size : directions() * out_size(); }
};

// One layer and direction as the user holds it: row-major, contiguous, in the module's dtype.
//   w_ih [4H, layer_input]  w_hh [4H, Hout]  b_ih, b_hh [4H] or null  w_hr [P, H] or null
//   p_i, p_f, p_o [H] or null (all three or none)
struct RawLayer {
  const void *w_ih = nullptr, *w_hh = nullptr, *b_ih = nullptr, *b_hh = nullptr, *w_hr = nullptr;
  const void *p_i = nullptr, *p_f = nullptr, *p_o = nullptr;
};

// Where backward writes one layer and direction's parameter gradients, in RawLayer's layouts (null: the
// model has no such parameter).
struct GradPointers {
  void *w_ih = nullptr, *w_hh = nullptr, *b_ih = nullptr, *b_hh = nullptr, *w_hr = nullptr;
  void *p_i = nullptr, *p_f = nullptr, *p_o = nullptr;
};

}  // namespace fastlstm
