// The portable kernel families (fp32, fp64): the fallback on any CPU and a check of the blocking logic at
// one unit per vector.
// The tables below are constant-initialised data: taking their address runs none of this file's code.
#include <cmath>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cpu/family.h"

namespace fastlstm::cpu {
namespace scalar {
// clang-format off: the vector traits first, then the kernels written over them
#include "vec_scalar.h"
#include "family-inl.h"
// clang-format on
}  // namespace scalar

extern constinit const KernelFamily kScalarF32 =
    scalar::make_family<scalar::VecF>(Isa::kScalar, CpuFeature::kNone, DType::kF32, WeightFormat::kF32);
extern constinit const KernelFamily kScalarF64 =
    scalar::make_family<scalar::VecD>(Isa::kScalar, CpuFeature::kNone, DType::kF64, WeightFormat::kF64);
extern constinit const IsaProbes kScalarProbes = scalar::make_probes<scalar::VecF>();

}  // namespace fastlstm::cpu
