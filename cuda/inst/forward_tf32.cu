// The inference forward's kernels and launcher for tf32 operands (kernels/forward_launch.cuh).
#include "kernels/forward_launch.cuh"

namespace fastlstm::cuda::detail {

template void launch_forward<Operand::kTF32>(const DeviceLimits&, const ModelShape&, const PackedLayer<Operand::kTF32>*,
                                             const ForwardIO&, void*, cudaStream_t);

}  // namespace fastlstm::cuda::detail
