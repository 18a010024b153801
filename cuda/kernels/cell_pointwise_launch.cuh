// The fused cell's launcher template (nvcc, or the CPU execution model's runtime): the device's limits -> the plan ->
// the launch. Instantiated in inst/cell_pointwise_f32.cu; launch/cell.cu picks the instance.
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
  Index count = static_cast<Index>(n), H = static_cast<Index>(p.H);
  void* args[] = {&count,
                  &H,
                  const_cast<const float**>(&p.z),
                  const_cast<const float**>(&p.c_prev),
                  const_cast<const float**>(&p.p_i),
                  const_cast<const float**>(&p.p_f),
                  const_cast<const float**>(&p.p_o),
                  const_cast<float**>(&p.h),
                  const_cast<float**>(&p.c)};
  check(cudaLaunchKernel(cell_forward_f32_kernel<kPeephole, Index>, dim3(plan.grid.x), dim3(plan.block.x), args,
                         plan.dynamic_smem, stream),
        "cell_forward_f32 kernel launch");
}

// The instances inst/cell_pointwise_f32.cu compiles (each instantiation file keeps builds and diffs small).
extern template void launch_cell_forward_f32<false, std::uint32_t>(const CellParams&, cudaStream_t);
extern template void launch_cell_forward_f32<true, std::uint32_t>(const CellParams&, cudaStream_t);
extern template void launch_cell_forward_f32<false, std::int64_t>(const CellParams&, cudaStream_t);
extern template void launch_cell_forward_f32<true, std::int64_t>(const CellParams&, cudaStream_t);

}  // namespace fastlstm::cuda::detail
