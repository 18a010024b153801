// The inference forward's kernels and launcher for bf16 operands (kernels/forward_launch.cuh).
#include "kernels/forward_launch.cuh"

namespace fastlstm::cuda::detail {

FASTLSTM_FORWARD_LAUNCHER(, Operand::kBF16);

}  // namespace fastlstm::cuda::detail
