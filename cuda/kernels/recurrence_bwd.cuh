// Backpropagation through time of one layer, both directions at once, as ONE persistent cooperative kernel
// for the whole sequence (the mirror of recurrence.cuh). Block (blockIdx.x, d = blockIdx.y) owns the same
// hidden units [j0, j0 + U) and, with a projection, the same outputs [q0, q0 + Up) of direction d as in the
// forward. On chip it keeps the columns of W_hh for the h columns it owns (transposed: row = W_hh[:, col], 4H
// long) and, with a projection, the columns of W_hr for its units (row = W_hr[:, j], P long). Per step, from
// the last position back:
//   [proj   dr_t = the carried dr + dy[t] on its outputs, written for dW_hr; grid barrier]
//   cell    for its units and every row: the gradient reaching m_t = o * tanh(c_t) (dh = the carried dh + dy[t]
//           without a projection; dm = dr_t W_hr with one), then the cell's backward (cells/lstm.cuh) from
//           the saved gates and c -> dz_t (written for the weight gradients) and the dc carried to the step
//           before (c lives in the owner block only)
//   grid barrier: dz_t is complete for every unit
//   dh      dh_{t-1}[b, col] = dz_t[b] . W_hh[:, col] on its h columns
// The products stage their rows in shared memory in the operand format and run the forward's tile code
// (recurrence_gates.cuh). A carried dh / dr column is only ever read and written by its owner block, so one
// barrier per step orders everything (two with a projection); a row whose step does not run passes dh, dr
// and dc through unchanged and gets dz = 0 (and dr_t = 0). Device code only; the plan is host code.
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
  int T = 0, B = 0, H = 0, P = 0;              // P: proj_size, 0 without a projection
  int R = 0;                                   // the recurrent size: P if P > 0 else H
  int units = 0, punits = 0, batch_chunk = 0;  // the plan's
  bool weights_in_smem = false;
  const float* gates = nullptr;  // the forward's save_gates (recurrence.cuh): [T*B, ldg], ldg = D * 4H
  const float* c = nullptr;      // the forward's save_c: [T*B, ldg / 4]
  std::int64_t ldg = 0;
  const Storage* w_hh_t = nullptr;  // [D][R][4H]: W_hh transposed, in the operand format
  const Storage* w_hr_t = nullptr;  // [D][H][P]: W_hr transposed (projection only)
  const float* peep = nullptr;      // [D][3][H] or null
  const float* c0 = nullptr;        // [D, B, H] or null (zeros)
  const int* lengths = nullptr;     // [B] in [1, T], or null
  const float* dy = nullptr;        // (t, b, d * R + col) at dy + t * dy_st + b * dy_sb + d * R + col
  std::int64_t dy_st = 0, dy_sb = 0;
  const float* dy_mask = nullptr;  // dropout between layers: dy is read as dy * mask (laid out as dy), or null
  const float* dh_n = nullptr;     // [D, B, R] gradients reaching the final state, or null (zeros)
  const float* dc_n = nullptr;     // [D, B, H]
  float* dz = nullptr;             // [T*B, ldg] written: the pre-activations' gradients, zeros where a row does not run
  float* dr = nullptr;             // [T*B, D * P] written (projection only): dr_t, zeros where a row does not run
  float* dh0 = nullptr;            // [D, B, R] written
  float* dc0 = nullptr;            // [D, B, H] written
  float* dhbuf = nullptr;          // workspace [D][2][B, R]
  float* dcbuf = nullptr;          // workspace [D][B, H]
};

// The on-chip slices: W_hh^T rows for `ncols` h columns (4H each), then W_hr^T rows for U units (P each).
template <class Storage>
__host__ __device__ inline std::size_t rec_backward_weight_bytes(int ncols, int U, int G, int P) {
  return align16(sizeof(Storage) * static_cast<std::size_t>(ncols) * G) +
         align16(sizeof(Storage) * static_cast<std::size_t>(U) * P);
}

