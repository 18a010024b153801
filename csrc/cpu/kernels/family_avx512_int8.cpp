// The AVX-512 int8 kernel family (AVX512_VNNI): fp32 math and state, int8 weights with a scale per output row,
// activations quantized per row and step, products by vpdpbusd in int32 (int8-inl.h). Built with its own flags
// (CMakeLists.txt); reached only through the registry, on a CPU that reports AVX512_VNNI. Inference and
// streaming steps.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cpu/family.h"

namespace fastlstm::cpu {
namespace avx512_int8 {
// clang-format off: the vector traits first, then the kernels written over them
#include "vec_avx512.h"
#include "family-inl.h"
#include "int8-inl.h"
// clang-format on
}  // namespace avx512_int8

extern constinit const KernelFamily kAvx512Int8 = avx512_int8::make_family<avx512_int8::VecF, avx512_int8::Int8Ops>(
    Isa::kAvx512, CpuFeature::kAvx512Vnni, DType::kF32, WeightFormat::kI8RowScaled);

}  // namespace fastlstm::cpu
