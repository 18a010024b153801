// The forward's launcher (nvcc, or the CPU execution model's runtime: cuda/testing/runtime): forward.cuh's
// orchestration with an executor that launches on a CUDA stream (cooperatively when the plan says so, with the opt-in
// shared memory a plan above 48 KiB needs). Instantiated per operand format in inst/forward_*.cu; launch/engine.cu
// calls the instance.
#pragma once

#include <cuda_runtime.h>

#include "common/check.cuh"
#include "kernels/forward.cuh"

namespace fastlstm::cuda::detail {

struct StreamExec {
  cudaStream_t stream = nullptr;

  template <class Params>
  void operator()(const LaunchPlan& plan, void (*kernel)(Params), const Params& params) const {
    const dim3 grid(plan.grid.x, plan.grid.y, plan.grid.z), block(plan.block.x, plan.block.y, plan.block.z);
    if (plan.dynamic_smem > 48 * 1024) {
      check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(plan.dynamic_smem)),
            "cudaFuncSetAttribute");
    }
    // The runtime's typed launch calls (no <<<>>>): the same source runs on the CPU execution model's runtime.
    void* args[] = {const_cast<Params*>(&params)};
    if (plan.cooperative) {
      check(cudaLaunchCooperativeKernel(kernel, grid, block, args, plan.dynamic_smem, stream),
            "cudaLaunchCooperativeKernel");
    } else {
      check(cudaLaunchKernel(kernel, grid, block, args, plan.dynamic_smem, stream), "cudaLaunchKernel");
    }
  }
};

template <Operand Op>
void launch_forward(const DeviceLimits& dev, const ModelShape& s, const PackedLayer<Op>* layers, const ForwardIO& io,
                    void* workspace, cudaStream_t stream) {
  StreamExec exec{stream};
  forward_sequence<Op>(exec, dev, s, layers, io, workspace);
}

extern template void launch_forward<Operand::kF32>(const DeviceLimits&, const ModelShape&,
                                                   const PackedLayer<Operand::kF32>*, const ForwardIO&, void*,
                                                   cudaStream_t);
extern template void launch_forward<Operand::kTF32>(const DeviceLimits&, const ModelShape&,
                                                    const PackedLayer<Operand::kTF32>*, const ForwardIO&, void*,
                                                    cudaStream_t);
extern template void launch_forward<Operand::kBF16>(const DeviceLimits&, const ModelShape&,
                                                    const PackedLayer<Operand::kBF16>*, const ForwardIO&, void*,
                                                    cudaStream_t);
extern template void launch_forward<Operand::kF16>(const DeviceLimits&, const ModelShape&,
                                                   const PackedLayer<Operand::kF16>*, const ForwardIO&, void*,
                                                   cudaStream_t);

}  // namespace fastlstm::cuda::detail
