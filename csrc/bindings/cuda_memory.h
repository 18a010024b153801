// Device memory the CUDA bindings allocate (CUDA builds only): freed when it dies, unless handed over to a
// DLPack capsule whose consumer then owns it.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "bindings/dlpack.h"
#include "fastlstm/cuda.h"

namespace fastlstm::bindings {

class DeviceMemory {
 public:
  DeviceMemory(std::size_t bytes, int index) : index_(index), p_(cuda::device_alloc(bytes, index)) {}
  ~DeviceMemory() { cuda::device_free(p_, index_); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  unsigned char* get() const { return static_cast<unsigned char*>(p_); }
  // A float32 capsule of compact row-major `shape` that owns the memory from here on (also when it throws).
  pybind11::capsule hand_over(const std::vector<std::int64_t>& shape) {
    void* q = p_;
    p_ = nullptr;
    return dlpack::export_f32(
        q, {dlpack::kDLCUDA, index_}, shape, [](void* d, int i) { cuda::device_free(d, i); }, index_);
  }

 private:
  int index_;
  void* p_;
};

}  // namespace fastlstm::bindings
