// Runtime CPU feature detection: cpuid for the instructions, xgetbv for the OS's register support.
// Compiled with the baseline flags, so it runs on any x86-64 (or any CPU at all, elsewhere).
#include "fastlstm/isa.h"

#include <unistd.h>

#include <atomic>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define FASTLSTM_X86 1
#endif

namespace fastlstm::cpu {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

bool isa_from_name(const char* name, Isa* out) {
  for (int i = 0; i < kNumIsas; ++i) {
    if (std::strcmp(name, isa_name(static_cast<Isa>(i))) == 0) {
      *out = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

bool isa_built(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
#if defined(FASTLSTM_HAVE_AVX2)
    case Isa::kAvx2:
      return true;
#endif
#if defined(FASTLSTM_HAVE_AVX512)
    case Isa::kAvx512:
      return true;
#endif
    default:
      return false;
  }
}

namespace {

#if defined(FASTLSTM_X86)
struct X86Features {
  bool avx2_fma = false;
  bool avx512 = false;  // F + VL + BW + DQ: what the avx512 files are compiled for
  bool avx512_bf16 = false, avx512_vnni = false, avx_vnni = false;
};

X86Features detect() {
  X86Features f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12), f16c = c & (1u << 29);
  if (!osxsave || !avx) return f;
  unsigned xcr0_lo, xcr0_hi;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const bool os_ymm = (xcr0_lo & 0x6) == 0x6;    // XMM and YMM state
  const bool os_zmm = (xcr0_lo & 0xe6) == 0xe6;  // plus opmask and both ZMM halves
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5);
  const bool avx512 = (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) && (b & (1u << 31));
  f.avx2_fma = os_ymm && avx2 && fma && f16c;
  f.avx512 = f.avx2_fma && os_zmm && avx512;
  f.avx512_vnni = f.avx512 && (c & (1u << 11));
  unsigned a1, b1, c1, d1;
  __cpuid_count(7, 1, a1, b1, c1, d1);
  f.avx512_bf16 = f.avx512 && (a1 & (1u << 5));
  f.avx_vnni = f.avx2_fma && (a1 & (1u << 4));
  return f;
}

const X86Features& features() {
  static const X86Features f = detect();
  return f;
}
#endif

}  // namespace

bool isa_supported(Isa isa) {
  if (!isa_built(isa)) return false;
#if defined(FASTLSTM_X86)
  const X86Features& f = features();
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return f.avx2_fma;
    case Isa::kAvx512:
      return f.avx512;
  }
  return false;
#else
  return isa == Isa::kScalar;
#endif
}

const char* cpu_feature_name(CpuFeature f) {
  switch (f) {
    case CpuFeature::kNone:
      return "none";
    case CpuFeature::kAvx512Bf16:
      return "avx512_bf16";
    case CpuFeature::kAvx512Vnni:
      return "avx512_vnni";
    case CpuFeature::kAvxVnni:
      return "avx_vnni";
  }
  return "unknown";
}

bool cpu_has(CpuFeature f) {
#if defined(FASTLSTM_X86)
  switch (f) {
    case CpuFeature::kNone:
      return true;
    case CpuFeature::kAvx512Bf16:
      return features().avx512_bf16;
    case CpuFeature::kAvx512Vnni:
      return features().avx512_vnni;
    case CpuFeature::kAvxVnni:
      return features().avx_vnni;
  }
  return false;
#else
  return f == CpuFeature::kNone;
#endif
}

Isa isa_best() {
  for (int i = kNumIsas - 1; i > 0; --i) {
    if (isa_supported(static_cast<Isa>(i))) return static_cast<Isa>(i);
  }
  return Isa::kScalar;
}

namespace {
std::atomic<unsigned long> l2_override{0};
}  // namespace

unsigned long l2_cache_bytes() {
  static const unsigned long os_bytes = [] {
    long n = -1;
#if defined(_SC_LEVEL2_CACHE_SIZE)
    n = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return n > 0 ? static_cast<unsigned long>(n) : 512ul * 1024;
  }();
  const unsigned long set = l2_override.load(std::memory_order_relaxed);
  return set != 0 ? set : os_bytes;
}

void set_l2_cache_bytes(unsigned long bytes) { l2_override.store(bytes, std::memory_order_relaxed); }

}  // namespace fastlstm::cpu
