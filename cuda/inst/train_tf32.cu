// The training kernels and launchers for tf32 operands (kernels/train_launch.cuh).
#include "kernels/train_launch.cuh"

namespace fastlstm::cuda::detail {

FASTLSTM_TRAIN_LAUNCHERS(, Operand::kTF32);

}  // namespace fastlstm::cuda::detail
