// The inference forward's kernels and launcher for f32 operands (kernels/forward_launch.cuh).
#include "kernels/forward_launch.cuh"

namespace fastlstm::cuda::detail {

template void launch_forward<Operand::kF32>(const DeviceLimits&, const ModelShape&, const PackedLayer<Operand::kF32>*,
                                            const ForwardIO&, void*, cudaStream_t);

}  // namespace fastlstm::cuda::detail
