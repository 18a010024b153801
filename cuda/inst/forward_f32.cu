// The inference forward's kernels and launcher for f32 operands (kernels/forward_launch.cuh).
#include "kernels/forward_launch.cuh"

namespace fastlstm::cuda::detail {

FASTLSTM_FORWARD_LAUNCHER(, Operand::kF32);

}  // namespace fastlstm::cuda::detail
