// The CUDA runtime API the engine's host code calls (launch/*.cu, common/check.cuh, kernels/*_launch.cuh), on
// the CPU execution model: one device ("the CPU execution model", a small device like the orchestration
// tests' kSmall), device memory is host memory, every stream is the one in-order queue (a call completes
// before it returns), and a launch runs the kernel with fastlstm::emu::launch. Test-only: a build with
// FASTLSTM_CUDA=EMU puts this directory first on the include path, so the engine, its bindings and the Python
// package run end to end without a GPU (tools/ci_cuda.sh runs tests/test_cuda.py on it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <set>
#include <tuple>
#include <utility>

#include "testing/emu/emu.h"

using cudaError_t = int;
using cudaStream_t = struct CUstream_st*;
enum : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidDevice = 101,
  cudaErrorLaunchFailure = 719
};
enum cudaMemcpyKind : int {
  cudaMemcpyHostToHost,
  cudaMemcpyHostToDevice,
  cudaMemcpyDeviceToHost,
  cudaMemcpyDeviceToDevice,
  cudaMemcpyDefault
};
enum cudaMemoryType : int {
  cudaMemoryTypeUnregistered,
  cudaMemoryTypeHost,
  cudaMemoryTypeDevice,
  cudaMemoryTypeManaged
};
enum cudaDeviceAttr : int {
  cudaDevAttrMultiProcessorCount,
  cudaDevAttrMaxThreadsPerMultiProcessor,
  cudaDevAttrMaxSharedMemoryPerBlockOptin,
  cudaDevAttrMaxRegistersPerMultiprocessor
};
enum cudaFuncAttribute : int { cudaFuncAttributeMaxDynamicSharedMemorySize };

struct cudaDeviceProp {
  char name[256];
  int major, minor, multiProcessorCount;
  std::size_t totalGlobalMem;
};
struct cudaPointerAttributes {
  cudaMemoryType type;
  int device;
};

namespace fastlstm::emu::runtime {

// The model device: 8 SMs of 2048 threads, 96 KiB of shared memory per block, 64 K registers per SM.
inline constexpr int kSms = 8, kThreadsPerSm = 2048, kSmemPerBlock = 96 * 1024, kRegsPerSm = 65536;

struct State {
  std::mutex mu;
  std::set<const void*> blocks;  // live device allocations
  cudaError_t last = cudaSuccess;
};
inline State& state() {
  static State s;
  return s;
}
inline cudaError_t fail(cudaError_t e) {
  std::lock_guard<std::mutex> lock(state().mu);
  state().last = e;
  return e;
}
inline cudaError_t allocate(void** p, std::size_t bytes) {
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
  if (*p == nullptr) return fail(cudaErrorMemoryAllocation);
  std::lock_guard<std::mutex> lock(state().mu);
  state().blocks.insert(*p);
  return cudaSuccess;
}
inline cudaError_t release(void* p) {
  if (p == nullptr) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(state().mu);
    if (state().blocks.erase(p) == 0) {
      state().last = cudaErrorInvalidValue;
      return cudaErrorInvalidValue;
    }
  }
  std::free(p);
  return cudaSuccess;
}
// A kernel's fault (a deadlock, a divergent barrier, ...) is a launch failure, as a device trap would be.
template <class F>
cudaError_t run(F&& f) {
  try {
    f();
    return cudaSuccess;
  } catch (const std::exception&) {
    return fail(cudaErrorLaunchFailure);
  }
}
template <class... P, std::size_t... I>
void launch_with(const LaunchConfig& cfg, void (*func)(P...), void** args, std::index_sequence<I...>) {
  launch(cfg, func, *static_cast<std::remove_reference_t<P>*>(args[I])...);
}

}  // namespace fastlstm::emu::runtime

inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure (a fault of the CPU execution model)";
    default:
      return "invalid argument";
  }
}
inline cudaError_t cudaGetLastError() {
  auto& s = fastlstm::emu::runtime::state();
  std::lock_guard<std::mutex> lock(s.mu);
  return std::exchange(s.last, cudaSuccess);
}
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) {
  return d == 0 ? cudaSuccess : fastlstm::emu::runtime::fail(cudaErrorInvalidDevice);
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return fastlstm::emu::runtime::fail(cudaErrorInvalidDevice);
  std::memset(p, 0, sizeof(*p));
  std::strncpy(p->name, "the CPU execution model", sizeof(p->name) - 1);
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = fastlstm::emu::runtime::kSms;
  p->totalGlobalMem = std::size_t{8} << 30;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d) {
  namespace r = fastlstm::emu::runtime;
  if (d != 0) return r::fail(cudaErrorInvalidDevice);
  *v = a == cudaDevAttrMultiProcessorCount            ? r::kSms
       : a == cudaDevAttrMaxThreadsPerMultiProcessor  ? r::kThreadsPerSm
       : a == cudaDevAttrMaxSharedMemoryPerBlockOptin ? r::kSmemPerBlock
                                                      : r::kRegsPerSm;
  return cudaSuccess;
}
inline cudaError_t cudaMalloc(void** p, std::size_t bytes) { return fastlstm::emu::runtime::allocate(p, bytes); }
inline cudaError_t cudaFree(void* p) { return fastlstm::emu::runtime::release(p); }
inline cudaError_t cudaMallocAsync(void** p, std::size_t bytes, cudaStream_t) { return cudaMalloc(p, bytes); }
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind) {
  if (bytes != 0) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind k, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, k);
}
inline cudaError_t cudaMemsetAsync(void* dst, int value, std::size_t bytes, cudaStream_t) {
  std::memset(dst, value, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
// Every address is memory of the one device: the model cannot tell a numpy array from an allocation of its own
// (a GPU run checks the refusal of host pointers).
inline cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void*) {
  a->type = cudaMemoryTypeDevice;
  a->device = 0;
  return cudaSuccess;
}
template <class F>
cudaError_t cudaFuncSetAttribute(F*, cudaFuncAttribute, int) {
  return cudaSuccess;
}
template <class... P>
cudaError_t cudaLaunchKernel(void (*func)(P...), dim3 grid, dim3 block, void** args, std::size_t smem, cudaStream_t) {
  namespace r = fastlstm::emu::runtime;
  return r::run([&] { r::launch_with({grid, block, smem, false}, func, args, std::index_sequence_for<P...>{}); });
}
template <class... P>
cudaError_t cudaLaunchCooperativeKernel(void (*func)(P...), dim3 grid, dim3 block, void** args, std::size_t smem,
                                        cudaStream_t) {
  namespace r = fastlstm::emu::runtime;
  return r::run([&] { r::launch_with({grid, block, smem, true}, func, args, std::index_sequence_for<P...>{}); });
}
