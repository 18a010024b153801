// The CUDA C++ dialect for a host compiler: the keywords, built-in types and math intrinsics that kernel
// sources use, so the same .cuh compiles under g++ against the execution model (emu.h). Test-only.
#pragma once

#if defined(__CUDACC__)
#error "cuda/testing/emu is the CPU execution model: include it only from host-compiled test code"
#endif

#include <cmath>
#include <cstdint>

// Function and variable qualifiers. Kernels become ordinary functions that every emulated thread calls;
// __shared__ variables live once per block: each block runs on its own OS thread (emu/runtime.h), so
// thread_local gives every block its own copy (zero-filled at block start, where hardware leaves garbage).
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static thread_local

// Built-in vector types (the subset kernels index with): dim3 defaults to 1 like CUDA's.
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}  // NOLINT(google-explicit-constructor): as CUDA's
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

inline constexpr int warpSize = 32;

// Fast-math intrinsics: the hardware versions are approximations (documented ulp bounds); the model uses
// the correctly rounded libm functions, so compare kernel results with tolerances, never bitwise.
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(unsigned x) { return __builtin_ffs(static_cast<int>(x)); }
inline int __clz(unsigned x) { return x == 0 ? 32 : __builtin_clz(x); }
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  return __builtin_bswap32(x);
}
