// The training kernels and launchers for bf16 operands (kernels/train_launch.cuh).
#include "kernels/train_launch.cuh"

namespace fastlstm::cuda::detail {

FASTLSTM_TRAIN_LAUNCHERS(, Operand::kBF16);

}  // namespace fastlstm::cuda::detail
