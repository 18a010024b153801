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

// The launcher of one operand format: `extern` declares it (here, for every format), an empty first argument
// instantiates it (inst/forward_<format>.cu, one format per file).
#define FASTLSTM_FORWARD_LAUNCHER(EXTERN, OP)                                                             \
  EXTERN template void launch_forward<OP>(const DeviceLimits&, const ModelShape&, const PackedLayer<OP>*, \
                                          const ForwardIO&, void*, cudaStream_t)

FASTLSTM_FORWARD_LAUNCHER(extern, Operand::kF32);
FASTLSTM_FORWARD_LAUNCHER(extern, Operand::kTF32);
FASTLSTM_FORWARD_LAUNCHER(extern, Operand::kBF16);
FASTLSTM_FORWARD_LAUNCHER(extern, Operand::kF16);

}  // namespace fastlstm::cuda::detail
