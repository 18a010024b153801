// The input projection of one layer, every time step at once (it does not depend on the recurrence):
//   z[m, n] = bias[n] + sum_k x[m, k] * W[n, k]      m = t * B + b (all T*B rows), n < N = D * 4H
// with both directions' W_ih stacked along n, so a layer is one GEMM. x rows are strided (the user's
// [T,B,I] or [B,T,I], or the previous layer's y); z is contiguous [T*B, N]. Operands are rounded to the
// precision's format (operand.cuh) as they enter shared memory; sums are fp32.
//   fp32:             SIMT, 4x4 outputs per thread.
//   tf32 / bf16 / f16: tensor cores, mma.sync with fp32 accumulators, a 32x16 tile per warp.
// Both use one 64x64 block tile and K in slices of 16 through shared memory. Device code only.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/plan.h"
#include "common/primitives.cuh"
#include "kernels/operand.cuh"

namespace fastlstm::cuda::detail {

constexpr int kProjBM = 64, kProjBN = 64, kProjBK = 16, kProjThreads = 256;

template <Operand Op>
struct InputProjParams {
  using Storage = typename OperandTraits<Op>::Storage;
  int M = 0, N = 0, K = 0;  // rows (T*B), outputs (D*4H), inputs (I or D*Hout)
  int B = 0;                // rows per time step: row m is x[(m / B) * x_st + (m % B) * x_sb]
  const float* x = nullptr;
  std::int64_t x_st = 0, x_sb = 0;
  const float* x_mask = nullptr;  // training dropout: x is read as x * mask (mask laid out as x), or null
  const Storage* w = nullptr;     // [N, K] row-major, already in the operand format
  const float* bias = nullptr;    // [N] (b_ih + b_hh), or null
  float* z = nullptr;             // [M, N], written
};

// One K slice of the block's tiles into shared memory as rounded floats: xs[k][m] and ws[k][n]; elements
// outside the matrices are zeros (they add nothing). Each thread moves 4 + 4 elements.
template <Operand Op>
__device__ inline void proj_load_slice(const InputProjParams<Op>& p, int m0, int n0, int k0,
                                       float (&xs)[kProjBK][kProjBM + 4], float (&ws)[kProjBK][kProjBN + 4]) {
  using Tr = OperandTraits<Op>;
  const int r = static_cast<int>(threadIdx.x) / 4, kq = (static_cast<int>(threadIdx.x) % 4) * 4;
  const int m = m0 + r, n = n0 + r;
  const float* xrow = nullptr;
  const float* mrow = nullptr;
  if (m < p.M) {
    const int t = m / p.B, b = m - t * p.B;
    xrow = p.x + t * p.x_st + b * p.x_sb;
    if (p.x_mask != nullptr) mrow = p.x_mask + t * p.x_st + b * p.x_sb;
  }
  for (int i = 0; i < 4; ++i) {
    const int k = k0 + kq + i;
    xs[kq + i][r] = xrow != nullptr && k < p.K ? Tr::round(mrow != nullptr ? xrow[k] * mrow[k] : xrow[k]) : 0.0f;
    ws[kq + i][r] = n < p.N && k < p.K ? Tr::load(p.w[static_cast<std::int64_t>(n) * p.K + k]) : 0.0f;
  }
}

// fp32: thread (ty, tx) of a 16x16 grid owns rows ty + 16 i and columns tx + 16 j (i, j < 4), so the
// 16 threads of a half-warp read 16 consecutive columns of ws (no bank conflicts).
template <Operand Op>
__global__ void __launch_bounds__(kProjThreads) input_proj_simt_kernel(InputProjParams<Op> p) {
  __shared__ float xs[kProjBK][kProjBM + 4];
  __shared__ float ws[kProjBK][kProjBN + 4];
  const int m0 = static_cast<int>(blockIdx.x) * kProjBM, n0 = static_cast<int>(blockIdx.y) * kProjBN;
  const int tx = static_cast<int>(threadIdx.x) % 16, ty = static_cast<int>(threadIdx.x) / 16;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < p.K; k0 += kProjBK) {
    proj_load_slice(p, m0, n0, k0, xs, ws);
    __syncthreads();
    for (int k = 0; k < kProjBK; ++k) {
      for (int i = 0; i < 4; ++i) {
        for (int j = 0; j < 4; ++j) acc[i][j] += xs[k][ty + 16 * i] * ws[k][tx + 16 * j];
      }
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + ty + 16 * i;
    if (m >= p.M) continue;
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + tx + 16 * j;
      if (n < p.N) p.z[static_cast<std::int64_t>(m) * p.N + n] = acc[i][j] + (p.bias != nullptr ? p.bias[n] : 0.0f);
    }
  }
}

