// Launch plans: what a launcher asks of the GPU (grid, block, shared memory, cooperative), computed by plain
// host code from the device's limits, so plans are unit-tested for A100 and H200 limits without a GPU, drive
// the kernels on the execution model, and give the static checks each kernel's budget (docs/cuda.md).
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastlstm::cuda::detail {

// The limits a plan depends on (cudaDeviceGetAttribute names in comments).
struct DeviceLimits {
  int sm_count = 0;                    // cudaDevAttrMultiProcessorCount
  int max_threads_per_sm = 0;          // cudaDevAttrMaxThreadsPerMultiProcessor
  std::size_t max_smem_per_block = 0;  // cudaDevAttrMaxSharedMemoryPerBlockOptin
  int regs_per_sm = 0;                 // cudaDevAttrMaxRegistersPerMultiprocessor
};

// Reference devices for tests and the static budget check (the CUDA Programming Guide's per-architecture
// tables: sm_80 163 KiB and sm_90 227 KiB of shared memory per block, 64 K registers per SM).
inline constexpr DeviceLimits kA100{108, 2048, 163 * 1024, 65536};
inline constexpr DeviceLimits kH200{132, 2048, 227 * 1024, 65536};

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

struct LaunchPlan {
  Dim3 grid, block;
  std::size_t dynamic_smem = 0;  // bytes per block
  bool cooperative = false;      // cudaLaunchCooperativeKernel (grid-wide barriers)
};

}  // namespace fastlstm::cuda::detail
