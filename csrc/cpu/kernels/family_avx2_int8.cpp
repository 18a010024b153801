// The AVX2 int8 kernel family: fp32 math and state, int8 weights and activations, exact int32 sums by vpmaddubsw /
// vpmaddwd (int8_avx2-inl.h): the int8 family for CPUs without AVX512_VNNI, the same bits. Inference and streaming
// steps. Built with the AVX2 flags (CMakeLists.txt); reached only through the registry.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cpu/family.h"

namespace fastlstm::cpu {
namespace avx2_int8 {
// clang-format off: the vector traits first, then the kernels written over them
#include "vec_avx2.h"
#include "family-inl.h"
#include "int8_avx2-inl.h"
// clang-format on
}  // namespace avx2_int8

extern constinit const KernelFamily kAvx2Int8 = avx2_int8::make_family<avx2_int8::VecF, avx2_int8::Int8Avx2Ops>(
    Isa::kAvx2, CpuFeature::kNone, DType::kF32, WeightFormat::kI8RowScaled);

}  // namespace fastlstm::cpu
