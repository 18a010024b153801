// The inference forward's kernels and launcher for f16 operands (kernels/forward_launch.cuh).
#include "kernels/forward_launch.cuh"

namespace fastlstm::cuda::detail {

template void launch_forward<Operand::kF16>(const DeviceLimits&, const ModelShape&, const PackedLayer<Operand::kF16>*,
                                            const ForwardIO&, void*, cudaStream_t);

}  // namespace fastlstm::cuda::detail
