// The fused cell's launcher template (nvcc only): the device's limits -> the plan -> the launch. Instantiated
// in inst/cell_pointwise_f32.cu; launch/cell.cu picks the instance.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/check.cuh"
#include "kernels/cell_pointwise.cuh"

namespace fastlstm::cuda::detail {

template <bool kPeephole, typename Index>
void launch_cell_forward_f32(const CellParams& p, cudaStream_t stream) {
  const std::int64_t n = static_cast<std::int64_t>(p.B) * p.H;
  const LaunchPlan plan = cell_forward_plan(n, current_device_limits());
  cell_forward_f32_kernel<kPeephole, Index><<<plan.grid.x, plan.block.x, plan.dynamic_smem, stream>>>(
      static_cast<Index>(n), static_cast<Index>(p.H), p.z, p.c_prev, p.p_i, p.p_f, p.p_o, p.h, p.c);
  check(cudaGetLastError(), "cell_forward_f32 kernel launch");
}

// The instances inst/cell_pointwise_f32.cu compiles (each instantiation file keeps builds and diffs small).
extern template void launch_cell_forward_f32<false, std::uint32_t>(const CellParams&, cudaStream_t);
extern template void launch_cell_forward_f32<true, std::uint32_t>(const CellParams&, cudaStream_t);
extern template void launch_cell_forward_f32<false, std::int64_t>(const CellParams&, cudaStream_t);
extern template void launch_cell_forward_f32<true, std::int64_t>(const CellParams&, cudaStream_t);

}  // namespace fastlstm::cuda::detail
