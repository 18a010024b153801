// The inference forward's kernels and launcher for tf32 operands (kernels/forward_launch.cuh).
#include "kernels/forward_launch.cuh"

namespace fastlstm::cuda::detail {

FASTLSTM_FORWARD_LAUNCHER(, Operand::kTF32);

}  // namespace fastlstm::cuda::detail
