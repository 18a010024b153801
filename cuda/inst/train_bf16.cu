// The training step's kernels and launcher for bf16 operands (kernels/train_launch.cuh).
#include "kernels/train_launch.cuh"

namespace fastlstm::cuda::detail {

template void launch_train<Operand::kBF16>(const DeviceLimits&, const ModelShape&, const PackedLayer<Operand::kBF16>*,
                                           const TrainIO&, const LayerGrads*, void*, cudaStream_t);

}  // namespace fastlstm::cuda::detail