template <Operand Op, bool kPeephole>
__global__ void __launch_bounds__(kRecThreads, 1) recurrence_backward_kernel(BackwardParams<Op> p) {
  using Tr = OperandTraits<Op>;
  using Storage = typename Tr::Storage;
  const int d = static_cast<int>(blockIdx.y);
  const int H = p.H, B = p.B, R = p.R, P = p.P, U = p.units, Up = p.punits, G = 4 * H;
  const int j0 = static_cast<int>(blockIdx.x) * U, uact = imax(0, imin(U, H - j0));
  const int q0 = static_cast<int>(blockIdx.x) * Up, pact = P > 0 ? imax(0, imin(Up, P - q0)) : 0;
  const int h0col = P > 0 ? q0 : j0, hcols = P > 0 ? pact : uact;  // the h (or r) columns this block owns
  const int tid = static_cast<int>(threadIdx.x), nthreads = static_cast<int>(blockDim.x);
  const int warp = tid / 32, lane = tid % 32, nwarps = nthreads / 32;
  const int ncols = P > 0 ? Up : U;  // rows of the W_hh^T slice

  unsigned char* smem = prim::dynamic_smem<unsigned char>();
  const Storage* wt_g = p.w_hh_t + (static_cast<std::int64_t>(d) * R + h0col) * G;
  const Storage* wr_g = P > 0 ? p.w_hr_t + (static_cast<std::int64_t>(d) * H + j0) * P : nullptr;
  Storage* wt_s = reinterpret_cast<Storage*>(smem);
  Storage* wr_s = reinterpret_cast<Storage*>(smem + align16(sizeof(Storage) * static_cast<std::size_t>(ncols) * G));
  unsigned char* const staging = smem + (p.weights_in_smem ? rec_backward_weight_bytes<Storage>(ncols, U, G, P) : 0);
  Storage* zs = reinterpret_cast<Storage*>(staging);
  float* acc =
      reinterpret_cast<float*>(staging + align16(sizeof(Storage) * static_cast<std::size_t>(p.batch_chunk) * G));
  const auto wt_row = [&](int r) -> const Storage* {
    return (p.weights_in_smem ? wt_s : wt_g) + static_cast<std::int64_t>(r) * G;
  };
  const auto wr_row = [&](int u) -> const Storage* {
    return (p.weights_in_smem ? wr_s : wr_g) + static_cast<std::int64_t>(u) * P;
  };

  float* const dhb = p.dhbuf + static_cast<std::int64_t>(d) * 2 * B * R;
  float* const dcs = p.dcbuf + static_cast<std::int64_t>(d) * B * H;
  const float* const pe = kPeephole ? p.peep + static_cast<std::int64_t>(d) * 3 * H : nullptr;
  const std::int64_t ldc = p.ldg / 4, ldr = static_cast<std::int64_t>(gridDim.y) * P;

  if (p.weights_in_smem) {
    for (int e = tid; e < hcols * G; e += nthreads) wt_s[e] = wt_g[e];
    for (int e = tid; e < uact * P; e += nthreads) wr_s[e] = wr_g[e];
  }
  load_state_columns(dhb, p.dh_n, d, B, R, h0col, hcols, tid, nthreads);
  load_state_columns(dcs, p.dc_n, d, B, H, j0, uact, tid, nthreads);
  __syncthreads();

  for (int s = p.T - 1; s >= 0; --s) {
    const int par = (p.T - 1 - s) & 1;
    float* const dhcur = dhb + par * B * R;
    float* const dhnext = dhb + (par ^ 1) * B * R;
    // The forward's position of step s for row b, and whether the row ran it (recurrence.cuh).
    const auto position = [&](int b, bool* active) {
      const int len = p.lengths != nullptr ? p.lengths[b] : p.T;
      *active = s < len;
      return (d == 1 && *active) ? len - 1 - s : s;
    };
    // The gradient reaching output column col of row b at position t: the carried one plus dy.
    const auto incoming = [&](int b, int t, int col) {
      const std::int64_t at = t * p.dy_st + b * p.dy_sb + d * R + col;
      return dhcur[b * R + col] + (p.dy_mask != nullptr ? p.dy[at] * p.dy_mask[at] : p.dy[at]);
    };
    // The cell's backward of (b, j) at position t from dm, the gradient reaching m_t.
    const auto cell = [&](int b, int t, int j, float dm) {
      const std::int64_t row = static_cast<std::int64_t>(t) * B + b;
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
      cell_point_backward_f32<kPeephole>(gv, c_prev, p.c[row * ldc + d * H + j], dm, kPeephole ? pe[j] : 0.0f,
                                         kPeephole ? pe[H + j] : 0.0f, kPeephole ? pe[2 * H + j] : 0.0f,
                                         &dcs[b * H + j], dz4);
      float* dzr = p.dz + row * p.ldg + d * G + j;
      for (int q = 0; q < 4; ++q) dzr[q * H] = dz4[q];
    };
    // zs[bi][0, K) = rows b0 .. b0+nb-1 of src (row (t, b) at src + (t * B + b) * ld + off, t the row's position
    // at this step) in the operand format, for a product; then a barrier.
    const auto stage = [&](const float* src, std::int64_t ld, std::int64_t off, int K, int b0, int nb) {
      for (int e = tid; e < nb * K; e += nthreads) {
        const int bi = e / K, k = e - bi * K;
        bool active;
        const int t = position(b0 + bi, &active);
        zs[e] = Tr::store(src[(static_cast<std::int64_t>(t) * B + b0 + bi) * ld + off + k]);
      }
      __syncthreads();
    };
    const auto zero_dz = [&](int b, int t, int j) {
      float* dzr = p.dz + (static_cast<std::int64_t>(t) * B + b) * p.ldg + d * G + j;
      for (int q = 0; q < 4; ++q) dzr[q * H] = 0.0f;
    };

    if (P == 0) {
      for (int e = tid; e < B * uact; e += nthreads) {
        const int b = e / uact, j = j0 + e - b * uact;
        bool active;
        const int t = position(b, &active);
        if (active) {
          cell(b, t, j, incoming(b, t, j));
        } else {
          zero_dz(b, t, j);
        }
      }
    } else {
      for (int e = tid; e < B * pact; e += nthreads) {  // dr_t on my outputs
        const int b = e / pact, q = q0 + e - b * pact;
        bool active;
        const int t = position(b, &active);
        p.dr[(static_cast<std::int64_t>(t) * B + b) * ldr + d * P + q] = active ? incoming(b, t, q) : 0.0f;
      }
      prim::grid_sync();                                           // dr_t complete on every output
      for (int b0 = 0; b0 < B && uact > 0; b0 += p.batch_chunk) {  // dm = dr_t W_hr on my units, then the cell
        const int nb = imin(p.batch_chunk, B - b0);
        stage(p.dr, ldr, d * P, P, b0, nb);
        gates_product<Op>(wr_row, zs, nb, P, uact, acc, U, warp, nwarps, lane);
        __syncthreads();
        for (int e = tid; e < nb * uact; e += nthreads) {
          const int bi = e / uact, u = e - bi * uact, b = b0 + bi, j = j0 + u;
          bool active;
          const int t = position(b, &active);
          if (active) {
            cell(b, t, j, acc[bi * U + u]);
          } else {
            zero_dz(b, t, j);
          }
        }
        __syncthreads();  // zs and acc are reused by the next chunk
      }
    }
    prim::grid_sync();  // dz_t complete for every unit
    for (int b0 = 0; b0 < B && hcols > 0; b0 += p.batch_chunk) {
      const int nb = imin(p.batch_chunk, B - b0);
      stage(p.dz, p.ldg, d * G, G, b0, nb);
      gates_product<Op>(wt_row, zs, nb, G, hcols, acc, ncols, warp, nwarps, lane);
      __syncthreads();
      for (int e = tid; e < nb * hcols; e += nthreads) {
        const int bi = e / hcols, i = e - bi * hcols, b = b0 + bi, col = h0col + i;
        bool active;
        position(b, &active);
        dhnext[b * R + col] = active ? acc[bi * ncols + i] : dhcur[b * R + col];
      }
      __syncthreads();  // zs and acc are reused by the next chunk
    }
  }
  // After T steps the carried gradients are those of the initial state.
  const float* dhfin = dhb + (p.T & 1) * B * R;
  for (int e = tid; e < B * hcols; e += nthreads) {
    const int b = e / hcols, col = h0col + e - b * hcols;
    p.dh0[(static_cast<std::int64_t>(d) * B + b) * R + col] = dhfin[b * R + col];
  }
  for (int e = tid; e < B * uact; e += nthreads) {
    const int b = e / uact, j = j0 + e - b * uact;
    p.dc0[(static_cast<std::int64_t>(d) * B + b) * H + j] = dcs[b * H + j];
  }
}

