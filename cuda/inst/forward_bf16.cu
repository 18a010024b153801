// The inference forward's kernels and launcher for bf16 operands (kernels/forward_launch.cuh).
#include "kernels/forward_launch.cuh"

namespace fastlstm::cuda::detail {

template void launch_forward<Operand::kBF16>(const DeviceLimits&, const ModelShape&, const PackedLayer<Operand::kBF16>*,
                                             const ForwardIO&, void*, cudaStream_t);

}  // namespace fastlstm::cuda::detail
