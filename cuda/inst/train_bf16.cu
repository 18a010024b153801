// The training kernels and launchers for bf16 operands (kernels/train_launch.cuh).
#include "kernels/train_launch.cuh"

namespace fastlstm::cuda::detail {

template void launch_train_forward<Operand::kBF16>(const DeviceLimits&, const ModelShape&,
                                                   const PackedLayer<Operand::kBF16>*, const ForwardIO&,
                                                   const float* const*, void*, void*, cudaStream_t);
template void launch_train_backward<Operand::kBF16>(const DeviceLimits&, const ModelShape&,
                                                    const PackedLayer<Operand::kBF16>*, const TrainIO&,
                                                    const GradPointers*, const void*, void*, cudaStream_t);

}  // namespace fastlstm::cuda::detail