// One mma of the warp's (mi, ni) tile over k in [k, k + 16) of the slice (two m16n8k8 for tf32). Fragment
// layouts as primitives.cuh: g = lane / 4 (A's row, B's column), t = lane % 4.
template <Operand Op>
__device__ inline void proj_mma_k16(float (&d)[4], const float (&xs)[kProjBK][kProjBM + 4],
                                    const float (&ws)[kProjBK][kProjBN + 4], int mrow, int ncol, int g, int t) {
  if constexpr (Op == Operand::kTF32) {
    for (int kk = 0; kk < 16; kk += 8) {
      const std::uint32_t a[4] = {prim::float_bits(xs[kk + t][mrow + g]), prim::float_bits(xs[kk + t][mrow + g + 8]),
                                  prim::float_bits(xs[kk + t + 4][mrow + g]),
                                  prim::float_bits(xs[kk + t + 4][mrow + g + 8])};
      const std::uint32_t b[2] = {prim::float_bits(ws[kk + t][ncol + g]), prim::float_bits(ws[kk + t + 4][ncol + g])};
      prim::mma_m16n8k8_tf32(d, a, b, d);
    }
  } else {
    const auto pack = [](float lo, float hi) {
      return Op == Operand::kBF16 ? prim::pack_bf16x2(lo, hi) : prim::pack_f16x2(lo, hi);
    };
    std::uint32_t a[4], b[2];
    for (int r = 0; r < 4; ++r) {  // rows g (+8 for odd r), columns 2t, 2t+1 (+8 for r >= 2)
      const int m = mrow + g + 8 * (r & 1), k = 2 * t + 8 * (r >> 1);
      a[r] = pack(xs[k][m], xs[k + 1][m]);
    }
    for (int r = 0; r < 2; ++r) {  // rows 2t, 2t+1 (+8 for r = 1), column g
      const int k = 2 * t + 8 * r;
      b[r] = pack(ws[k][ncol + g], ws[k + 1][ncol + g]);
    }
    if constexpr (Op == Operand::kBF16) {
      prim::mma_m16n8k16_bf16(d, a, b, d);
    } else {
      prim::mma_m16n8k16_f16(d, a, b, d);
    }
  }
}

// Tensor cores: warp w of 8 owns rows 32 (w / 4) .. +32 and columns 16 (w % 4) .. +16 of the block tile:
// 2 x 2 mma tiles of 16x8.
template <Operand Op>
__global__ void __launch_bounds__(kProjThreads) input_proj_mma_kernel(InputProjParams<Op> p) {
  __shared__ float xs[kProjBK][kProjBM + 4];
  __shared__ float ws[kProjBK][kProjBN + 4];
  const int m0 = static_cast<int>(blockIdx.x) * kProjBM, n0 = static_cast<int>(blockIdx.y) * kProjBN;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane / 4, t = lane % 4, wm = 32 * (warp / 4), wn = 16 * (warp % 4);
  float acc[2][2][4] = {};
  for (int k0 = 0; k0 < p.K; k0 += kProjBK) {
    proj_load_slice(p, m0, n0, k0, xs, ws);
    __syncthreads();
    for (int mi = 0; mi < 2; ++mi) {
      for (int ni = 0; ni < 2; ++ni) proj_mma_k16<Op>(acc[mi][ni], xs, ws, wm + 16 * mi, wn + 8 * ni, g, t);
    }
    __syncthreads();
  }
  for (int mi = 0; mi < 2; ++mi) {
    for (int ni = 0; ni < 2; ++ni) {
      for (int i = 0; i < 4; ++i) {  // d0 (g, 2t), d1 (g, 2t+1), d2 (g+8, 2t), d3 (g+8, 2t+1)
        const int m = m0 + wm + 16 * mi + g + 8 * (i >> 1), n = n0 + wn + 8 * ni + 2 * t + (i & 1);
        if (m < p.M && n < p.N)
          p.z[static_cast<std::int64_t>(m) * p.N + n] = acc[mi][ni][i] + (p.bias != nullptr ? p.bias[n] : 0.0f);
      }
    }
  }
}

inline LaunchPlan input_proj_plan(int M, int N) {
  LaunchPlan plan;
  plan.grid.x = static_cast<unsigned>((M + kProjBM - 1) / kProjBM);  // x: up to 2^31 - 1 blocks (T*B is the long side)
  plan.grid.y = static_cast<unsigned>((N + kProjBN - 1) / kProjBN);
  plan.block.x = kProjThreads;
  return plan;
}

}  // namespace fastlstm::cuda::detail
