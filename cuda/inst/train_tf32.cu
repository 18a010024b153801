// The training kernels and launchers for tf32 operands (kernels/train_launch.cuh).
#include "kernels/train_launch.cuh"

namespace fastlstm::cuda::detail {

template void launch_train_forward<Operand::kTF32>(const DeviceLimits&, const ModelShape&,
                                                   const PackedLayer<Operand::kTF32>*, const ForwardIO&,
                                                   const float* const*, void*, void*, cudaStream_t);
template void launch_train_backward<Operand::kTF32>(const DeviceLimits&, const ModelShape&,
                                                    const PackedLayer<Operand::kTF32>*, const TrainIO&,
                                                    const GradPointers*, const void*, void*, cudaStream_t);

}  // namespace fastlstm::cuda::detail
