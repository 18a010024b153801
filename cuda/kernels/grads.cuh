// The gradients a layer's backward recurrence leaves to whole-sequence products (recurrence_bwd.cuh wrote dz
// [T*B, D*4H] for every position, zeros where a row did not run). The products run in the precision's
// operand format (operand.cuh: fp32 on FMA chains, tf32 / bf16 / fp16 on the tensor cores with fp32
// accumulators; db and the peepholes' gradients always in fp32) over 64 x 64 output tiles, the reduction in
// slices of 16 through shared memory in ascending order: each output element is one fixed chain of FMAs or
// mma's, with no atomics and no split sums, so every gradient is bitwise the same from run to run.
//   outer   dW[n, k] = sum_m dz[m, a_off + n] * v_m[k]: dW_ih (v = the layer input x), dW_hh (v = h_{t-1} of
//           direction d: the previous position's y, or h0 at a row's first step), db (v = 1) and, with a
//           projection, dW_hr (dz -> dr_t, v = m_t = o * tanh(c_t))
//   peep    dp_i[j] = sum_m dz_i c_{t-1}, dp_f[j] = sum_m dz_f c_{t-1}, dp_o[j] = sum_m dz_o c_t
//   input   dx[m, i] = sum_n dz[m, n] W_ih[n, i]: the gradient reaching the layer input
// Device code only; the plans are host code.
#pragma once

#include <cstdint>

#include "common/plan.h"
#include "common/primitives.cuh"
#include "kernels/input_proj.cuh"
#include "kernels/operand.cuh"

namespace fastlstm::cuda::detail {

constexpr int kGradThreads = 256;

enum class OuterRows : int { kInput = 0, kHprev = 1, kOnes = 2, kCellOut = 3 };

struct OuterParams {
  int M = 0, N = 0, K = 0, B = 0, T = 0;
  const float* dz = nullptr;  // row m at dz + m * ldz + a_off
  std::int64_t ldz = 0, a_off = 0;
  OuterRows rows = OuterRows::kOnes;
  // kInput: v_m = x + (m / B) * x_st + (m % B) * x_sb. kHprev (direction d): the previous position's output
  // y + tp * x_st + b * x_sb + d * K, or h0 + (d * B + b) * K (null: zeros) at the row's first step.
  const float* x = nullptr;
  std::int64_t x_st = 0, x_sb = 0;
  const float* x_mask = nullptr;  // kInput under dropout: v_m = x * mask (laid out as x), or null
  int d = 0;
  const float* h0 = nullptr;
  const int* lengths = nullptr;  // [B] or null (all T)
  // kCellOut (direction d, K = H): v_m = m_t = o * tanh(c_t) from the forward's saved gates and c (train.cuh).
  const float* gates = nullptr;
  const float* c = nullptr;
  std::int64_t ldg = 0;
  float* out = nullptr;   // [N, K] row-major
  float* out2 = nullptr;  // a second copy of out (b_hh beside b_ih), or null
};

// Element k of row m's v.
__device__ inline float outer_value(const OuterParams& p, int m, int k) {
  if (p.rows == OuterRows::kOnes) return 1.0f;
  if (p.rows == OuterRows::kCellOut) {
    const float o = p.gates[m * p.ldg + (p.d * 4 + 3) * p.K + k];
    return o * tanhf(p.c[m * (p.ldg / 4) + p.d * p.K + k]);
  }
  const int t = m / p.B, b = m - t * p.B;
  if (p.rows == OuterRows::kInput) {
    const std::int64_t at = t * p.x_st + b * p.x_sb + k;
    return p.x_mask != nullptr ? p.x[at] * p.x_mask[at] : p.x[at];
  }
  const int len = p.lengths != nullptr ? p.lengths[b] : p.T;
  const bool first = p.d == 1 ? t + 1 >= len : t == 0;
  if (!first) return p.x[(p.d == 1 ? t + 1 : t - 1) * p.x_st + b * p.x_sb + p.d * p.K + k];
  return p.h0 != nullptr ? p.h0[(static_cast<std::int64_t>(p.d) * p.B + b) * p.K + k] : 0.0f;
}

// The block's 64 x 64 output tile, accumulated over reduction slices of 16 held in shared memory as
// as[q][row] and bs[q][col] (values already in the operand format). fp32: thread tid owns rows
// 4 (tid / 16) + i and columns 4 (tid % 16) + j (i, j < 4), one FMA chain each. tf32 / bf16 / fp16: the input
// projection's tensor-core tiling (warp w owns rows 32 (w / 4) + 32 and columns 16 (w % 4) + 16, 2 x 2 mma
// tiles of 16 x 8, input_proj.cuh's proj_mma_k16). Either way each output's sum runs over the slices in order.
constexpr int kGradTile = 64, kGradSlice = 16;
static_assert(kGradTile == kProjBM && kGradTile == kProjBN && kGradSlice == kProjBK, "one shared-memory tile shape");
using GradSlice = float[kGradSlice][kGradTile + 4];

template <Operand Op>
struct GradTile {
  float acc[4][4] = {};  // fp32: [i][j]; tensor cores: [2 mi + ni] is mma tile (mi, ni)'s accumulator fragment

