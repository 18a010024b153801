// The training kernels and launchers for f16 operands (kernels/train_launch.cuh).
#include "kernels/train_launch.cuh"

namespace fastlstm::cuda::detail {

template void launch_train_forward<Operand::kF16>(const DeviceLimits&, const ModelShape&,
                                                  const PackedLayer<Operand::kF16>*, const ForwardIO&,
                                                  const float* const*, void*, void*, cudaStream_t);
template void launch_train_backward<Operand::kF16>(const DeviceLimits&, const ModelShape&,
                                                   const PackedLayer<Operand::kF16>*, const TrainIO&,
                                                   const GradPointers*, const void*, void*, cudaStream_t);

}  // namespace fastlstm::cuda::detail
