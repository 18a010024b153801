// Device queries (fastlstm/cuda.h): they never create a CUDA context, and "no driver / no GPU" is 0 devices.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "common/check.cuh"

namespace fastlstm::cuda {

int device_count() {
  int n = 0;
  // No driver, no device, or a driver older than this runtime: all mean "no CUDA here", not an error.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

DeviceInfo device_info(int index) {
  const int count = device_count();
  if (index < 0 || index >= count)
    throw std::invalid_argument("fastlstm device_info: index must be in [0, " + std::to_string(count) + "), got " +
                                std::to_string(index));
  cudaDeviceProp prop{};
  detail::check(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
  DeviceInfo info;
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  info.sm_count = prop.multiProcessorCount;
  info.total_mem = prop.totalGlobalMem;
  return info;
}

}  // namespace fastlstm::cuda
