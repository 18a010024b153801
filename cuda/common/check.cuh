// Host-side helpers of every .cu file: runtime errors to the library's exceptions, and an owned device buffer.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "common/plan.h"
#include "fastlstm/cuda.h"

namespace fastlstm::cuda::detail {

// Turns a failed runtime call into the library's exception. The error is also cleared from the runtime's
// "last error" slot (for non-sticky errors such as out of memory), so a later cudaGetLastError() after a
// kernel launch does not report this failure a second time against an innocent launch.
inline void check(cudaError_t err, const char* call) {
  if (err == cudaSuccess) return;
  (void)cudaGetLastError();
  std::string msg = std::string("fastlstm CUDA error in ") + call + ": " + cudaGetErrorString(err);
  if (err == cudaErrorMemoryAllocation) throw CudaOutOfMemory(msg, static_cast<int>(err));
  throw CudaError(msg, static_cast<int>(err));
}

// One device allocation, freed on scope exit (also when an exception unwinds through it).
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t bytes) { check(cudaMalloc(&ptr_, bytes), "cudaMalloc"); }
  ~DeviceBuffer() {
    // A destructor must not throw; a failure here is a sticky context error that the next checked
    // call reports anyway, so only clear the slot.
    if (ptr_ != nullptr && cudaFree(ptr_) != cudaSuccess) (void)cudaGetLastError();
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  float* floats() const { return static_cast<float*>(ptr_); }

 private:
  void* ptr_ = nullptr;
};

// The current device's limits, as the plans read them.
inline DeviceLimits current_device_limits() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  DeviceLimits d;
  int smem = 0;
  check(cudaDeviceGetAttribute(&d.sm_count, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&d.max_threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device),
        "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&d.regs_per_sm, cudaDevAttrMaxRegistersPerMultiprocessor, device),
        "cudaDeviceGetAttribute");
  d.max_smem_per_block = static_cast<std::size_t>(smem);
  return d;
}

}  // namespace fastlstm::cuda::detail
