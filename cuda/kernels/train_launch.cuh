// The training launchers (nvcc only): train.cuh's forward and backward on a CUDA stream, with the forward's
// executor (forward_launch.cuh). Instantiated per operand format in inst/train_*.cu.
#pragma once

#include <cuda_runtime.h>

#include "kernels/forward_launch.cuh"
#include "kernels/train.cuh"

namespace fastlstm::cuda::detail {

template <Operand Op>
void launch_train_forward(const DeviceLimits& dev, const ModelShape& s, const PackedLayer<Op>* layers,
                          const ForwardIO& io, const float* const* masks, void* saved, void* workspace,
                          cudaStream_t stream) {
  StreamExec exec{stream};
  train_forward<Op>(exec, dev, s, layers, io, masks, saved, workspace);
}

template <Operand Op>
void launch_train_backward(const DeviceLimits& dev, const ModelShape& s, const PackedLayer<Op>* layers,
                           const TrainIO& io, const GradPointers* grads, const void* saved, void* workspace,
                           cudaStream_t stream) {
  StreamExec exec{stream};
  train_backward<Op>(exec, dev, s, layers, io, grads, saved, workspace);
}

inline void launch_copy_rows(const CopyRowsParams& p, cudaStream_t stream) {
  StreamExec exec{stream};
  copy_rows(exec, p);
}

// The two launchers of one operand format: `extern` declares them (here, for every format), an empty first
// argument instantiates them (inst/train_<format>.cu, one format per file: small builds, parallel compiles).
#define FASTLSTM_TRAIN_LAUNCHERS(EXTERN, OP)                                                                        \
  EXTERN template void launch_train_forward<OP>(const DeviceLimits&, const ModelShape&, const PackedLayer<OP>*,     \
                                                const ForwardIO&, const float* const*, void*, void*, cudaStream_t); \
  EXTERN template void launch_train_backward<OP>(const DeviceLimits&, const ModelShape&, const PackedLayer<OP>*,    \
                                                 const TrainIO&, const GradPointers*, const void*, void*,           \
                                                 cudaStream_t)

FASTLSTM_TRAIN_LAUNCHERS(extern, Operand::kF32);
FASTLSTM_TRAIN_LAUNCHERS(extern, Operand::kTF32);
FASTLSTM_TRAIN_LAUNCHERS(extern, Operand::kBF16);
FASTLSTM_TRAIN_LAUNCHERS(extern, Operand::kF16);

}  // namespace fastlstm::cuda::detail
