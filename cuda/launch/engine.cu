// The CUDA sequence engine on the seam (fastlstm/cuda.h's make_engine): inference forward, training forward
// and backward on device pointers, stream-ordered. Packing converts the user's fp32 parameters on the host
// (kernels/pack.h) and uploads one image; a call validates every argument, uploads lengths, takes a
// stream-ordered workspace and enqueues the kernels (kernels/forward.cuh, kernels/train.cuh).
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
#include "kernels/train_launch.cuh"

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

// A training forward's saved state, in one device buffer (the engine's own, or a caller's it only views):
// train.cuh's saved state (gates, c, layer outputs), then what backward reads of the call: x and y
// contiguous [T, B, .], h0 and c0 (zeros when the call had none) and the lengths (T when none).
struct SavedLayout {
  detail::TrainLayout train;
  std::size_t x = 0, y = 0, h0 = 0, c0 = 0, lengths = 0, total = 0;
};

SavedLayout saved_layout(const ModelShape& s, int T, int B, std::size_t operand_bytes) {
  const auto a256 = [](std::size_t n) { return (n + 255) & ~std::size_t{255}; };
  const std::size_t TB = static_cast<std::size_t>(T) * B,
                    LDB = static_cast<std::size_t>(s.num_layers) * s.directions() * static_cast<std::size_t>(B);
  SavedLayout l;
  l.train = detail::train_layout(s, T, B, operand_bytes);
  std::size_t at = l.train.saved_total;
  l.x = at;
  at += a256(sizeof(float) * TB * s.input_size);
  l.y = at;
  at += a256(sizeof(float) * TB * s.directions() * s.out_size());
  l.h0 = at;
  at += a256(sizeof(float) * LDB * s.out_size());
  l.c0 = at;
  at += a256(sizeof(float) * LDB * s.hidden_size);
  l.lengths = at;
  at += a256(sizeof(int) * static_cast<std::size_t>(B));
  l.total = at;
  return l;
}

class CudaSaved final : public SavedState {
 public:
  unsigned char* device = nullptr;
  bool own = false;
  int index = 0;
  SavedLayout layout;
  // The forward's arrays as the state holds them: x and y [T, B, .] contiguous, h0, c0 and the lengths.
  detail::ForwardIO io() const {
    const int D = shape.directions(), R = shape.out_size(), I = shape.input_size;
    detail::ForwardIO f;
    f.T = T;
    f.B = B;
    f.x = reinterpret_cast<const float*>(device + layout.x);
    f.x_st = static_cast<std::int64_t>(B) * I;
    f.x_sb = I;
    f.h0 = reinterpret_cast<const float*>(device + layout.h0);
    f.c0 = reinterpret_cast<const float*>(device + layout.c0);
    f.lengths = reinterpret_cast<const int*>(device + layout.lengths);
    f.y = reinterpret_cast<float*>(device + layout.y);
    f.y_st = static_cast<std::int64_t>(B) * D * R;
    f.y_sb = static_cast<std::int64_t>(D) * R;
    return f;
  }
  ~CudaSaved() override {
    if (own) device_free(device, index);
  }
};

// A stream-ordered device allocation, returned to the stream's pool after the enqueued work (also on a throw).
class StreamBuffer {
 public:
  StreamBuffer(std::size_t bytes, cudaStream_t stream) : stream_(stream) {
    check(cudaMallocAsync(&p_, bytes, stream), "cudaMallocAsync");
  }
  ~StreamBuffer() {
    if (cudaFreeAsync(p_, stream_) != cudaSuccess) (void)cudaGetLastError();
  }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  unsigned char* get() const { return static_cast<unsigned char*>(p_); }

 private:
  void* p_ = nullptr;
  cudaStream_t stream_;
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
  bool trains() const override { return true; }

  std::unique_ptr<PackedWeights> pack(const ModelShape& shape, const RawLayer* layers, bool training) const override {
    check_shape(shape);
    auto packed = std::make_unique<CudaPacked>();
    operand_switch(op_, [&](auto op) { packed->image = detail::pack_image<decltype(op)::value>(shape, layers); });
    packed->shape = shape;
    packed->training = training;  // the same image serves both: backward transposes what it needs per call
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
    const std::size_t LD = static_cast<std::size_t>(s.num_layers) * s.directions(), Bz = static_cast<std::size_t>(B);
    const std::size_t x = static_cast<std::size_t>(T) * Bz * s.input_size;
    CallSizes c;
    c.outputs = sizeof(float) * (static_cast<std::size_t>(T) * Bz * s.directions() * s.out_size() +
                                 LD * Bz * s.out_size() + LD * Bz * s.hidden_size);
    c.workspace = detail::forward_layout(s, T, B).total + 256 + sizeof(int) * Bz;
    if (train) {
      const SavedLayout l = saved_layout(s, T, B, operand_bytes());
      const std::size_t H = s.hidden_size, G = 4 * H;
      std::size_t params = 0;  // backward's outputs: the parameters' gradients
      for (int k = 0; k < s.num_layers; ++k)
        params += s.directions() * (G * s.layer_input(k) + G * s.out_size() + (s.bias ? 2 * G : 0) +
                                    (s.peephole ? 3 * H : 0) + static_cast<std::size_t>(s.proj_size) * H);
      c.outputs += sizeof(float) * (x + LD * Bz * (s.out_size() + s.hidden_size) + params);
      c.workspace = l.train.work_total;
      c.saved = l.total;
    }
    return c;
  }

