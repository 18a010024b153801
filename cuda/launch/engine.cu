// The CUDA sequence engine on the seam (fastlstm/cuda.h's make_engine): inference forward on device
// pointers, stream-ordered. Packing converts the user's fp32 parameters on the host (kernels/pack.h) and
// uploads one image; a call validates every argument, uploads lengths, takes a stream-ordered workspace and
// enqueues one GEMM and one persistent recurrence kernel per layer (kernels/forward.cuh).
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/check.cuh"
#include "fastlstm/cuda.h"
#include "kernels/forward_launch.cuh"
#include "kernels/pack.h"

namespace fastlstm::cuda {
namespace {

using detail::check;
using detail::Operand;

// Makes `index` the calling thread's current device for a scope, and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index) {
    check(cudaGetDevice(&prev_), "cudaGetDevice");
    if (prev_ != index) check(cudaSetDevice(index), "cudaSetDevice");
    restore_ = prev_ != index;
  }
  ~DeviceGuard() {
    if (restore_ && cudaSetDevice(prev_) != cudaSuccess) (void)cudaGetLastError();
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
  bool restore_ = false;
};

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("fastlstm cuda engine: " + what); }

class CudaPacked final : public PackedWeights {
 public:
  detail::PackedImage image;  // offsets only once uploaded
  void* device = nullptr;
  int index = 0;
  ~CudaPacked() override { device_free(device, index); }
};

Operand operand_of(Precision p) {
  switch (p) {
    case Precision::kDefault:
      return Operand::kF32;
    case Precision::kTF32:
      return Operand::kTF32;
    case Precision::kBF16:
      return Operand::kBF16;
    case Precision::kFP16:
      return Operand::kF16;
    default:
      bad(std::string("precision: '") + precision_name(p) + "' does not run on CUDA (fp32, tf32, bf16, fp16 do)");
  }
}

template <class F>
void operand_switch(Operand op, F&& f) {
  switch (op) {
    case Operand::kF32:
      f(std::integral_constant<Operand, Operand::kF32>{});
      break;
    case Operand::kTF32:
      f(std::integral_constant<Operand, Operand::kTF32>{});
      break;
    case Operand::kBF16:
      f(std::integral_constant<Operand, Operand::kBF16>{});
      break;
    case Operand::kF16:
      f(std::integral_constant<Operand, Operand::kF16>{});
      break;
  }
}

void check_shape(const ModelShape& s) {
  if (s.input_size < 1) bad("input_size must be >= 1");
  if (s.hidden_size < 1) bad("hidden_size must be >= 1");
  if (s.num_layers < 1) bad("num_layers must be >= 1");
  if (s.proj_size < 0 || s.proj_size >= s.hidden_size) bad("proj_size must be in [0, hidden_size)");
}

class CudaEngine final : public Engine {
 public:
  CudaEngine(const EngineKey& key, int index) : key_(key), index_(index) {
    if (key.dtype != DType::kF32) bad(std::string("dtype: CUDA runs float32 modules, got ") + dtype_name(key.dtype));
    if (key.cell != Cell::kLstm) bad("cell: only 'lstm' runs on CUDA");
    op_ = operand_of(key.precision);
    const int count = device_count();
    if (index < 0 || index >= count)
      bad("device: cuda:" + std::to_string(index) + " does not exist (" + std::to_string(count) + " visible)");
    DeviceGuard guard(index);
    limits_ = detail::current_device_limits();
    info_ = device_info(index);
  }

  std::string name() const override {
    static const char* names[] = {"fp32", "tf32", "bf16", "fp16"};
    return "cuda:" + std::to_string(index_) + " " + info_.name + ", " + names[static_cast<int>(op_)] +
           " operands, fp32 accumulate";
  }
  const EngineKey& key() const override { return key_; }
  bool trains() const override { return false; }

