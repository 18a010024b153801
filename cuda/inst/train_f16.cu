// The training step's kernels and launcher for f16 operands (kernels/train_launch.cuh).
#include "kernels/train_launch.cuh"

namespace fastlstm::cuda::detail {

template void launch_train<Operand::kF16>(const DeviceLimits&, const ModelShape&, const PackedLayer<Operand::kF16>*,
                                          const TrainIO&, const LayerGrads*, void*, cudaStream_t);

}  // namespace fastlstm::cuda::detail
