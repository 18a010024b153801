// The execution model's twins of cuda/common/primitives.cuh: same names, same semantics, written from the
// PTX ISA. Included by primitives.cuh under a host compiler only. Test-only.
//
// Tensor cores: the warp's fragments are gathered into whole matrices with the ISA's layouts, and D is
// computed in double (the products are exact) and rounded once to float; hardware sums in another order
// and with other intermediate rounding, so results agree to a tolerance. tf32 operands: the low 13 bits
// are ignored (the hardware reads a tf32 value out of the .b32 register), to be confirmed by the GPU probe.
// cp.async: the copy happens at the cp_async_wait that covers its group (not at issue), so a kernel that
// reads its destination too early reads stale data here, as it may on hardware.
#pragma once

#include <source_location>
#include <string>

#include "emu/builtins.h"

namespace fastlstm::cuda::prim {

namespace emu_detail {
using fastlstm::emu::detail::current;
using fastlstm::emu::detail::Thread;
using Loc = std::source_location;

enum MmaKind : unsigned { kBf16K16 = 0, kF16K16 = 1, kTf32K8 = 2 };

inline double mma_operand(std::uint32_t reg, unsigned half, unsigned kind) {
  const auto h = static_cast<std::uint16_t>(half ? reg >> 16 : reg & 0xffffu);
  if (kind == kBf16K16) return bf16_float(h);
  if (kind == kF16K16) return f16_float(h);
  return bits_float(reg & 0xffffe000u);  // tf32
}

// in[0..3] = a, in[4..5] = b, in[6..9] = c (float bits); out[0..3] = d.
inline void resolve_mma(Thread* const* lanes, unsigned /*mask*/, unsigned aux, std::string& /*err*/) {
  const unsigned kind = aux & 3u, K = kind == kTf32K8 ? 8 : 16;
  double A[16][16] = {}, B[16][8] = {}, C[16][8] = {};
  for (unsigned lane = 0; lane < 32; ++lane) {
    const unsigned g = lane >> 2, t = lane & 3u;
    std::uint32_t a[4], b[2];
    for (int i = 0; i < 4; ++i) a[i] = static_cast<std::uint32_t>(lanes[lane]->in[i].load(std::memory_order_relaxed));
    for (int i = 0; i < 2; ++i)
      b[i] = static_cast<std::uint32_t>(lanes[lane]->in[4 + i].load(std::memory_order_relaxed));
    if (kind == kTf32K8) {  // a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); b0 (t, g), b1 (t+4, g)
      A[g][t] = mma_operand(a[0], 0, kind);
      A[g + 8][t] = mma_operand(a[1], 0, kind);
      A[g][t + 4] = mma_operand(a[2], 0, kind);
      A[g + 8][t + 4] = mma_operand(a[3], 0, kind);
      B[t][g] = mma_operand(b[0], 0, kind);
      B[t + 4][g] = mma_operand(b[1], 0, kind);
    } else {  // register r of A: rows g (r even) / g+8 (r odd), columns 2t, 2t+1 (+8 for r >= 2)
      for (unsigned r = 0; r < 4; ++r) {
        for (unsigned h = 0; h < 2; ++h) A[g + 8 * (r & 1u)][2 * t + h + 8 * (r >> 1)] = mma_operand(a[r], h, kind);
      }
      for (unsigned r = 0; r < 2; ++r) {  // register r of B: rows 2t, 2t+1 (+8 for r = 1), column g
        for (unsigned h = 0; h < 2; ++h) B[2 * t + h + 8 * r][g] = mma_operand(b[r], h, kind);
      }
    }
    for (unsigned i = 0; i < 4; ++i) {  // c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1)
      C[g + 8 * (i >> 1)][2 * t + (i & 1u)] =
          bits_float(static_cast<std::uint32_t>(lanes[lane]->in[6 + i].load(std::memory_order_relaxed)));
    }
  }
  for (unsigned lane = 0; lane < 32; ++lane) {
    const unsigned g = lane >> 2, t = lane & 3u;
    for (unsigned i = 0; i < 4; ++i) {
      const unsigned m = g + 8 * (i >> 1), n = 2 * t + (i & 1u);
      double acc = 0.0;
      for (unsigned k = 0; k < K; ++k) acc += A[m][k] * B[k][n];
      lanes[lane]->out[i].store(float_bits(static_cast<float>(acc + C[m][n])), std::memory_order_relaxed);
    }
  }
}

inline void mma(const char* what, unsigned kind, float (&d)[4], const std::uint32_t (&a)[4],
                const std::uint32_t (&b)[2], const float (&c)[4], Loc loc) {
  Thread& t = current();
  for (int i = 0; i < 4; ++i) t.in[i].store(a[i], std::memory_order_relaxed);
  for (int i = 0; i < 2; ++i) t.in[4 + i].store(b[i], std::memory_order_relaxed);
  for (int i = 0; i < 4; ++i) t.in[6 + i].store(float_bits(c[i]), std::memory_order_relaxed);
  fastlstm::emu::detail::warp_collective(what, 0xffffffffu, resolve_mma, kind | fastlstm::emu::detail::kAligned, loc);
  for (int i = 0; i < 4; ++i) d[i] = bits_float(static_cast<std::uint32_t>(t.out[i].load(std::memory_order_relaxed)));
}

// ldmatrix: in[0] = this lane's row address. The resolver hands each lane the addresses it reads (out[j] per
// register, or out[2j], out[2j+1] for .trans); the lane then loads them itself, so the shared-memory reads
// are the lane's own (ThreadSanitizer attributes them to it).
inline void resolve_ldmatrix(Thread* const* lanes, unsigned /*mask*/, unsigned aux, std::string& err) {
  const unsigned nmat = aux & 7u;
  const bool trans = (aux & 8u) != 0;
  for (unsigned i = 0; i < 8 * nmat; ++i) {
    if (lanes[i]->in[0].load(std::memory_order_relaxed) % 16 != 0) {
      err = "ldmatrix: lane " + std::to_string(i) + " gives a row address that is not 16-byte aligned";
      return;
    }
  }
  auto row = [&](unsigned m, unsigned r) { return lanes[8 * m + r]->in[0].load(std::memory_order_relaxed); };
  for (unsigned lane = 0; lane < 32; ++lane) {
    for (unsigned j = 0; j < nmat; ++j) {
      if (!trans) {
        lanes[lane]->out[j].store(row(j, lane / 4) + 4 * (lane % 4), std::memory_order_relaxed);
      } else {  // transposed: rows 2(L%4), 2(L%4)+1 of the stored matrix, column L/4
        lanes[lane]->out[2 * j].store(row(j, 2 * (lane % 4)) + 2 * (lane / 4), std::memory_order_relaxed);
        lanes[lane]->out[2 * j + 1].store(row(j, 2 * (lane % 4) + 1) + 2 * (lane / 4), std::memory_order_relaxed);
      }
    }
  }
}

template <unsigned N>
void ldmatrix(const char* what, std::uint32_t (&r)[N], const void* row, bool trans, Loc loc) {
  Thread& t = current();
  t.in[0].store(reinterpret_cast<std::uintptr_t>(row), std::memory_order_relaxed);
  fastlstm::emu::detail::warp_collective(what, 0xffffffffu, resolve_ldmatrix,
                                         N | (trans ? 8u : 0u) | fastlstm::emu::detail::kAligned, loc);
  for (unsigned j = 0; j < N; ++j) {
    if (!trans) {
      std::memcpy(&r[j], reinterpret_cast<const void*>(t.out[j].load(std::memory_order_relaxed)), 4);
    } else {
      std::uint16_t lo, hi;
      std::memcpy(&lo, reinterpret_cast<const void*>(t.out[2 * j].load(std::memory_order_relaxed)), 2);
      std::memcpy(&hi, reinterpret_cast<const void*>(t.out[2 * j + 1].load(std::memory_order_relaxed)), 2);
      r[j] = static_cast<std::uint32_t>(lo) | (static_cast<std::uint32_t>(hi) << 16);
    }
  }
}

inline void perform(const std::vector<fastlstm::emu::detail::Copy>& group) {
  for (const auto& c : group) {
    std::memcpy(c.dst, c.src, c.src_bytes);
    std::memset(static_cast<char*>(c.dst) + c.src_bytes, 0, c.bytes - c.src_bytes);
  }
}
}  // namespace emu_detail

// ---- Identity and shared memory ------------------------------------------------------------------------
inline unsigned lane_id() { return emu_detail::current().lane; }

template <class T>
T* dynamic_smem() {
  return reinterpret_cast<T*>(emu_detail::current().block->dyn_smem);
}

// ---- Conversions ---------------------------------------------------------------------------------------
inline std::uint32_t pack_bf16x2(float lo, float hi) { return pack_bf16x2_host(lo, hi); }
inline std::uint32_t pack_f16x2(float lo, float hi) { return pack_f16x2_host(lo, hi); }
inline std::uint32_t to_tf32(float x) { return tf32_bits(x); }

// ---- Tensor cores --------------------------------------------------------------------------------------
inline void mma_m16n8k16_bf16(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2],
                              const float (&c)[4], std::source_location loc = std::source_location::current()) {
  emu_detail::mma("mma.m16n8k16.bf16", emu_detail::kBf16K16, d, a, b, c, loc);
}
inline void mma_m16n8k16_f16(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2],
                             const float (&c)[4], std::source_location loc = std::source_location::current()) {
  emu_detail::mma("mma.m16n8k16.f16", emu_detail::kF16K16, d, a, b, c, loc);
}
inline void mma_m16n8k8_tf32(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2],
                             const float (&c)[4], std::source_location loc = std::source_location::current()) {
  emu_detail::mma("mma.m16n8k8.tf32", emu_detail::kTf32K8, d, a, b, c, loc);
}

