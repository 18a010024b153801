// The inference forward's kernels and launcher for f16 operands (kernels/forward_launch.cuh).
#include "kernels/forward_launch.cuh"

namespace fastlstm::cuda::detail {

FASTLSTM_FORWARD_LAUNCHER(, Operand::kF16);

}  // namespace fastlstm::cuda::detail
