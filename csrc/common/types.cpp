// Names of the shared vocabulary (types.h): one table each, parsed and printed from the same strings.
#include "fastlstm/types.h"

#include <cstring>

namespace fastlstm {
namespace {

template <class E, int N>
bool parse(const char* name, const char* const (&names)[N], E* out) {
  for (int i = 0; i < N; ++i) {
    if (std::strcmp(name, names[i]) == 0) {
      *out = static_cast<E>(i);
      return true;
    }
  }
  return false;
}

template <class E, int N>
const char* print(E value, const char* const (&names)[N]) {
  const int i = static_cast<int>(value);
  return i >= 0 && i < N ? names[i] : "unknown";
}

constexpr const char* kDTypes[kNumDTypes] = {"float32", "float64", "bfloat16", "int8"};
constexpr std::size_t kDTypeSizes[kNumDTypes] = {4, 8, 2, 1};
constexpr const char* kWeightFormats[] = {"float32", "float64", "bfloat16", "int8 (per-row scales)"};
constexpr const char* kPrecisions[kNumPrecisions] = {"default", "bf16", "int8", "tf32", "fp16"};
constexpr const char* kCells[kNumCells] = {"lstm"};

}  // namespace

const char* dtype_name(DType t) { return print(t, kDTypes); }
std::size_t dtype_size(DType t) { return kDTypeSizes[static_cast<int>(t)]; }
bool dtype_from_name(const char* name, DType* out) { return parse(name, kDTypes, out); }
const char* weight_format_name(WeightFormat w) { return print(w, kWeightFormats); }
const char* precision_name(Precision p) { return print(p, kPrecisions); }
bool precision_from_name(const char* name, Precision* out) { return parse(name, kPrecisions, out); }
const char* cell_name(Cell c) { return print(c, kCells); }
bool cell_from_name(const char* name, Cell* out) { return parse(name, kCells, out); }

}  // namespace fastlstm
