// The fused pointwise LSTM cell of one step (gates -> c, h) and its plan. Device code only, through
// common/primitives.cuh, so it compiles under nvcc and on the CPU execution model alike; the launcher is
// kernels/cell_pointwise_launch.cuh.
#pragma once

#include <algorithm>
#include <cstdint>

#include "cells/lstm.cuh"
#include "common/plan.h"
#include "common/primitives.cuh"

namespace fastlstm::cuda::detail {

constexpr int kCellBlock = 256;

// Element idx = b*H + j of [B,H]; z row b holds the four gate blocks at b*4H + {0,1,2,3}*H + j, so
// consecutive threads read consecutive addresses in each of the five input streams (coalesced).
// Index is uint32_t when every z index fits (cheaper division), else int64_t.
// c_prev and c are not __restrict__: they may be the same array (each thread reads its element before it
// writes it, and no thread touches another's element, so the in-place update is race-free).
template <bool kPeephole, typename Index>
__global__ void __launch_bounds__(kCellBlock)
    cell_forward_f32_kernel(Index n, Index H, const float* __restrict__ z, const float* c_prev,
                            const float* __restrict__ p_i, const float* __restrict__ p_f, const float* __restrict__ p_o,
                            float* __restrict__ h, float* c) {
  const Index stride = static_cast<Index>(gridDim.x) * static_cast<Index>(blockDim.x);
  for (Index idx = static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) + threadIdx.x; idx < n;
       idx += stride) {
    const Index b = idx / H;
    const Index j = idx - b * H;
    const float* zr = z + b * (4 * H) + j;
    float pi = 0.0f, pf = 0.0f, po = 0.0f;
    if constexpr (kPeephole) {
      pi = p_i[j];
      pf = p_f[j];
      po = p_o[j];
    }
    float hv, cv;
    cell_point_f32<kPeephole>(zr[0], zr[H], zr[2 * H], zr[3 * H], c_prev[idx], pi, pf, po, &hv, &cv);
    c[idx] = cv;
    h[idx] = hv;
  }
}

// n = B*H elements: one full wave of resident blocks at most; the grid-stride loop covers the rest, so huge
// B*H never needs a grid larger than the device can hold at once.
inline LaunchPlan cell_forward_plan(std::int64_t n, const DeviceLimits& dev) {
  const std::int64_t wave = static_cast<std::int64_t>(dev.sm_count) * std::max(1, dev.max_threads_per_sm / kCellBlock);
  const std::int64_t blocks = std::max<std::int64_t>(1, std::min((n + kCellBlock - 1) / kCellBlock, wave));
  LaunchPlan plan;
  plan.grid.x = static_cast<unsigned>(blocks);
  plan.block.x = kCellBlock;
  return plan;
}

}  // namespace fastlstm::cuda::detail