  __device__ void add_slice(const GradSlice& as, const GradSlice& bs) {
    const int tid = static_cast<int>(threadIdx.x);
    if constexpr (Op == Operand::kF32) {
      const int r0 = (tid / 16) * 4, c0 = (tid % 16) * 4;
      for (int q = 0; q < kGradSlice; ++q) {
        float a[4], b[4];
        for (int i = 0; i < 4; ++i) a[i] = as[q][r0 + i];
        for (int j = 0; j < 4; ++j) b[j] = bs[q][c0 + j];
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
      }
    } else {
      const int warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
      for (int mi = 0; mi < 2; ++mi) {
        for (int ni = 0; ni < 2; ++ni)
          proj_mma_k16<Op>(acc[2 * mi + ni], as, bs, 32 * (warp / 4) + 16 * mi, 16 * (warp % 4) + 8 * ni, g, t);
      }
    }
  }

  // The whole reduction of length K, in slices through shared memory: a(k, r) and b(k, c) give the operands of
  // tile row r and tile column c at reduction index k < K, already in the operand format (zero where the tile
  // overhangs the matrix). The kernels' functors capture by value: a reference to a kernel parameter would
  // give it a stack copy.
  template <class A, class B>
  __device__ void reduce(int K, A a, B b) {
    __shared__ GradSlice as, bs;
    for (int k0 = 0; k0 < K; k0 += kGradSlice) {
      for (int e = static_cast<int>(threadIdx.x); e < kGradSlice * kGradTile; e += kGradThreads) {
        const int q = e / kGradTile, c = e - q * kGradTile;
        as[q][c] = k0 + q < K ? a(k0 + q, c) : 0.0f;
        bs[q][c] = k0 + q < K ? b(k0 + q, c) : 0.0f;
      }
      __syncthreads();
      add_slice(as, bs);
      __syncthreads();
    }
  }

