// The CUDA library's host-only interface: plain structs, raw pointers and C++ exceptions, no CUDA types,
// so the bindings (and any plain C++20 file) can include it without the CUDA toolkit's headers.
#pragma once

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>

#include "fastlstm/engine.h"

namespace fastlstm::cuda {

// ---- Errors -------------------------------------------------------------------------------------------
// Every failing CUDA runtime call becomes a CudaError whose what() is
//   "fastlstm CUDA error in <call>: <cudaGetErrorString>"   e.g. "... in cudaMalloc: out of memory".
// code() is the numeric cudaError_t. An allocation that cannot be made is the subclass CudaOutOfMemory,
// which the bindings map to MemoryError (every other CudaError -> RuntimeError).
// Bad arguments (sizes < 1, null pointers, peepholes given partly) throw std::invalid_argument naming
// the argument, before any CUDA call is made.
class CudaError : public std::runtime_error {
 public:
  CudaError(const std::string& what, int code) : std::runtime_error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

class CudaOutOfMemory : public CudaError {
 public:
  using CudaError::CudaError;
};

// ---- Devices ------------------------------------------------------------------------------------------
// The number of visible CUDA devices; 0 (never an exception) when there is no driver, no GPU, or the
// driver is too old for this build's runtime. Safe to call from any thread; creates no CUDA context.
int device_count();

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0;   // compute capability
  int sm_count = 0;           // streaming multiprocessors
  std::size_t total_mem = 0;  // bytes of global memory
};

// Properties of device `index` (0 <= index < device_count(), else std::invalid_argument).
DeviceInfo device_info(int index);

// ---- Fused LSTM cell (pointwise part of one step) -----------------------------------------------------
// One step's elementwise update, after the GEMMs produced the pre-activations z (gate order i, f, g, o as
// torch.nn.LSTM; letters as docs/api.md):
//   peephole: z_i += p_i * c_prev;  z_f += p_f * c_prev
//   i = sigmoid(z_i); f = sigmoid(z_f); g = tanh(z_g)
//   c = f * c_prev + i * g
//   peephole: z_o += p_o * c
//   o = sigmoid(z_o);  h = o * tanh(c)
// All pointers are DEVICE pointers to contiguous row-major fp32 arrays. z is only read (the peephole
// terms are added in registers). Aliasing: c may be exactly c_prev (in-place update); no other pair of
// arrays may overlap, and h must not overlap any input.
struct CellParams {
  int B = 0, H = 0;               // batch rows, hidden units; both >= 1
  const float* z = nullptr;       // [B,4H] pre-activations, blocks i, f, g, o of H columns each
  const float* c_prev = nullptr;  // [B,H] previous cell state
  const float* p_i = nullptr;     // [H] input-gate peephole, or nullptr
  const float* p_f = nullptr;     // [H] forget-gate peephole, or nullptr
  const float* p_o = nullptr;     // [H] output-gate peephole, or nullptr (all three or none)
  float* h = nullptr;             // [B,H] out: hidden state
  float* c = nullptr;             // [B,H] out: cell state; may alias c_prev exactly
};

// Launches the fused cell on `stream` (a cudaStream_t passed as void*; nullptr = the legacy default
// stream) on the current device; asynchronous: returns after the launch, reports launch errors only.
void cell_forward_f32(const CellParams& p, void* stream);

// The same on HOST pointers (shapes and aliasing as CellParams; c may be c_prev): allocates device
// buffers, copies in, launches on the default stream of the current device, copies out, frees.
// Synchronous; nothing leaks when it throws. Meant for tests and the bindings' one-off checks, not for
// the fast path.
void cell_forward_host_f32(int B, int H, const float* z, const float* c_prev, const float* p_i, const float* p_f,
                           const float* p_o, float* h, float* c);

// ---- The sequence engine (the seam of csrc/include/fastlstm/engine.h) -------------------------------------
// An Engine for `key` (precision kDefault = fp32 math, kTF32, kBF16 or kFP16; dtype kF32 only: parameters and
// arrays stay fp32) on device `index`. Throws std::invalid_argument naming `precision` / `dtype` for a key it
// cannot run, CudaError when the device cannot be used.
//   pack(): RawLayer pointers are HOST pointers (the module's parameters); the packed weights live on the
//           device, converted to the precision's operand type once.
//   forward() / forward_train() / backward(): every array pointer in ForwardArgs / BackwardArgs (x, h0, c0, y,
//           h_n, c_n, dy, dx, masks, grads, ...) is a DEVICE pointer on this device, strided as engine.h says;
//           `lengths` is a HOST pointer (the engine validates and uploads it). The call is ordered on
//           args.stream and returns when the work is enqueued (stream-ordered workspace); it validates every
//           argument (std::invalid_argument naming it) before enqueuing anything.
//   trains() is false until the training engine lands (forward_train/backward throw std::logic_error).
std::unique_ptr<Engine> make_engine(const EngineKey& key, int index);

// ---- Device memory and copies, for the bindings (numpy in -> device -> numpy out) ------------------------
// All synchronous with respect to the host unless a stream is named; `stream` is a cudaStream_t as void*.
void* device_alloc(std::size_t bytes, int index);  // CudaOutOfMemory when it cannot be had; bytes may be 0
void device_free(void* ptr, int index) noexcept;   // null is a no-op
void copy_to_device(void* dst, const void* src, std::size_t bytes, int index, void* stream);
void copy_to_host(void* dst, const void* src, std::size_t bytes, int index, void* stream);
void synchronize(int index, void* stream);  // waits for `stream` (null: the device)
// The device `ptr` lies on, or -1 for host memory (pageable or pinned) and pointers CUDA does not know.
int pointer_device(const void* ptr);

}  // namespace fastlstm::cuda
