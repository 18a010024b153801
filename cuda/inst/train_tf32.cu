// The training step's kernels and launcher for tf32 operands (kernels/train_launch.cuh).
#include "kernels/train_launch.cuh"

namespace fastlstm::cuda::detail {

template void launch_train<Operand::kTF32>(const DeviceLimits&, const ModelShape&, const PackedLayer<Operand::kTF32>*,
                                           const TrainIO&, const LayerGrads*, void*, cudaStream_t);

}  // namespace fastlstm::cuda::detail
