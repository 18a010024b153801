// CPU kernel families (ISAs): which are compiled into this binary, which this CPU and OS can run, and
// which one is selected (the best supported, or FASTLSTM_ISA).
#pragma once

namespace fastlstm::cpu {

// Ordered from the most portable to the widest; the numeric value indexes kernel tables.
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

}  // namespace fastlstm::cpu
