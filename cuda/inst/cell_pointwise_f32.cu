// Instances of the fused pointwise cell (kernels/cell_pointwise_launch.cuh): peephole x index width.
#include "kernels/cell_pointwise_launch.cuh"

namespace fastlstm::cuda::detail {

template void launch_cell_forward_f32<false, std::uint32_t>(const CellParams&, cudaStream_t);
template void launch_cell_forward_f32<true, std::uint32_t>(const CellParams&, cudaStream_t);
template void launch_cell_forward_f32<false, std::int64_t>(const CellParams&, cudaStream_t);
template void launch_cell_forward_f32<true, std::int64_t>(const CellParams&, cudaStream_t);

}  // namespace fastlstm::cuda::detail
