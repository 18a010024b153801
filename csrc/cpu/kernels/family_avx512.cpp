// The AVX-512 (F/VL/BW/DQ) kernel families (fp32, fp64). Built with its own flags (CMakeLists.txt); its kernels
// are reached only through the registry after the cpuid check.
// The tables below are constant-initialised data: taking their address runs none of this file's code.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cpu/family.h"

namespace fastlstm::cpu {
namespace avx512 {
// clang-format off: the vector traits first, then the kernels written over them
#include "vec_avx512.h"
#include "family-inl.h"
// clang-format on
}  // namespace avx512

extern constinit const KernelFamily kAvx512F32 =
    avx512::make_family<avx512::VecF>(Isa::kAvx512, CpuFeature::kNone, DType::kF32, WeightFormat::kF32);
extern constinit const KernelFamily kAvx512F64 =
    avx512::make_family<avx512::VecD>(Isa::kAvx512, CpuFeature::kNone, DType::kF64, WeightFormat::kF64);
extern constinit const IsaProbes kAvx512Probes = avx512::make_probes<avx512::VecF>();

}  // namespace fastlstm::cpu
