// The AVX2 bf16 kernel family: fp32 math and state, bf16 weights and operands, products as exact fp32 pairs by FMA
// (bf16_avx2-inl.h): the bf16 family for CPUs without AVX512_BF16. Inference, streaming steps and training. Built with
// the AVX2 flags (CMakeLists.txt); reached only through the registry.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cpu/family.h"

namespace fastlstm::cpu {
namespace avx2_bf16 {
// clang-format off: the vector traits first, then the kernels written over them
#include "vec_avx2.h"
#include "family-inl.h"
#include "bf16_avx2-inl.h"
// clang-format on
}  // namespace avx2_bf16

extern constinit const KernelFamily kAvx2Bf16 = avx2_bf16::make_family<avx2_bf16::VecF, avx2_bf16::Bf16Avx2Ops>(
    Isa::kAvx2, CpuFeature::kNone, DType::kF32, WeightFormat::kBF16);

}  // namespace fastlstm::cpu
