// The registry of kernel families. Each family file defines a constant-initialised KernelFamily (data only:
// reading it runs none of the family's code), so the registry can read every family's key and requirements
// and hand out only those this CPU runs. A new family: its file (kernels/family_<isa>[_<precision>].cpp),
// its line in CMakeLists.txt, and its two lines here.
#include "cpu/registry.h"

namespace fastlstm::cpu {

extern const KernelFamily kScalarF32, kScalarF64;
extern const IsaProbes kScalarProbes;
#if defined(FASTLSTM_HAVE_AVX2)
extern const KernelFamily kAvx2F32, kAvx2F64, kAvx2Bf16, kAvx2Int8;
extern const IsaProbes kAvx2Probes;
#endif
#if defined(FASTLSTM_HAVE_AVX512)
extern const KernelFamily kAvx512F32, kAvx512F64, kAvx512Bf16, kAvx512Int8;
extern const IsaProbes kAvx512Probes;
#endif

namespace {

const KernelFamily* const kFamilies[] = {
    &kScalarF32, &kScalarF64,
#if defined(FASTLSTM_HAVE_AVX2)
    &kAvx2F32,   &kAvx2F64,   &kAvx2Bf16,   &kAvx2Int8,
#endif
#if defined(FASTLSTM_HAVE_AVX512)
    &kAvx512F32, &kAvx512F64, &kAvx512Bf16, &kAvx512Int8,
#endif
};

struct ProbeEntry {
  Isa isa;
  const IsaProbes* probes;
};
const ProbeEntry kProbes[] = {
    {Isa::kScalar, &kScalarProbes},
#if defined(FASTLSTM_HAVE_AVX2)
    {Isa::kAvx2, &kAvx2Probes},
#endif
#if defined(FASTLSTM_HAVE_AVX512)
    {Isa::kAvx512, &kAvx512Probes},
#endif
};

}  // namespace

bool runnable(const KernelFamily& f) { return isa_supported(f.isa) && cpu_has(f.feature); }

const KernelFamily* find_family(Isa isa, DType compute, WeightFormat weights) {
  for (const KernelFamily* f : kFamilies)
    if (f->isa == isa && f->compute == compute && f->weights == weights && runnable(*f)) return f;
  return nullptr;
}

std::vector<const KernelFamily*> all_families() { return {std::begin(kFamilies), std::end(kFamilies)}; }

const IsaProbes* find_probes(Isa isa) {
  for (const ProbeEntry& e : kProbes)
    if (e.isa == isa && isa_supported(isa)) return e.probes;
  return nullptr;
}

}  // namespace fastlstm::cpu