  // f(row, col, value) for each of this thread's outputs (tile coordinates).
  template <class F>
  __device__ void for_each(F&& f) const {
    const int tid = static_cast<int>(threadIdx.x);
    if constexpr (Op == Operand::kF32) {
      for (int e = 0; e < 16; ++e) f((tid / 16) * 4 + e / 4, (tid % 16) * 4 + e % 4, acc[e / 4][e % 4]);
    } else {  // fragment element i of mma tile (mi, ni): row g (+8 for i >= 2), column 2t (+1 for odd i)
      const int warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
      for (int e = 0; e < 16; ++e) {
        const int mi = e / 8, ni = (e / 4) % 2, i = e % 4;
        f(32 * (warp / 4) + 16 * mi + g + 8 * (i >> 1), 16 * (warp % 4) + 8 * ni + 2 * t + (i & 1), acc[e / 4][i]);
      }
    }
  }
};

template <Operand Op>
__global__ void __launch_bounds__(kGradThreads) outer_grad_kernel(OuterParams p) {
  using Tr = OperandTraits<Op>;
  const int n0 = static_cast<int>(blockIdx.y) * kGradTile, k0 = static_cast<int>(blockIdx.x) * kGradTile;
  GradTile<Op> tile;
  tile.reduce(
      p.M, [=](int m, int c) { return n0 + c < p.N ? Tr::round(p.dz[m * p.ldz + p.a_off + n0 + c]) : 0.0f; },
      [=](int m, int c) { return k0 + c < p.K ? Tr::round(outer_value(p, m, k0 + c)) : 0.0f; });
  tile.for_each([&](int r, int c, float v) {
    const int n = n0 + r, k = k0 + c;
    if (n < p.N && k < p.K) {
      p.out[static_cast<std::int64_t>(n) * p.K + k] = v;
      if (p.out2 != nullptr) p.out2[static_cast<std::int64_t>(n) * p.K + k] = v;
    }
  });
}

// The tiles of an [N, K] (outer) or [M, K] (input) product.
inline LaunchPlan grad_tile_plan(std::int64_t rows, std::int64_t cols) {
  LaunchPlan plan;
  plan.grid.x = static_cast<unsigned>((cols + kGradTile - 1) / kGradTile);
  plan.grid.y = static_cast<unsigned>((rows + kGradTile - 1) / kGradTile);
  plan.block.x = kGradThreads;
  return plan;
}

struct PeepGradParams {
  int T = 0, B = 0, H = 0;
  const float* dz = nullptr;  // [T*B, ldz], direction d at d * 4H
  const float* c = nullptr;   // the saved c_t: [T*B, ldz / 4], direction d at d * H
  std::int64_t ldz = 0;
  const float* c0 = nullptr;  // [D, B, H] or null
  const int* lengths = nullptr;
  int d = 0;                                             // the direction
  float *p_i = nullptr, *p_f = nullptr, *p_o = nullptr;  // [H] each
};

// A template only for its linkage: included by several translation units, one definition each.
template <int = 0>
__global__ void __launch_bounds__(kGradThreads) peep_grad_kernel(PeepGradParams p) {
  const int e = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x), d = p.d;
  if (e >= p.H) return;
  const int j = e, H = p.H;
  const std::int64_t ldc = p.ldz / 4;
  float si = 0.0f, sf = 0.0f, so = 0.0f;
  for (int t = 0; t < p.T; ++t) {
    for (int b = 0; b < p.B; ++b) {
      const int len = p.lengths != nullptr ? p.lengths[b] : p.T;
      if (t >= len) continue;
      const bool first = d == 1 ? t + 1 >= len : t == 0;
      const std::int64_t row = static_cast<std::int64_t>(t) * p.B + b;
      float c_prev;
      if (first) {
        c_prev = p.c0 != nullptr ? p.c0[(static_cast<std::int64_t>(d) * p.B + b) * H + j] : 0.0f;
      } else {
        c_prev = p.c[(row + (d == 1 ? p.B : -p.B)) * ldc + d * H + j];
      }
      const float* dz = p.dz + row * p.ldz + d * 4 * H + j;
      si += dz[0] * c_prev;
      sf += dz[H] * c_prev;
      so += dz[3 * H] * p.c[row * ldc + d * H + j];
    }
  }
  p.p_i[j] = si;
  p.p_f[j] = sf;
  p.p_o[j] = so;
}

template <Operand Op>
struct InputGradParams {
  using Storage = typename OperandTraits<Op>::Storage;
  int M = 0, N = 0, K = 0, B = 0;
  const float* dz = nullptr;   // [M, N]
  const Storage* w = nullptr;  // [N, K]: the packed W_ih (both directions stacked)
  float* dx = nullptr;         // row m at dx + (m / B) * dx_st + (m % B) * dx_sb, K elements
  std::int64_t dx_st = 0, dx_sb = 0;
};

template <Operand Op>
__global__ void __launch_bounds__(kGradThreads) input_grad_kernel(InputGradParams<Op> p) {
  using Tr = OperandTraits<Op>;
  const int m0 = static_cast<int>(blockIdx.y) * kGradTile, i0 = static_cast<int>(blockIdx.x) * kGradTile;
  GradTile<Op> tile;
  tile.reduce(
      p.N,
      [=](int n, int c) { return m0 + c < p.M ? Tr::round(p.dz[static_cast<std::int64_t>(m0 + c) * p.N + n]) : 0.0f; },
      [=](int n, int c) { return i0 + c < p.K ? Tr::load(p.w[static_cast<std::int64_t>(n) * p.K + i0 + c]) : 0.0f; });
  tile.for_each([&](int r, int c, float v) {
    const int m = m0 + r, k = i0 + c;
    if (m < p.M && k < p.K) {
      const int t = m / p.B, b = m - t * p.B;
      p.dx[t * p.dx_st + b * p.dx_sb + k] = v;
    }
  });
}

// One thread per output element, kGradThreads to a block.
inline LaunchPlan elementwise_plan(std::int64_t n, unsigned grid_y = 1) {
  LaunchPlan plan;
  plan.grid.x = static_cast<unsigned>((n + kGradThreads - 1) / kGradThreads);
  plan.grid.y = grid_y;
  plan.block.x = kGradThreads;
  return plan;
}

}  // namespace fastlstm::cuda::detail
