// The training kernels and launchers for f32 operands (kernels/train_launch.cuh).
#include "kernels/train_launch.cuh"

namespace fastlstm::cuda::detail {

template void launch_train_forward<Operand::kF32>(const DeviceLimits&, const ModelShape&,
                                                  const PackedLayer<Operand::kF32>*, const ForwardIO&,
                                                  const float* const*, void*, void*, cudaStream_t);
template void launch_train_backward<Operand::kF32>(const DeviceLimits&, const ModelShape&,
                                                   const PackedLayer<Operand::kF32>*, const TrainIO&,
                                                   const GradPointers*, const void*, void*, cudaStream_t);

}  // namespace fastlstm::cuda::detail
