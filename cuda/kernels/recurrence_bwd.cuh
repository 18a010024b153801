// Backpropagation through time of one layer, both directions at once, as ONE persistent cooperative kernel
// for the whole sequence (the mirror of recurrence.cuh). Block (blockIdx.x, d = blockIdx.y) owns the same
// hidden units [j0, j0 + U) of direction d as in the forward, and keeps on chip the U columns of W_hh for them,
// transposed (row u = W_hh[:, j0 + u], 4H long: the packer's w_hh_t). Per step, from the last position back:
//   cell    for the block's units and every row: dh = the carried dh + dy[t], the cell's backward
//           (cells/lstm.cuh) from the saved gates and c -> dz_t (written for the weight gradients) and the dc
//           carried to the step before (c lives in the owner block only)
//   grid barrier: dz_t is complete for every unit
//   dh      dh_{t-1}[b, j] = dz_t[b] . W_hh[:, j] for the block's units: dz rows staged in shared memory in the
//           operand format, then the same tile code as the forward's gates (recurrence_gates.cuh)
// The carried dh of a column is only ever read and written by its owner block, so one barrier per step
// orders everything; a row whose step does not run passes dh and dc through unchanged and gets dz = 0.
// Without a projection only (P = 0): h is the cell output. Device code only; the plan is host code.
#pragma once

#include <algorithm>
#include <cstdint>

#include "cells/lstm.cuh"
#include "common/plan.h"
#include "common/primitives.cuh"
#include "kernels/operand.cuh"
#include "kernels/recurrence.cuh"
#include "kernels/recurrence_gates.cuh"

