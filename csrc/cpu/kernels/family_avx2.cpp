// The AVX2 + FMA kernel families (fp32, fp64). Built with -mavx2 -mfma -mf16c (CMakeLists.txt); its kernels are
// reached only through the registry after the cpuid check.
// The tables below are constant-initialised data: taking their address runs none of this file's code.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cpu/family.h"

namespace fastlstm::cpu {
namespace avx2 {
// clang-format off: the vector traits first, then the kernels written over them
#include "vec_avx2.h"
#include "family-inl.h"
// clang-format on
}  // namespace avx2

extern constinit const KernelFamily kAvx2F32 =
    avx2::make_family<avx2::VecF>(Isa::kAvx2, CpuFeature::kNone, DType::kF32, WeightFormat::kF32);
extern constinit const KernelFamily kAvx2F64 =
    avx2::make_family<avx2::VecD>(Isa::kAvx2, CpuFeature::kNone, DType::kF64, WeightFormat::kF64);
extern constinit const IsaProbes kAvx2Probes = avx2::make_probes<avx2::VecF>();

}  // namespace fastlstm::cpu
