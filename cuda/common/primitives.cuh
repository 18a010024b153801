// Device primitives: the one place for inline PTX and hardware intrinsics beyond plain CUDA C++ (tensor-core
// mma.sync, ldmatrix, cp.async, grid and cluster synchronisation, distributed shared memory, acquire /
// release across blocks). Kernels call these and never write asm themselves, so every kernel also compiles
// with a host compiler against the CPU execution model (cuda/testing/emu), whose twin of each function has
// the same name and semantics (docs/cuda.md). Fragment layouts are the PTX ISA's ("Matrix Fragments for
// mma.m16n8k16 / mma.m16n8k8"): groupID = lane >> 2, threadID_in_group = lane % 4.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#include <cooperative_groups.h>
#else
#include "testing/emu/emu.h"  // host compiler: the CUDA dialect and the execution model (tests only)
#endif

namespace fastlstm::cuda::prim {

// ---- Conversions, bit-exact on host and device ---------------------------------------------------------
// The host paths are the reference of the device instructions (cvt.rn.bf16x2.f32, cvt.rn.f16x2.f32,
// cvt.rna.tf32.f32): host packers, tests and the execution model use them.

__host__ __device__ inline std::uint32_t float_bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
__host__ __device__ inline float bits_float(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// float -> bf16, round to nearest even; NaN -> the canonical 0x7fff.
__host__ __device__ inline std::uint16_t bf16_bits(float x) {
  const std::uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
__host__ __device__ inline float bf16_float(std::uint16_t b) { return bits_float(static_cast<std::uint32_t>(b) << 16); }

// float -> IEEE half, round to nearest even, with subnormals, overflow to infinity and NaN -> 0x7e00.
__host__ __device__ inline std::uint16_t f16_bits(float x) {
  std::uint32_t u = float_bits(x);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7fffffffu;
  std::uint32_t h;
  if (u >= 0x47800000u) {  // >= 65536 (or inf / NaN): past the largest half even before rounding
    h = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (u < 0x38800000u) {  // below 2^-14: a subnormal half; the float add rounds at the right bit
    const float magic = bits_float(0x3f000000u);  // 0.5: its ulp is the half subnormal step 2^-24
    h = float_bits(bits_float(u) + magic) - 0x3f000000u;
  } else {
    const std::uint32_t odd = (u >> 13) & 1u;
    h = (u - 0x38000000u + 0xfffu + odd) >> 13;  // rebias 127 -> 15, round half to even
  }
  return static_cast<std::uint16_t>(h | sign);
}
__host__ __device__ inline float f16_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) return bits_float(sign) + (sign ? -1.0f : 1.0f) * static_cast<float>(m) * bits_float(0x33800000u);
  if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));
  return bits_float(sign | ((e + 112) << 23) | (m << 13));
}

// float -> tf32 (a .b32 with the low 13 bits zero), round to nearest, ties away from zero.
__host__ __device__ inline std::uint32_t tf32_bits(float x) {
  const std::uint32_t u = float_bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return (u & 0x7fffffu) != 0 ? 0x7fffffffu : u;
  return (u + 0x1000u) & 0xffffe000u;
}

// Two values in one .b32 register: lo in bits 0-15 (the element with the lower index), hi in 16-31.
__host__ __device__ inline std::uint32_t pack_bf16x2_host(float lo, float hi) {
  return static_cast<std::uint32_t>(bf16_bits(lo)) | (static_cast<std::uint32_t>(bf16_bits(hi)) << 16);
}
__host__ __device__ inline std::uint32_t pack_f16x2_host(float lo, float hi) {
  return static_cast<std::uint32_t>(f16_bits(lo)) | (static_cast<std::uint32_t>(f16_bits(hi)) << 16);
}

}  // namespace fastlstm::cuda::prim