namespace fastlstm::cuda::detail {

template <Operand Op>
struct BackwardParams {
  using Storage = typename OperandTraits<Op>::Storage;
  int T = 0, B = 0, H = 0;
  int units = 0, batch_chunk = 0;  // the plan's
  bool weights_in_smem = false;
  const float* gates = nullptr;  // the forward's save_gates (recurrence.cuh): [T*B, ldg], ldg = D * 4H
  const float* c = nullptr;      // the forward's save_c: [T*B, ldg / 4]
  std::int64_t ldg = 0;
  const Storage* w_hh_t = nullptr;  // [D][H][4H]: W_hh transposed, in the operand format
  const float* peep = nullptr;      // [D][3][H] or null
  const float* c0 = nullptr;        // [D, B, H] or null (zeros)
  const int* lengths = nullptr;     // [B] in [1, T], or null
  const float* dy = nullptr;        // (t, b, d * H + j) at dy + t * dy_st + b * dy_sb + d * H + j
  std::int64_t dy_st = 0, dy_sb = 0;
  const float* dy_mask = nullptr;  // dropout between layers: dy is read as dy * mask (laid out as dy), or null
  const float* dh_n = nullptr;     // [D, B, H] gradients reaching the final state, or null (zeros)
  const float* dc_n = nullptr;
  float* dz = nullptr;     // [T*B, ldg] written: the pre-activations' gradients, zeros where a row does not run
  float* dh0 = nullptr;    // [D, B, H] written
  float* dc0 = nullptr;    // [D, B, H] written
  float* dhbuf = nullptr;  // workspace [D][2][B, H]
  float* dcbuf = nullptr;  // workspace [D][B, H]
};

template <Operand Op, bool kPeephole>
__global__ void __launch_bounds__(kRecThreads, 1) recurrence_backward_kernel(BackwardParams<Op> p) {
  using Tr = OperandTraits<Op>;
  using Storage = typename Tr::Storage;
  const int d = static_cast<int>(blockIdx.y);
  const int H = p.H, B = p.B, U = p.units, G = 4 * H;
  const int j0 = static_cast<int>(blockIdx.x) * U, uact = imax(0, imin(U, H - j0));
  const int tid = static_cast<int>(threadIdx.x), nthreads = static_cast<int>(blockDim.x);
  const int warp = tid / 32, lane = tid % 32, nwarps = nthreads / 32;

  unsigned char* smem = prim::dynamic_smem<unsigned char>();
  const Storage* wt_g = p.w_hh_t + (static_cast<std::int64_t>(d) * H + j0) * G;
  Storage* wt_s = reinterpret_cast<Storage*>(smem);
  unsigned char* const staging =
      smem + (p.weights_in_smem ? align16(sizeof(Storage) * static_cast<std::size_t>(U) * G) : 0);
  Storage* zs = reinterpret_cast<Storage*>(staging);
  float* acc =
      reinterpret_cast<float*>(staging + align16(sizeof(Storage) * static_cast<std::size_t>(p.batch_chunk) * G));
  const auto wt_row = [&](int u) -> const Storage* {
    return (p.weights_in_smem ? wt_s : wt_g) + static_cast<std::int64_t>(u) * G;
  };

  float* const dhb = p.dhbuf + static_cast<std::int64_t>(d) * 2 * B * H;
  float* const dcs = p.dcbuf + static_cast<std::int64_t>(d) * B * H;
  const float* const pe = kPeephole ? p.peep + static_cast<std::int64_t>(d) * 3 * H : nullptr;
  const std::int64_t ldc = p.ldg / 4;

  if (p.weights_in_smem) {
    for (int e = tid; e < uact * G; e += nthreads) wt_s[e] = wt_g[e];
  }
  for (int e = tid; e < B * uact; e += nthreads) {
    const int b = e / uact, j = j0 + e - b * uact;
    const std::int64_t at = (static_cast<std::int64_t>(d) * B + b) * H + j;
    dhb[b * H + j] = p.dh_n != nullptr ? p.dh_n[at] : 0.0f;
    dcs[b * H + j] = p.dc_n != nullptr ? p.dc_n[at] : 0.0f;
  }
  __syncthreads();

  for (int s = p.T - 1; s >= 0; --s) {
    const int par = (p.T - 1 - s) & 1;
    float* const dhcur = dhb + par * B * H;
    float* const dhnext = dhb + (par ^ 1) * B * H;
    // The forward's position of step s for row b, and whether the row ran it (recurrence.cuh).
    const auto position = [&](int b, bool* active) {
      const int len = p.lengths != nullptr ? p.lengths[b] : p.T;
      *active = s < len;
      return (d == 1 && *active) ? len - 1 - s : s;
    };
    for (int e = tid; e < B * uact; e += nthreads) {
      const int b = e / uact, j = j0 + e - b * uact;
      bool active;
      const int t = position(b, &active);
      const std::int64_t row = static_cast<std::int64_t>(t) * B + b;
      float* dzr = p.dz + row * p.ldg + d * G + j;
      if (!active) {
        for (int q = 0; q < 4; ++q) dzr[q * H] = 0.0f;
        continue;
      }
      const std::int64_t dy_at = t * p.dy_st + b * p.dy_sb + d * H + j;
      const float dh = dhcur[b * H + j] + (p.dy_mask != nullptr ? p.dy[dy_at] * p.dy_mask[dy_at] : p.dy[dy_at]);
      const float* gr = p.gates + row * p.ldg + d * G + j;
      const float gv[4] = {gr[0], gr[H], gr[2 * H], gr[3 * H]};
      float c_prev;
      if (s == 0) {
        c_prev = p.c0 != nullptr ? p.c0[(static_cast<std::int64_t>(d) * B + b) * H + j] : 0.0f;
      } else {
        const int tp = d == 1 ? t + 1 : t - 1;  // the position the row ran at step s - 1
        c_prev = p.c[(static_cast<std::int64_t>(tp) * B + b) * ldc + d * H + j];
      }
      float dz4[4];
      cell_point_backward_f32<kPeephole>(gv, c_prev, p.c[row * ldc + d * H + j], dh, kPeephole ? pe[j] : 0.0f,
                                         kPeephole ? pe[H + j] : 0.0f, kPeephole ? pe[2 * H + j] : 0.0f,
                                         &dcs[b * H + j], dz4);
      for (int q = 0; q < 4; ++q) dzr[q * H] = dz4[q];
    }
    prim::grid_sync();  // dz_t complete for every unit
    for (int b0 = 0; b0 < B && uact > 0; b0 += p.batch_chunk) {
      const int nb = imin(p.batch_chunk, B - b0);
      for (int e = tid; e < nb * G; e += nthreads) {
        const int bi = e / G, n = e - bi * G;
        bool active;
        const int t = position(b0 + bi, &active);
        zs[e] = Tr::store(p.dz[(static_cast<std::int64_t>(t) * B + b0 + bi) * p.ldg + d * G + n]);
      }
      __syncthreads();
      if constexpr (kRecTensorCores<Op>) {
        gates_mma<Op>(wt_row, zs, nb, G, uact, acc, U, warp, nwarps, lane);
      } else {
        gates_simt<Op>(wt_row, zs, nb, G, uact, acc, U, warp, nwarps, lane);
      }
      __syncthreads();
      for (int e = tid; e < nb * uact; e += nthreads) {
        const int bi = e / uact, u = e - bi * uact, b = b0 + bi, j = j0 + u;
        bool active;
        position(b, &active);
        dhnext[b * H + j] = active ? acc[bi * U + u] : dhcur[b * H + j];
      }
      __syncthreads();  // zs and acc are reused by the next chunk
    }
  }
  // After T steps the carried gradients are those of the initial state.
  const float* dhfin = dhb + (p.T & 1) * B * H;
  for (int e = tid; e < B * uact; e += nthreads) {
    const int b = e / uact, j = j0 + e - b * uact;
    const std::int64_t at = (static_cast<std::int64_t>(d) * B + b) * H + j;
    p.dh0[at] = dhfin[b * H + j];
    p.dc0[at] = dcs[b * H + j];
  }
}

// The plan: the forward's ownership of units (so the blocks fill the SMs once and are co-resident), the
// W_hh^T slice (U x 4H) on chip when it fits next to one staged dz row and its sums. batch_chunk = 0: not even
// one dz row (4H values) fits in shared memory (H above ~14000 on an H200, ~10000 on an A100): unsupported.
inline RecurrencePlan recurrence_backward_plan(int H, int D, int B, std::size_t operand_bytes,
                                               const DeviceLimits& dev) {
  RecurrencePlan plan;
  const int per_dir = std::max(1, dev.sm_count / D);
  plan.units = (H + per_dir - 1) / per_dir;
  const int nblk = (H + plan.units - 1) / plan.units;
  const std::size_t G = 4 * static_cast<std::size_t>(H);
  const std::size_t weights = align16(operand_bytes * static_cast<std::size_t>(plan.units) * G);
  const std::size_t per_row = sizeof(float) * (G + static_cast<std::size_t>(plan.units));
  if (per_row + 32 > dev.max_smem_per_block) return plan;
  plan.weights_in_smem = weights + per_row + 32 <= dev.max_smem_per_block;
  const std::size_t room = dev.max_smem_per_block - (plan.weights_in_smem ? weights : 0) - 32;
  plan.batch_chunk = static_cast<int>(std::min<std::size_t>(B, room / per_row));
  plan.launch.grid.x = static_cast<unsigned>(nblk);
  plan.launch.grid.y = static_cast<unsigned>(D);
  plan.launch.block.x = kRecThreads;
  plan.launch.dynamic_smem = (plan.weights_in_smem ? weights : 0) + align16(per_row * plan.batch_chunk) + 16;
  plan.launch.cooperative = true;
  return plan;
}

}  // namespace fastlstm::cuda::detail