  void forward(const ForwardArgs& a) const override {
    const CudaPacked& w = own(a.weights);
    const std::vector<int> lengths = checked_call(a);
    DeviceGuard guard(index_);
    const auto stream = static_cast<cudaStream_t>(a.stream);
    const detail::ForwardLayout layout = detail::forward_layout(w.shape, a.T, a.B);
    const std::size_t len_at = (layout.total + 255) & ~std::size_t{255};
    StreamBuffer ws(len_at + sizeof(int) * lengths.size(), stream);
    detail::ForwardIO io = forward_io(a);
    if (!lengths.empty()) io.lengths = upload_lengths(lengths, ws.get() + len_at, stream);
    operand_switch(op_, [&](auto op) {
      constexpr Operand kOp = decltype(op)::value;
      const auto views = detail::layer_views<kOp>(w.image, static_cast<const unsigned char*>(w.device));
      detail::launch_forward<kOp>(limits_, w.shape, views.data(), io, ws.get(), stream);
    });
  }

  // The inference forward's outputs, and a saved state holding the training forward's state and copies of
  // x, y, h0, c0 and the lengths, so backward needs nothing of the caller's forward arrays.
  std::unique_ptr<SavedState> forward_train(const ForwardArgs& a, const void* const* masks, void* saved,
                                            std::size_t saved_bytes) const override {
    const CudaPacked& w = own(a.weights);
    const ModelShape& s = w.shape;
    std::vector<int> lengths = checked_call(a);
    const int L = s.num_layers;
    const std::vector<const float*> mask_ptrs = device_masks(masks, L);
    DeviceGuard guard(index_);
    const auto stream = static_cast<cudaStream_t>(a.stream);
    detail::backward_plan(s, a.B, operand_bytes(), limits_);  // a hidden size backward cannot take: before anything
    std::unique_ptr<CudaSaved> st = saved_state(s, a.T, a.B, saved, saved_bytes);
    const SavedLayout& l = st->layout;
    const int D = s.directions(), R = s.out_size(), I = s.input_size;
    const std::size_t LDB = static_cast<std::size_t>(L) * D * a.B;
    // x into the state ([T, B, I]); the forward reads that copy, writes y into the state, and y goes out.
    auto* xs = reinterpret_cast<float*>(st->device + l.x);
    detail::launch_copy_rows(
        {a.T, a.B, I, static_cast<const float*>(a.x), a.x_st, a.x_sb, xs, static_cast<std::int64_t>(a.B) * I, I},
        stream);
    const auto keep_state = [&](const void* src, std::size_t at, std::size_t floats) {
      if (src != nullptr) {
        check(cudaMemcpyAsync(st->device + at, src, sizeof(float) * floats, cudaMemcpyDeviceToDevice, stream),
              "cudaMemcpyAsync");
      } else {
        check(cudaMemsetAsync(st->device + at, 0, sizeof(float) * floats, stream), "cudaMemsetAsync");
      }
    };
    keep_state(a.h0, l.h0, LDB * R);
    keep_state(a.c0, l.c0, LDB * s.hidden_size);
    if (lengths.empty()) lengths.assign(a.B, a.T);
    upload_lengths(lengths, st->device + l.lengths, stream);
    detail::ForwardIO io = st->io();  // the forward reads x from the state and writes y there
    io.h_n = static_cast<float*>(a.h_n);
    io.c_n = static_cast<float*>(a.c_n);
    StreamBuffer ws(l.train.work_total, stream);
    operand_switch(op_, [&](auto op) {
      constexpr Operand kOp = decltype(op)::value;
      const auto views = detail::layer_views<kOp>(w.image, static_cast<const unsigned char*>(w.device));
      detail::launch_train_forward<kOp>(limits_, s, views.data(), io, mask_ptrs.empty() ? nullptr : mask_ptrs.data(),
                                        st->device, ws.get(), stream);
    });
    detail::launch_copy_rows({a.T, a.B, D * R, io.y, io.y_st, io.y_sb, static_cast<float*>(a.y), a.y_st, a.y_sb},
                             stream);
    return st;
  }

  std::unique_ptr<SavedState> saved_view(const PackedWeights& weights, int T, int B, const std::int64_t*, void* saved,
                                         std::size_t saved_bytes) const override {
    const CudaPacked& w = own(&weights);
    if (T < 1 || B < 1) bad("T and B must be >= 1");
    if (saved == nullptr) bad("saved: expected the buffer a training forward filled");
    return saved_state(w.shape, T, B, saved, saved_bytes);  // the lengths are the state's own copy (the forward's)
  }

