// The recurrence of one layer, both directions at once, as ONE persistent cooperative kernel for the whole
// sequence. Block (blockIdx.x, d = blockIdx.y) owns hidden units [j0, j0 + U) of direction d: the 4U rows of
// W_hh for them (gates i, f, g, o) and, with a projection, rows [p0, p0 + Up) of W_hr. The slices are loaded
// into shared memory once and stay there for all T steps ("on chip"); when they do not fit (the plan says),
// the same kernel reads them from global memory (L2) every step instead. Per step:
//   gates   every (b, gate, unit): z[t, b] + h_{t-1}[b] . W_hh[row]: h_{t-1} of a chunk of rows is staged
//           in shared memory in the operand format, then the block's rows x staged rows GEMM runs on the
//           tensor cores (tf32 / bf16 / fp16) or the FMA units (fp32): recurrence_gates.cuh
//   cell    c_t, h_t (or m_t = o * tanh(c_t) with a projection) for the block's units, fused (cells/lstm.cuh)
//   [proj   grid barrier; h_t[b, p] = m_t[b] . W_hr[p] for the block's p]
//   grid barrier: h_t is complete for every block's next step.
// h ping-pongs between two global buffers (step s reads parity s, writes s + 1), so one barrier per step
// (two with a projection) orders every read before the next overwrite. c lives in c_n (the owner's units
// only: never shared). Lengths: a row whose step s >= lengths[b] is frozen (h, c kept) and its y row is 0;
// the reverse direction walks positions lengths[b] - 1 .. 0, so both directions write every y[t, b] once.
// Operands rounded per Op (operand.cuh); sums and the cell in fp32. Device code only; the plan is host code.
#pragma once

#include <algorithm>
#include <cstdint>

#include "cells/lstm.cuh"
#include "common/plan.h"
#include "common/primitives.cuh"
#include "kernels/operand.cuh"
#include "kernels/recurrence_gates.cuh"

