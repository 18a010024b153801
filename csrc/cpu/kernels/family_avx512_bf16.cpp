// The AVX-512 bf16 kernel family (AVX512_BF16): fp32 math and state, bf16 weights and operands, products by
// vdpbf16ps (bf16-inl.h). Built with its own flags (CMakeLists.txt); reached only through the registry, on a
// CPU that reports AVX512_BF16. Inference and streaming steps.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cpu/family.h"

namespace fastlstm::cpu {
namespace avx512_bf16 {
// clang-format off: the vector traits first, then the kernels written over them
#include "vec_avx512.h"
#include "family-inl.h"
#include "bf16-inl.h"
// clang-format on
}  // namespace avx512_bf16

extern constinit const KernelFamily kAvx512Bf16 = avx512_bf16::make_family<avx512_bf16::VecF, avx512_bf16::Bf16Ops>(
    Isa::kAvx512, CpuFeature::kAvx512Bf16, DType::kF32, WeightFormat::kBF16);

}  // namespace fastlstm::cpu