// The plan: the forward's ownership of units and outputs (so the blocks fill the SMs once and are
// co-resident), the W_hh^T slice (one row of 4H per owned h column) and the W_hr^T slice (U x P) on chip when
// they fit next to one staged dz row and its sums. batch_chunk = 0: not even one dz row (4H values) fits in
// shared memory (H above ~14000 on an H200, ~10000 on an A100): unsupported.
inline RecurrencePlan recurrence_backward_plan(int H, int P, int D, int B, std::size_t operand_bytes,
                                               const DeviceLimits& dev) {
  RecurrencePlan plan;
  const int per_dir = std::max(1, dev.sm_count / D);
  plan.units = (H + per_dir - 1) / per_dir;
  const int nblk = (H + plan.units - 1) / plan.units;
  plan.punits = P > 0 ? (P + nblk - 1) / nblk : 0;
  const int ncols = P > 0 ? plan.punits : plan.units;
  const std::size_t G = 4 * static_cast<std::size_t>(H);
  const std::size_t weights = align16(operand_bytes * static_cast<std::size_t>(ncols) * G) +
                              align16(operand_bytes * static_cast<std::size_t>(plan.units) * P);
  const std::size_t per_row = sizeof(float) * (G + static_cast<std::size_t>(std::max(plan.units, ncols)));
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