  std::unique_ptr<PackedWeights> pack(const ModelShape& shape, const RawLayer* layers, bool training) const override {
    if (training) throw std::logic_error("fastlstm cuda engine: training is not available on CUDA in this version");
    check_shape(shape);
    auto packed = std::make_unique<CudaPacked>();
    operand_switch(op_, [&](auto op) { packed->image = detail::pack_image<decltype(op)::value>(shape, layers); });
    packed->shape = shape;
    packed->owner = this;
    packed->index = index_;
    packed->nbytes = packed->image.bytes.size();
    DeviceGuard guard(index_);
    packed->device = device_alloc(packed->nbytes, index_);
    check(cudaMemcpy(packed->device, packed->image.bytes.data(), packed->nbytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    packed->image.bytes = {};
    return packed;
  }

  CallSizes sizes(const ModelShape& s, int T, int B, bool train) const override {
    if (train) throw std::logic_error("fastlstm cuda engine: training is not available on CUDA in this version");
    const std::size_t LD = static_cast<std::size_t>(s.num_layers) * s.directions(), Bz = static_cast<std::size_t>(B);
    CallSizes c;
    c.outputs = sizeof(float) * (static_cast<std::size_t>(T) * Bz * s.directions() * s.out_size() +
                                 LD * Bz * s.out_size() + LD * Bz * s.hidden_size);
    c.workspace = detail::forward_layout(s, T, B).total + 256 + sizeof(int) * Bz;
    return c;
  }

  void forward(const ForwardArgs& a) const override {
    const auto* w = dynamic_cast<const CudaPacked*>(a.weights);
    if (w == nullptr || w->owner != this) bad("weights: not packed by this engine");
    if (a.T < 1) bad("T must be >= 1");
    if (a.B < 1) bad("B must be >= 1");
    const auto on_device = [this](const void* p, const char* what, bool optional) {
      if (p == nullptr) {
        if (!optional) bad(std::string(what) + " is null");
        return;
      }
      if (pointer_device(p) != index_) bad(std::string(what) + ": not memory of cuda:" + std::to_string(index_));
    };
    on_device(a.x, "x", false);
    on_device(a.y, "y", false);
    on_device(a.h_n, "h_n", false);
    on_device(a.c_n, "c_n", false);
    on_device(a.h0, "h0", true);
    on_device(a.c0, "c0", true);
    std::vector<int> lengths;
    if (a.lengths != nullptr) {
      for (int b = 0; b < a.B; ++b) {
        if (a.lengths[b] < 1 || a.lengths[b] > a.T)
          bad("lengths: every length must be in [1, " + std::to_string(a.T) + "], got " + std::to_string(a.lengths[b]) +
              " at " + std::to_string(b));
        lengths.push_back(static_cast<int>(a.lengths[b]));
      }
    }
    DeviceGuard guard(index_);
    const auto stream = static_cast<cudaStream_t>(a.stream);
    const detail::ForwardLayout layout = detail::forward_layout(w->shape, a.T, a.B);
    const std::size_t len_at = (layout.total + 255) & ~std::size_t{255};
    void* ws = nullptr;
    check(cudaMallocAsync(&ws, len_at + sizeof(int) * lengths.size(), stream), "cudaMallocAsync");
    struct Release {  // the workspace goes back to the stream's pool after the enqueued work, also on a throw
      void* p;
      cudaStream_t s;
      ~Release() {
        if (cudaFreeAsync(p, s) != cudaSuccess) (void)cudaGetLastError();
      }
    } release{ws, stream};
    detail::ForwardIO io;
    io.T = a.T;
    io.B = a.B;
    io.x = static_cast<const float*>(a.x);
    io.x_st = a.x_st;
    io.x_sb = a.x_sb;
    io.h0 = static_cast<const float*>(a.h0);
    io.c0 = static_cast<const float*>(a.c0);
    io.y = static_cast<float*>(a.y);
    io.y_st = a.y_st;
    io.y_sb = a.y_sb;
    io.h_n = static_cast<float*>(a.h_n);
    io.c_n = static_cast<float*>(a.c_n);
    if (!lengths.empty()) {
      int* dl = reinterpret_cast<int*>(static_cast<unsigned char*>(ws) + len_at);
      // Pageable source: the call returns once the bytes are staged, so the vector may go out of scope.
      check(cudaMemcpyAsync(dl, lengths.data(), sizeof(int) * lengths.size(), cudaMemcpyHostToDevice, stream),
            "cudaMemcpyAsync");
      io.lengths = dl;
    }
    const auto* base = static_cast<const unsigned char*>(w->device);
    operand_switch(op_, [&](auto op) {
      constexpr Operand kOp = decltype(op)::value;
      const auto views = detail::layer_views<kOp>(w->image, base);
      detail::launch_forward<kOp>(limits_, w->shape, views.data(), io, ws, stream);
    });
  }

  std::unique_ptr<SavedState> forward_train(const ForwardArgs&, const void* const*, void*, std::size_t) const override {
    throw std::logic_error("fastlstm cuda engine: training is not available on CUDA in this version");
  }
  std::unique_ptr<SavedState> saved_view(const PackedWeights&, int, int, const std::int64_t*, void*,
                                         std::size_t) const override {
    throw std::logic_error("fastlstm cuda engine: training is not available on CUDA in this version");
  }
  void backward(const BackwardArgs&) const override {
    throw std::logic_error("fastlstm cuda engine: training is not available on CUDA in this version");
  }

 private:
  EngineKey key_;
  int index_ = 0;
  Operand op_ = Operand::kF32;
  detail::DeviceLimits limits_;
  DeviceInfo info_;
};

}  // namespace

std::unique_ptr<Engine> make_engine(const EngineKey& key, int index) {
  return std::make_unique<CudaEngine>(key, index);
}

}  // namespace fastlstm::cuda
