// The training kernels and launchers for f32 operands (kernels/train_launch.cuh).
#include "kernels/train_launch.cuh"

namespace fastlstm::cuda::detail {

FASTLSTM_TRAIN_LAUNCHERS(, Operand::kF32);

}  // namespace fastlstm::cuda::detail
