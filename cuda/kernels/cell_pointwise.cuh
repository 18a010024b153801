// The fused pointwise LSTM cell of one step (gates -> c, h), and its launcher template. Instantiated in
// inst/cell_pointwise_f32.cu; launch/cell.cu picks the instance.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cells/lstm.cuh"
#include "common/check.cuh"

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

template <bool kPeephole, typename Index>
void launch_cell_forward_f32(const CellParams& p, cudaStream_t stream) {
  const std::int64_t n = static_cast<std::int64_t>(p.B) * p.H;
  int device = 0, sms = 0, threads_per_sm = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device),
        "cudaDeviceGetAttribute");
  // One full wave of resident blocks at most; the grid-stride loop covers the rest, so huge B*H never
  // needs a grid larger than the device can hold at once.
  const std::int64_t wave = static_cast<std::int64_t>(sms) * std::max(1, threads_per_sm / kCellBlock);
  const std::int64_t blocks = std::max<std::int64_t>(1, std::min((n + kCellBlock - 1) / kCellBlock, wave));
  cell_forward_f32_kernel<kPeephole, Index><<<static_cast<unsigned>(blocks), kCellBlock, 0, stream>>>(
      static_cast<Index>(n), static_cast<Index>(p.H), p.z, p.c_prev, p.p_i, p.p_f, p.p_o, p.h, p.c);
  check(cudaGetLastError(), "cell_forward_f32 kernel launch");
}

// The instances inst/cell_pointwise_f32.cu compiles (each instantiation file keeps builds and diffs small).
extern template void launch_cell_forward_f32<false, std::uint32_t>(const CellParams&, cudaStream_t);
extern template void launch_cell_forward_f32<true, std::uint32_t>(const CellParams&, cudaStream_t);
extern template void launch_cell_forward_f32<false, std::int64_t>(const CellParams&, cudaStream_t);
extern template void launch_cell_forward_f32<true, std::int64_t>(const CellParams&, cudaStream_t);

}  // namespace fastlstm::cuda::detail
