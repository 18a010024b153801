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

extern template void launch_train_forward<Operand::kF32>(const DeviceLimits&, const ModelShape&,
                                                         const PackedLayer<Operand::kF32>*, const ForwardIO&,
                                                         const float* const*, void*, void*, cudaStream_t);
extern template void launch_train_backward<Operand::kF32>(const DeviceLimits&, const ModelShape&,
                                                          const PackedLayer<Operand::kF32>*, const TrainIO&,
                                                          const GradPointers*, const void*, void*, cudaStream_t);
extern template void launch_train_forward<Operand::kTF32>(const DeviceLimits&, const ModelShape&,
                                                          const PackedLayer<Operand::kTF32>*, const ForwardIO&,
                                                          const float* const*, void*, void*, cudaStream_t);
extern template void launch_train_backward<Operand::kTF32>(const DeviceLimits&, const ModelShape&,
                                                           const PackedLayer<Operand::kTF32>*, const TrainIO&,
                                                           const GradPointers*, const void*, void*, cudaStream_t);
extern template void launch_train_forward<Operand::kBF16>(const DeviceLimits&, const ModelShape&,
                                                          const PackedLayer<Operand::kBF16>*, const ForwardIO&,
                                                          const float* const*, void*, void*, cudaStream_t);
extern template void launch_train_backward<Operand::kBF16>(const DeviceLimits&, const ModelShape&,
                                                           const PackedLayer<Operand::kBF16>*, const TrainIO&,
                                                           const GradPointers*, const void*, void*, cudaStream_t);
extern template void launch_train_forward<Operand::kF16>(const DeviceLimits&, const ModelShape&,
                                                         const PackedLayer<Operand::kF16>*, const ForwardIO&,
                                                         const float* const*, void*, void*, cudaStream_t);
extern template void launch_train_backward<Operand::kF16>(const DeviceLimits&, const ModelShape&,
                                                          const PackedLayer<Operand::kF16>*, const TrainIO&,
                                                          const GradPointers*, const void*, void*, cudaStream_t);

}  // namespace fastlstm::cuda::detail
