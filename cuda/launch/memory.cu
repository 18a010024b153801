// Device memory and copies for the bindings (fastlstm/cuda.h): each call on device `index`, the calling
// thread's current device restored afterwards.
#include <cuda_runtime.h>

#include <cstddef>

#include "common/check.cuh"
#include "fastlstm/cuda.h"

namespace fastlstm::cuda {
namespace {

using detail::check;

template <class F>
void on_device(int index, F&& f) {
  int prev = 0;
  check(cudaGetDevice(&prev), "cudaGetDevice");
  if (prev != index) check(cudaSetDevice(index), "cudaSetDevice");
  try {
    f();
  } catch (...) {
    if (prev != index) (void)cudaSetDevice(prev);
    throw;
  }
  if (prev != index) check(cudaSetDevice(prev), "cudaSetDevice");
}

}  // namespace

void* device_alloc(std::size_t bytes, int index) {
  void* p = nullptr;
  if (bytes == 0) return nullptr;
  on_device(index, [&] { check(cudaMalloc(&p, bytes), "cudaMalloc"); });
  return p;
}

void device_free(void* ptr, int index) noexcept {
  if (ptr == nullptr) return;
  int prev = 0;
  if (cudaGetDevice(&prev) == cudaSuccess && cudaSetDevice(index) == cudaSuccess) {
    (void)cudaFree(ptr);
    (void)cudaSetDevice(prev);
  }
  (void)cudaGetLastError();
}

void copy_to_device(void* dst, const void* src, std::size_t bytes, int index, void* stream) {
  if (bytes == 0) return;
  on_device(index, [&] {
    const auto s = static_cast<cudaStream_t>(stream);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
    if (stream == nullptr) check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  });
}

void copy_to_host(void* dst, const void* src, std::size_t bytes, int index, void* stream) {
  if (bytes == 0) return;
  on_device(index, [&] {
    const auto s = static_cast<cudaStream_t>(stream);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
    if (stream == nullptr) check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  });
}

void synchronize(int index, void* stream) {
  on_device(index, [&] {
    if (stream == nullptr) {
      check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    } else {
      check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "cudaStreamSynchronize");
    }
  });
}

int pointer_device(const void* ptr) {
  cudaPointerAttributes a{};
  if (ptr == nullptr || cudaPointerGetAttributes(&a, ptr) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return (a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged) ? a.device : -1;
}

}  // namespace fastlstm::cuda