namespace fastlstm::cuda::detail {

constexpr int kRecThreads = 256;

template <Operand Op>
struct RecurrenceParams {
  using Storage = typename OperandTraits<Op>::Storage;
  int T = 0, B = 0, H = 0, P = 0;  // P: proj_size, 0 without a projection
  int R = 0;                       // recurrent size: P if P > 0 else H
  int units = 0, punits = 0;       // U hidden units and Up projection outputs per block (the plan's)
  int batch_chunk = 0;             // rows whose h_{t-1} and gate sums one pass keeps in shared memory
  bool weights_in_smem = false;
  const float* z = nullptr;  // row (t, b) of direction d: z + (t * B + b) * ldz + d * 4H
  std::int64_t ldz = 0;
  const Storage* w_hh = nullptr;  // [D][4H, R]
  const Storage* w_hr = nullptr;  // [D][P, H], or null
  const float* peep = nullptr;    // [D][3][H]: p_i, p_f, p_o; or null
  const float* h0 = nullptr;      // [D, B, R] or null (zeros)
  const float* c0 = nullptr;      // [D, B, H] or null (zeros)
  const int* lengths = nullptr;   // [B] in [1, T], or null (all T)
  float* y = nullptr;             // element (t, b, d * R + j) at y + t * y_st + b * y_sb + d * R + j
  std::int64_t y_st = 0, y_sb = 0;
  float* h_n = nullptr;   // [D, B, R], written
  float* c_n = nullptr;   // [D, B, H], written; the cell state during the run
  float* hbuf = nullptr;  // workspace [D][2][B, R]
  float* mbuf = nullptr;  // workspace [D][B, H] (projection only)
  // Training (null otherwise), per row (t, b) of direction d: the post-activation gates i, f, g, o at
  // save_gates + (t * B + b) * ldz + d * 4H + gate * H + j and c_t at save_c + (t * B + b) * ldz / 4 + d * H + j;
  // zeros at the positions a row does not run (so sums over every position stay finite).
  float* save_gates = nullptr;
  float* save_c = nullptr;
};

__host__ __device__ inline std::size_t align16(std::size_t n) { return (n + 15) & ~std::size_t{15}; }
__host__ __device__ inline int imin(int a, int b) { return a < b ? a : b; }
__host__ __device__ inline int imax(int a, int b) { return a > b ? a : b; }

// dst[b * ld + col] = src[(d * B + b) * ld + col] (0 for a null src) for the columns [col0, col0 + n) of every
// row b: a block's columns of direction d of a [D, B, ld] state (h0, c0, dh_n, dc_n), over its threads.
__device__ inline void load_state_columns(float* dst, const float* src, int d, int B, int ld, int col0, int n, int tid,
                                          int nthreads) {
  for (int e = tid; e < B * n; e += nthreads) {
    const int b = e / n, col = col0 + e - b * n;
    dst[b * ld + col] = src != nullptr ? src[(static_cast<std::int64_t>(d) * B + b) * ld + col] : 0.0f;
  }
}

// The dynamic shared memory of one block: [W_hh slice 4U x R][W_hr slice Up x H] (when on chip), then the
// staged h rows [batch_chunk][R] (operand format) and the gate sums [batch_chunk][4U] (floats).
template <class Storage>
__host__ __device__ inline std::size_t rec_weight_bytes(int U, int Up, int R, int H) {
  return align16(sizeof(Storage) * 4 * static_cast<std::size_t>(U) * R) +
         align16(sizeof(Storage) * static_cast<std::size_t>(Up) * H);
}

// Warp-wide dot of a weight row with an activation row (the activation rounded to the operand format);
// every lane returns the sum. Lanes take k = lane, lane + 32, ...: consecutive addresses in both rows.
template <Operand Op>
__device__ inline float warp_dot(const typename OperandTraits<Op>::Storage* w, const float* a, int n, int lane) {
  using Tr = OperandTraits<Op>;
  float s = 0.0f;
  for (int k = lane; k < n; k += 32) s += Tr::load(w[k]) * Tr::round(a[k]);
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  return s;
}

template <Operand Op, bool kPeephole>
__global__ void __launch_bounds__(kRecThreads, 1) recurrence_kernel(RecurrenceParams<Op> p) {
  using Storage = typename OperandTraits<Op>::Storage;
  const int d = static_cast<int>(blockIdx.y);
  const int H = p.H, R = p.R, B = p.B, U = p.units, Up = p.punits;
  const int j0 = static_cast<int>(blockIdx.x) * U, uact = imax(0, imin(U, H - j0));
  const int q0 = static_cast<int>(blockIdx.x) * Up, pact = p.P > 0 ? imax(0, imin(Up, p.P - q0)) : 0;
  const int tid = static_cast<int>(threadIdx.x), nthreads = static_cast<int>(blockDim.x);
  const int warp = tid / 32, lane = tid % 32, nwarps = nthreads / 32;

  unsigned char* smem = prim::dynamic_smem<unsigned char>();
  const Storage* whh_g = p.w_hh + static_cast<std::int64_t>(d) * 4 * H * R;
  const Storage* whr_g = p.P > 0 ? p.w_hr + static_cast<std::int64_t>(d) * p.P * H : nullptr;
  Storage* whh_s = reinterpret_cast<Storage*>(smem);
  Storage* whr_s = reinterpret_cast<Storage*>(smem + align16(sizeof(Storage) * 4 * static_cast<std::size_t>(U) * R));
  unsigned char* const staging = smem + (p.weights_in_smem ? rec_weight_bytes<Storage>(U, Up, R, H) : 0);
  Storage* hs = reinterpret_cast<Storage*>(staging);
  float* acc =
      reinterpret_cast<float*>(staging + align16(sizeof(Storage) * static_cast<std::size_t>(p.batch_chunk) * R));
  // Row r = gate * uact + u of this block's W_hh slice, and row q of its W_hr slice.
  const auto whh_row = [&](int r) -> const Storage* {
    const int gate = r / uact, u = r - gate * uact;
    return p.weights_in_smem ? whh_s + static_cast<std::int64_t>(r) * R
                             : whh_g + (static_cast<std::int64_t>(gate) * H + j0 + u) * R;
  };
  const auto whr_row = [&](int q) -> const Storage* {
    return p.weights_in_smem ? whr_s + static_cast<std::int64_t>(q) * H : whr_g + static_cast<std::int64_t>(q0 + q) * H;
  };

  float* const hb = p.hbuf + static_cast<std::int64_t>(d) * 2 * B * R;
  float* const cs = p.c_n + static_cast<std::int64_t>(d) * B * H;
  float* const mb = p.P > 0 ? p.mbuf + static_cast<std::int64_t>(d) * B * H : nullptr;
  float* const hn = p.h_n + static_cast<std::int64_t>(d) * B * R;
  const float* const pe = kPeephole ? p.peep + static_cast<std::int64_t>(d) * 3 * H : nullptr;
  // The h columns this block writes: its projection outputs, or its hidden units.
  const int h0col = p.P > 0 ? q0 : j0, hcols = p.P > 0 ? pact : uact;

  // Prologue: the weight slices on chip, the initial states of the owned columns.
  if (p.weights_in_smem) {
    for (int e = tid; e < 4 * uact * R; e += nthreads) {
      const int r = e / R, k = e - r * R, gate = r / uact, u = r - gate * uact;
      whh_s[e] = whh_g[(static_cast<std::int64_t>(gate) * H + j0 + u) * R + k];
    }
    for (int e = tid; e < pact * H; e += nthreads) whr_s[e] = whr_g[static_cast<std::int64_t>(q0) * H + e];
  }
  load_state_columns(cs, p.c0, d, B, H, j0, uact, tid, nthreads);
  load_state_columns(hb, p.h0, d, B, R, h0col, hcols, tid, nthreads);
  prim::grid_sync();

  for (int s = 0; s < p.T; ++s) {
    const float* hprev = hb + (s & 1) * B * R;
    float* hnext = hb + ((s + 1) & 1) * B * R;
    const bool last = s == p.T - 1;
    // Position of step s for row b, and whether the row still runs.
    const auto position = [&](int b, bool* active) {
      const int len = p.lengths != nullptr ? p.lengths[b] : p.T;
      *active = s < len;
      return (d == 1 && *active) ? len - 1 - s : s;
    };
    for (int b0 = 0; b0 < B && uact > 0; b0 += p.batch_chunk) {
      const int nb = imin(p.batch_chunk, B - b0), rows = 4 * uact;
      for (int e = tid; e < nb * R; e += nthreads) hs[e] = OperandTraits<Op>::store(hprev[b0 * R + e]);
      __syncthreads();
      gates_product<Op>(whh_row, hs, nb, R, rows, acc, 4 * U, warp, nwarps, lane);
      __syncthreads();
      for (int e = tid; e < nb * uact; e += nthreads) {
        const int bi = e / uact, u = e - bi * uact, b = b0 + bi, j = j0 + u;
        bool active;
        const int t = position(b, &active);
        float* yv = p.y + t * p.y_st + b * p.y_sb + d * R;
        if (!active) {  // frozen: h and c kept, y zero (the projection's columns are handled below)
          if (p.save_gates != nullptr) {
            float* sg = p.save_gates + (static_cast<std::int64_t>(t) * B + b) * p.ldz + d * 4 * H + j;
            for (int q = 0; q < 4; ++q) sg[q * H] = 0.0f;
            p.save_c[(static_cast<std::int64_t>(t) * B + b) * (p.ldz / 4) + d * H + j] = 0.0f;
          }
          if (p.P == 0) {
            hnext[b * R + j] = hprev[b * R + j];
            if (last) hn[b * R + j] = hprev[b * R + j];
            yv[j] = 0.0f;
          }
          continue;
        }
        const float* zr = p.z + (static_cast<std::int64_t>(t) * B + b) * p.ldz + static_cast<std::int64_t>(d) * 4 * H;
        const float* a = acc + bi * 4 * U;
        float hv, cv, gv[4];
        cell_point_f32<kPeephole>(zr[j] + a[u], zr[H + j] + a[uact + u], zr[2 * H + j] + a[2 * uact + u],
                                  zr[3 * H + j] + a[3 * uact + u], cs[b * H + j], kPeephole ? pe[j] : 0.0f,
                                  kPeephole ? pe[H + j] : 0.0f, kPeephole ? pe[2 * H + j] : 0.0f, &hv, &cv, gv);
        cs[b * H + j] = cv;
        if (p.save_gates != nullptr) {
          float* sg = p.save_gates + (static_cast<std::int64_t>(t) * B + b) * p.ldz + d * 4 * H + j;
          for (int q = 0; q < 4; ++q) sg[q * H] = gv[q];
          p.save_c[(static_cast<std::int64_t>(t) * B + b) * (p.ldz / 4) + d * H + j] = cv;
        }
        if (p.P > 0) {
          mb[b * H + j] = hv;
        } else {
          hnext[b * R + j] = hv;
          yv[j] = hv;
          if (last) hn[b * R + j] = hv;
        }
      }
      __syncthreads();  // hs and acc are reused by the next chunk
    }
    if (p.P > 0) {
      prim::grid_sync();  // m_t complete
      for (int o = warp; o < B * pact; o += nwarps) {
        const int b = o / pact, q = q0 + o - b * pact;
        bool active;
        const int t = position(b, &active);
        const float v = active ? warp_dot<Op>(whr_row(q - q0), mb + b * H, H, lane) : hprev[b * R + q];
        if (lane == 0) {
          hnext[b * R + q] = v;
          p.y[t * p.y_st + b * p.y_sb + d * R + q] = active ? v : 0.0f;
          if (last) hn[b * R + q] = v;
        }
      }
    }
    prim::grid_sync();  // h_t complete
  }
}

// The plan: U hidden units per block so that both directions' blocks fill the SMs once (one block per SM,
// all co-resident: the grid barrier needs that), the weight slices on chip when they fit next to at least
// one row's h and gate sums, and then as many batch rows per pass as the rest of shared memory holds.
struct RecurrencePlan {
  LaunchPlan launch;
  int units = 0, punits = 0, batch_chunk = 0;
  bool weights_in_smem = false;
};

inline RecurrencePlan recurrence_plan(int H, int P, int D, int B, std::size_t operand_bytes, const DeviceLimits& dev) {
  RecurrencePlan plan;
  const int per_dir = std::max(1, dev.sm_count / D);
  plan.units = (H + per_dir - 1) / per_dir;
  const int nblk = (H + plan.units - 1) / plan.units;
  plan.punits = P > 0 ? (P + nblk - 1) / nblk : 0;
  const int R = P > 0 ? P : H;
  const std::size_t weights = align16(operand_bytes * 4 * static_cast<std::size_t>(plan.units) * R) +
                              align16(operand_bytes * static_cast<std::size_t>(plan.punits) * H);
  const std::size_t per_row = sizeof(float) * (static_cast<std::size_t>(R) + 4 * static_cast<std::size_t>(plan.units));
  plan.weights_in_smem = weights + per_row + 16 <= dev.max_smem_per_block;
  const std::size_t room = dev.max_smem_per_block - (plan.weights_in_smem ? weights : 0) - 16;
  plan.batch_chunk = static_cast<int>(std::max<std::size_t>(1, std::min<std::size_t>(B, room / per_row)));
  const std::size_t sums = align16(per_row * plan.batch_chunk);
  plan.launch.grid.x = static_cast<unsigned>(nblk);
  plan.launch.grid.y = static_cast<unsigned>(D);
  plan.launch.block.x = kRecThreads;
  plan.launch.dynamic_smem = (plan.weights_in_smem ? weights : 0) + sums;
  plan.launch.cooperative = true;
  return plan;
}

}  // namespace fastlstm::cuda::detail