#if defined(__CUDACC__)
namespace fastlstm::cuda::prim {

// ---- Identity and shared memory ------------------------------------------------------------------------
__device__ __forceinline__ unsigned lane_id() {
  unsigned r;
  asm("mov.u32 %0, %%laneid;" : "=r"(r));
  return r;
}

// The block's dynamic shared memory (the launch's third <<<>>> argument), 128-byte aligned.
template <class T>
__device__ __forceinline__ T* dynamic_smem() {
  extern __shared__ __align__(128) unsigned char fastlstm_dynamic_smem[];
  return reinterpret_cast<T*>(fastlstm_dynamic_smem);
}

__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// ---- Conversions on the device: the cvt instructions (same results as the host references above) --------
__device__ __forceinline__ std::uint32_t pack_bf16x2(float lo, float hi) {
  std::uint32_t d;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));  // first source -> upper half
  return d;
}
__device__ __forceinline__ std::uint32_t pack_f16x2(float lo, float hi) {
  std::uint32_t d;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
  return d;
}
__device__ __forceinline__ std::uint32_t to_tf32(float x) {
  std::uint32_t d;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(d) : "f"(x));
  return d;
}

// ---- Tensor cores: D = A * B + C, one warp, f32 accumulators ---------------------------------------------
// m16n8k16 (bf16 / f16): a = 4 registers of A (16x16, row-major), b = 2 of B (16x8, column-major), c / d =
// 4 floats of C / D (16x8). m16n8k8 tf32: a = 4 tf32 of A (16x8), b = 2 of B (8x8).
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const std::uint32_t (&a)[4],
                                                  const std::uint32_t (&b)[2], const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}
__device__ __forceinline__ void mma_m16n8k16_f16(float (&d)[4], const std::uint32_t (&a)[4],
                                                 const std::uint32_t (&b)[2], const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}
__device__ __forceinline__ void mma_m16n8k8_tf32(float (&d)[4], const std::uint32_t (&a)[4],
                                                 const std::uint32_t (&b)[2], const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}

// ldmatrix .m8n8 .b16: lane i gives the shared-memory address of row i % 8 of matrix i / 8 (16 bytes,
// 16-byte aligned; x1 reads lanes 0-7, x2 lanes 0-15); register j of lane L gets row L / 4, columns
// 2 (L % 4) and 2 (L % 4) + 1 of matrix j (.trans: the transposed matrix).
__device__ __forceinline__ void ldmatrix_x1(std::uint32_t (&r)[1], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x2(std::uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(std::uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_addr(row)));
}

// ---- Asynchronous global -> shared copies (sm_80) ------------------------------------------------------
// 16 bytes, both addresses 16-byte aligned; valid = false zero-fills the destination without reading src.
// Copies are complete (visible to this thread) after the cp_async_wait that covers their group; other
// threads need a barrier after that wait as well.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid = true) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(smem)), "l"(gmem), "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }

// ---- Across blocks -------------------------------------------------------------------------------------
// Grid-wide barrier: only in a cooperative launch (cudaLaunchCooperativeKernel), with every block resident.
__device__ __forceinline__ void grid_sync() { cooperative_groups::this_grid().sync(); }

// Thread-block clusters (sm_90): rank of this block in its cluster, the cluster's size, its barrier, and
// the address of the same shared variable in block `rank` of the cluster (distributed shared memory).
__device__ __forceinline__ unsigned cluster_rank() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return cooperative_groups::this_cluster().block_rank();
#else
  __trap();
  return 0;
#endif
}
__device__ __forceinline__ unsigned cluster_blocks() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return cooperative_groups::this_cluster().num_blocks();
#else
  __trap();
  return 0;
#endif
}
__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cooperative_groups::this_cluster().sync();
#else
  __trap();
#endif
}
template <class T>
__device__ __forceinline__ T* map_shared_rank(T* p, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return cooperative_groups::this_cluster().map_shared_rank(p, rank);
#else
  __trap();
  return p;
#endif
}

// Flags between blocks: a release store publishes everything this thread wrote before it to a thread that
// acquire-loads the value. Spin on ld_acquire_gpu (never on a plain or volatile load: the model, and
// ThreadSanitizer, see only these).
__device__ __forceinline__ std::uint32_t ld_acquire_gpu(const std::uint32_t* p) {
  std::uint32_t v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_release_gpu(std::uint32_t* p, std::uint32_t v) {
  asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

}  // namespace fastlstm::cuda::prim
#else
#include "testing/emu/primitives_emu.h"  // the execution model's twins of the functions above
#endif
