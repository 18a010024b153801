// CPU kernel families by ISA: which are compiled into this binary, which this CPU and OS can run, and which
// optional instructions (bf16, int8 dot products) a family may require on top of its ISA.
#pragma once

namespace fastlstm::cpu {

// Ordered from the most portable to the widest (FASTLSTM_ISA selects one by name).
enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };
inline constexpr int kNumIsas = 3;

const char* isa_name(Isa isa);
// Parses "scalar" | "avx2" | "avx512"; false when the name is none of them.
bool isa_from_name(const char* name, Isa* out);
// Compiled into this binary (the AVX files exist only on x86-64 builds).
bool isa_built(Isa isa);
// Built, and runnable here: cpuid reports the instructions and the OS saves their registers (xgetbv).
bool isa_supported(Isa isa);
// The widest supported family.
Isa isa_best();

// Instructions beyond an ISA's baseline that a kernel family may need.
enum class CpuFeature : int {
  kNone = 0,
  kAvx512Bf16 = 1,  // vdpbf16ps, vcvtne2ps2bf16 (AVX512_BF16)
  kAvx512Vnni = 2,  // vpdpbusd on zmm (AVX512_VNNI)
  kAvxVnni = 3,     // vpdpbusd on ymm (AVX-VNNI)
};
const char* cpu_feature_name(CpuFeature f);
// This CPU has it and the OS saves the registers it uses.
bool cpu_has(CpuFeature f);

// The size of one core's L2 cache in bytes that the kernels' cache blocking is sized by: as the OS reports it
// (512 KiB when it does not), or as set_l2_cache_bytes set it (0: the OS's value again). Results do not depend
// on it (the blocking keeps every sum's order): the setter is for tests and tuning.
unsigned long l2_cache_bytes();
void set_l2_cache_bytes(unsigned long bytes);

}  // namespace fastlstm::cpu