  void backward(const BackwardArgs& a) const override {
    const CudaPacked& w = own(a.weights);
    const auto* st = dynamic_cast<const CudaSaved*>(a.state);
    if (st == nullptr || st->owner != this) bad("state: not saved by this engine");
    const ModelShape& s = w.shape;
    const int L = s.num_layers;
    on_device(a.dy, "dy", false);
    on_device(a.dx, "dx", false);
    on_device(a.dh0, "dh0", false);
    on_device(a.dc0, "dc0", false);
    on_device(a.dh_n, "dh_n", true);
    on_device(a.dc_n, "dc_n", true);
    if (a.grads == nullptr) bad("grads is null");
    for (int i = 0; i < L * s.directions(); ++i) {  // the kernels write straight into them
      const GradPointers& g = a.grads[i];
      for (const void* p : {g.w_ih, g.w_hh, g.b_ih, g.b_hh, g.w_hr, g.p_i, g.p_f, g.p_o}) on_device(p, "grads", true);
    }
    const std::vector<const float*> mask_ptrs = device_masks(a.masks, L);
    DeviceGuard guard(index_);
    const auto stream = static_cast<cudaStream_t>(a.stream);
    StreamBuffer ws(st->layout.train.work_total, stream);
    detail::TrainIO io;
    io.fwd = st->io();
    io.dy = static_cast<const float*>(a.dy);
    io.dy_st = a.dy_st;
    io.dy_sb = a.dy_sb;
    io.dh_n = static_cast<const float*>(a.dh_n);
    io.dc_n = static_cast<const float*>(a.dc_n);
    io.dx = static_cast<float*>(a.dx);
    io.dx_st = a.dx_st;
    io.dx_sb = a.dx_sb;
    io.dh0 = static_cast<float*>(a.dh0);
    io.dc0 = static_cast<float*>(a.dc0);
    io.masks = mask_ptrs.empty() ? nullptr : mask_ptrs.data();
    operand_switch(op_, [&](auto op) {
      constexpr Operand kOp = decltype(op)::value;
      const auto views = detail::layer_views<kOp>(w.image, static_cast<const unsigned char*>(w.device));
      detail::launch_train_backward<kOp>(limits_, s, views.data(), io, a.grads, st->device, ws.get(), stream);
    });
  }

 private:
  std::size_t operand_bytes() const { return op_ == Operand::kBF16 || op_ == Operand::kF16 ? 2 : 4; }

  const CudaPacked& own(const PackedWeights* weights) const {
    const auto* w = dynamic_cast<const CudaPacked*>(weights);
    if (w == nullptr || w->owner != this) bad("weights: not packed by this engine");
    return *w;
  }

  // The dropout masks (L - 1 device pointers, or null), checked; -> the pointers the kernels take (empty: none).
  std::vector<const float*> device_masks(const void* const* masks, int L) const {
    std::vector<const float*> out;
    for (int k = 0; masks != nullptr && k + 1 < L; ++k) {
      on_device(masks[k], ("masks[" + std::to_string(k) + "]").c_str(), true);
      out.push_back(static_cast<const float*>(masks[k]));
    }
    return out;
  }

  // The saved state of a training call of T steps on B rows: in `buffer` (a caller's device memory, at least
  // the state's size) or, for null, in memory of its own.
  std::unique_ptr<CudaSaved> saved_state(const ModelShape& s, int T, int B, void* buffer, std::size_t bytes) const {
    auto st = std::make_unique<CudaSaved>();
    st->shape = s;
    st->T = T;
    st->B = B;
    st->owner = this;
    st->index = index_;
    st->layout = saved_layout(s, T, B, operand_bytes());
    st->nbytes = st->layout.total;
    if (buffer != nullptr) {
      if (bytes < st->layout.total)
        bad("saved: " + std::to_string(bytes) + " bytes, the state needs " + std::to_string(st->layout.total));
      on_device(buffer, "saved", false);
      st->device = static_cast<unsigned char*>(buffer);
    } else {
      st->device = static_cast<unsigned char*>(device_alloc(st->layout.total, index_));
      st->own = true;
    }
    return st;
  }

  void on_device(const void* p, const char* what, bool optional) const {
    if (p == nullptr) {
      if (!optional) bad(std::string(what) + " is null");
      return;
    }
    if (pointer_device(p) != index_) bad(std::string(what) + ": not memory of cuda:" + std::to_string(index_));
  }

  // The checks of a forward call (inference or training), before anything is enqueued; -> its lengths.
  std::vector<int> checked_call(const ForwardArgs& a) const {
    if (a.T < 1) bad("T must be >= 1");
    if (a.B < 1) bad("B must be >= 1");
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
    return lengths;
  }

  static detail::ForwardIO forward_io(const ForwardArgs& a) {
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
    return io;
  }

  // The lengths into device memory at dst; -> dst. Pageable source: the call returns once the bytes are
  // staged, so the vector may go out of scope.
  static const int* upload_lengths(const std::vector<int>& lengths, unsigned char* dst, cudaStream_t stream) {
    check(cudaMemcpyAsync(dst, lengths.data(), sizeof(int) * lengths.size(), cudaMemcpyHostToDevice, stream),
          "cudaMemcpyAsync");
    return reinterpret_cast<const int*>(dst);
  }

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