inline void ldmatrix_x1(std::uint32_t (&r)[1], const void* row,
                        std::source_location l = std::source_location::current()) {
  emu_detail::ldmatrix("ldmatrix.x1", r, row, false, l);
}
inline void ldmatrix_x2(std::uint32_t (&r)[2], const void* row,
                        std::source_location l = std::source_location::current()) {
  emu_detail::ldmatrix("ldmatrix.x2", r, row, false, l);
}
inline void ldmatrix_x4(std::uint32_t (&r)[4], const void* row,
                        std::source_location l = std::source_location::current()) {
  emu_detail::ldmatrix("ldmatrix.x4", r, row, false, l);
}
inline void ldmatrix_x2_trans(std::uint32_t (&r)[2], const void* row,
                              std::source_location l = std::source_location::current()) {
  emu_detail::ldmatrix("ldmatrix.x2.trans", r, row, true, l);
}
inline void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* row,
                              std::source_location l = std::source_location::current()) {
  emu_detail::ldmatrix("ldmatrix.x4.trans", r, row, true, l);
}

// ---- Asynchronous copies -------------------------------------------------------------------------------
inline void cp_async_16(void* smem, const void* gmem, bool valid = true,
                        std::source_location loc = std::source_location::current()) {
  if (reinterpret_cast<std::uintptr_t>(smem) % 16 != 0 || (valid && reinterpret_cast<std::uintptr_t>(gmem) % 16 != 0))
    fastlstm::emu::detail::fault("cp.async of 16 bytes: both addresses must be 16-byte aligned", loc);
  emu_detail::current().cp_open.push_back({smem, gmem, 16, valid ? 16u : 0u});
}
inline void cp_async_commit() {
  auto& t = emu_detail::current();
  t.cp_groups.push_back(std::move(t.cp_open));
  t.cp_open.clear();
}
template <int N>
void cp_async_wait() {
  auto& t = emu_detail::current();
  while (t.cp_groups.size() > static_cast<std::size_t>(N)) {
    emu_detail::perform(t.cp_groups.front());
    t.cp_groups.pop_front();
  }
}
inline void cp_async_wait_all() {
  cp_async_commit();
  cp_async_wait<0>();
}

