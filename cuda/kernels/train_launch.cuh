// The training step's launcher (nvcc only): train.cuh's orchestration on a CUDA stream, with the forward's
// executor (forward_launch.cuh). Instantiated per operand format in inst/train_*.cu.
#pragma once

#include <cuda_runtime.h>

#include "kernels/forward_launch.cuh"
#include "kernels/train.cuh"

namespace fastlstm::cuda::detail {

template <Operand Op>
void launch_train(const DeviceLimits& dev, const ModelShape& s, const PackedLayer<Op>* layers, const TrainIO& io,
                  const LayerGrads* grads, void* workspace, cudaStream_t stream) {
  StreamExec exec{stream};
  train_sequence<Op>(exec, dev, s, layers, io, grads, workspace);
}

extern template void launch_train<Operand::kF32>(const DeviceLimits&, const ModelShape&,
                                                 const PackedLayer<Operand::kF32>*, const TrainIO&, const LayerGrads*,
                                                 void*, cudaStream_t);
extern template void launch_train<Operand::kTF32>(const DeviceLimits&, const ModelShape&,
                                                  const PackedLayer<Operand::kTF32>*, const TrainIO&, const LayerGrads*,
                                                  void*, cudaStream_t);
extern template void launch_train<Operand::kBF16>(const DeviceLimits&, const ModelShape&,
                                                  const PackedLayer<Operand::kBF16>*, const TrainIO&, const LayerGrads*,
                                                  void*, cudaStream_t);
extern template void launch_train<Operand::kF16>(const DeviceLimits&, const ModelShape&,
                                                 const PackedLayer<Operand::kF16>*, const TrainIO&, const LayerGrads*,
                                                 void*, cudaStream_t);

}  // namespace fastlstm::cuda::detail
