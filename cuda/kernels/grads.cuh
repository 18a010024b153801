// The gradients a layer's backward recurrence leaves to whole-sequence products (recurrence_bwd.cuh wrote dz
// [T*B, D*4H] for every position, zeros where a row did not run). Each output element is one thread's sum over
// the rows m = t * B + b in ascending order: no atomics and no split sums, so every gradient is bitwise the
// same from run to run (and across launch shapes). Products in fp32 with the packed (operand-rounded) weights.
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
  float* out = nullptr;  // [N, K] row-major
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

// A template only for its linkage: included by several translation units, one definition each.
template <int = 0>
__global__ void __launch_bounds__(kGradThreads) outer_grad_kernel(OuterParams p) {
  const std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= static_cast<std::int64_t>(p.N) * p.K) return;
  const int n = static_cast<int>(e / p.K), k = static_cast<int>(e - static_cast<std::int64_t>(n) * p.K);
  float s = 0.0f;
  for (int m = 0; m < p.M; ++m) s += p.dz[m * p.ldz + p.a_off + n] * outer_value(p, m, k);
  p.out[e] = s;
}

struct PeepGradParams {
  int T = 0, B = 0, H = 0;
  const float* dz = nullptr;  // [T*B, ldz], direction d at d * 4H
  const float* c = nullptr;   // the saved c_t: [T*B, ldz / 4], direction d at d * H
  std::int64_t ldz = 0;
  const float* c0 = nullptr;  // [D, B, H] or null
  const int* lengths = nullptr;
  float* out = nullptr;  // [D][3][H]
};

// A template only for its linkage: included by several translation units, one definition each.
template <int = 0>
__global__ void __launch_bounds__(kGradThreads) peep_grad_kernel(PeepGradParams p) {
  const int e = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x), d = static_cast<int>(blockIdx.y);
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
  float* out = p.out + static_cast<std::int64_t>(d) * 3 * H + j;
  out[0] = si;
  out[H] = sf;
  out[2 * H] = so;
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
  const std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= static_cast<std::int64_t>(p.M) * p.K) return;
  const int m = static_cast<int>(e / p.K), i = static_cast<int>(e - static_cast<std::int64_t>(m) * p.K);
  const float* dz = p.dz + static_cast<std::int64_t>(m) * p.N;
  float s = 0.0f;
  for (int n = 0; n < p.N; ++n) s += dz[n] * OperandTraits<Op>::load(p.w[static_cast<std::int64_t>(n) * p.K + i]);
  const int t = m / p.B, b = m - t * p.B;
  p.dx[t * p.dx_st + b * p.dx_sb + i] = s;
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