// ---- Across blocks -------------------------------------------------------------------------------------
inline void grid_sync(std::source_location loc = std::source_location::current()) {
  namespace d = fastlstm::emu::detail;
  d::Launch& L = *d::current().block->launch;
  if (!L.cfg.cooperative) {
    d::fault(
        "prim::grid_sync() in a launch that is not cooperative (launch it with cudaLaunchCooperativeKernel; "
        "on hardware this hangs or faults)",
        loc);
  }
  d::hb_release(L.hb_grid);
  d::block_on(d::Wait::grid, "prim::grid_sync", loc);
  d::hb_acquire(L.hb_grid);
}

inline unsigned cluster_rank() { return emu_detail::current().block->cluster_rank; }
inline unsigned cluster_blocks() { return emu_detail::current().block->launch->cluster_blocks; }

inline void cluster_sync(std::source_location loc = std::source_location::current()) {
  namespace d = fastlstm::emu::detail;
  d::Block& b = *d::current().block;
  d::hb_release(b.launch->hb_cluster[b.cluster_id]);
  d::block_on(d::Wait::cluster, "prim::cluster_sync", loc);
  d::hb_acquire(b.launch->hb_cluster[b.cluster_id]);
}

// Distributed shared memory: the model covers the dynamic shared memory window (static __shared__ variables
// are per-OS-thread storage that another block cannot address).
template <class T>
T* map_shared_rank(T* p, unsigned rank, std::source_location loc = std::source_location::current()) {
  namespace d = fastlstm::emu::detail;
  d::Block& b = *d::current().block;
  const auto* bytes = reinterpret_cast<const std::byte*>(p);
  if (bytes < b.dyn_smem || bytes >= b.dyn_smem + b.launch->cfg.dynamic_smem)
    d::fault("prim::map_shared_rank: the model maps dynamic shared memory only (prim::dynamic_smem)", loc);
  if (rank >= b.launch->cluster_blocks)
    d::fault("prim::map_shared_rank: rank " + std::to_string(rank) + " is outside the cluster", loc);
  for (unsigned o : b.launch->group) {
    const d::Block& other = *b.launch->blocks[o];
    if (other.cluster_id == b.cluster_id && other.cluster_rank == rank)
      return reinterpret_cast<T*>(other.dyn_smem + (bytes - b.dyn_smem));
  }
  d::fault("prim::map_shared_rank: no such block", loc);
}

inline std::uint32_t ld_acquire_gpu(const std::uint32_t* p,
                                    std::source_location loc = std::source_location::current()) {
  fastlstm::emu::detail::yield_point("prim::ld_acquire_gpu", loc);  // a spin on it lets the writer run
  return std::atomic_ref<std::uint32_t>(*const_cast<std::uint32_t*>(p)).load(std::memory_order_acquire);
}
inline void st_release_gpu(std::uint32_t* p, std::uint32_t v) {
  std::atomic_ref<std::uint32_t>(*p).store(v, std::memory_order_release);
}

}  // namespace fastlstm::cuda::prim
