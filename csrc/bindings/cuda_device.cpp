// The CUDA engine's calls on device arrays of any DLPack framework (torch, cupy, jax), without host copies:
// the arguments come as DLPack capsules and are read where they are, the results are new device arrays
// handed over as capsules. Each call waits for its kernels, so its results are complete when it returns and
// any stream of the consumer may read them. Inference; the training forward, its saved state in the engine's
// memory or in a caller's uint8 device buffer (a framework's "reserve" tensor); a view of such a buffer; and
// backward. Dropout masks may also be numpy arrays (uploaded for the call). Every shape, dtype, device and
// layout a pointer depends on is checked here; the engine checks the values (lengths).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/cuda_memory.h"
#include "bindings/dlpack.h"
#include "bindings/engine.h"
#include "bindings/module.h"
#include "fastlstm/cuda.h"

namespace fastlstm::bindings {
namespace {

using Dims = std::vector<std::int64_t>;

constexpr dlpack::DLDataType kF32{dlpack::kDLFloat, 32, 1}, kU8{dlpack::kDLUInt, 8, 1};

std::string dims_text(const Dims& d) { return shape_str(std::vector<py::ssize_t>(d.begin(), d.end())); }

// A consumed device array on cuda:index of dtype `want` (TypeError / ValueError naming it otherwise).
std::unique_ptr<dlpack::View> device_view(const py::handle& obj, const std::string& name, int index,
                                          dlpack::DLDataType want) {
  auto v = std::make_unique<dlpack::View>(obj, name);
  const dlpack::DLTensor& t = v->tensor();
  if (t.device.device_type != dlpack::kDLCUDA || t.device.device_id != index)
    value_error(name + ": expected an array on cuda:" + std::to_string(index) + " (DLPack device type " +
                std::to_string(t.device.device_type) + ", id " + std::to_string(t.device.device_id) + ")");
  if (t.dtype.code != want.code || t.dtype.bits != want.bits || t.dtype.lanes != 1)
    type_error(name + (want.code == dlpack::kDLFloat ? ": expected float32" : ": expected uint8"));
  return v;
}

// The arguments of one call: the DLPack views, alive until it returns, and host arrays uploaded for it.
class DeviceArgs {
 public:
  explicit DeviceArgs(int index) : index_(index) {}

  // A C-contiguous float32 device array of `shape`; None -> null.
  const void* compact(const py::object& obj, const std::string& name, const Dims& shape) {
    if (obj.is_none()) return nullptr;
    const dlpack::View& v = array(obj, name);
    if (v.shape() != shape || !v.compact())
      value_error(name + ": expected a C-contiguous array of shape " + dims_text(shape));
    return v.data();
  }

  // A float32 device array (TypeError / ValueError naming it when it is not one on cuda:index).
  const dlpack::View& array(const py::handle& obj, const std::string& name) {
    views_.push_back(device_view(obj, name, index_, kF32));
    return *views_.back();
  }

  // A float32 device array of T steps on B rows of `width` ([T, B, width]; batch_first: [B, T, width]) with a
  // contiguous last axis; -> its data, its step and row strides in *st, *sb.
  static const void* sequence(const dlpack::View& v, const std::string& name, int T, int B, std::int64_t width,
                              bool batch_first, std::int64_t* st, std::int64_t* sb) {
    const Dims shape = batch_first ? Dims{B, T, width} : Dims{T, B, width};
    if (v.shape() != shape)
      value_error(name + ": expected shape " + dims_text(shape) + ", got " + dims_text(v.shape()));
    const Dims s = v.strides();
    if (width > 1 && s[2] != 1) value_error(name + ": the last axis must be contiguous");
    *st = T > 1 ? s[batch_first ? 1 : 0] : 0;
    *sb = B > 1 ? s[batch_first ? 0 : 1] : 0;
    return v.data();
  }

  // The dropout masks of a training call: None, or L-1 arrays [T, B, D*Hout], each a C-contiguous device
  // array or a numpy array (uploaded). -> the engine's pointers (null: none).
  std::vector<const void*> masks(const py::object& masks, const ModelShape& s, int T, int B) {
    std::vector<const void*> out(std::max(s.num_layers - 1, 1), nullptr);
    if (masks.is_none()) return out;
    const py::list lst = masks.cast<py::list>();
    if (static_cast<int>(lst.size()) != s.num_layers - 1) value_error("masks: expected num_layers - 1 arrays");
    const Dims shape{T, B, static_cast<std::int64_t>(s.directions()) * s.out_size()};
    for (int k = 0; k + 1 < s.num_layers; ++k) {
      const std::string name = "masks[" + std::to_string(k) + "]";
      if (!py::isinstance<py::array>(lst[k])) {
        out[k] = compact(lst[k], name, shape);
        continue;
      }
      const void* host = checked(lst[k], name, DType::kF32, {shape[0], shape[1], shape[2]});
      const std::size_t bytes = sizeof(float) * shape[0] * shape[1] * shape[2];
      uploads_.push_back(std::make_unique<DeviceMemory>(bytes, index_));
      cuda::copy_to_device(uploads_.back()->get(), host, bytes, index_, nullptr);
      out[k] = uploads_.back()->get();
    }
    return out;
  }

 private:
  int index_;
  std::vector<std::unique_ptr<dlpack::View>> views_;
  std::vector<std::unique_ptr<DeviceMemory>> uploads_;
};

// A call's outputs in device memory until they are handed over, once the call has finished.
class DeviceOutputs {
 public:
  explicit DeviceOutputs(int index) : index_(index) {}
  void* add(const Dims& shape) {
    std::size_t n = sizeof(float);
    for (std::int64_t d : shape) n *= static_cast<std::size_t>(d);
    items_.push_back({std::make_unique<DeviceMemory>(n, index_), shape});
    return items_.back().memory->get();
  }
  py::capsule hand_over(std::size_t i) { return items_[i].memory->hand_over(items_[i].shape); }

 private:
  struct Item {
    std::unique_ptr<DeviceMemory> memory;
    Dims shape;
  };
  int index_;
  std::vector<Item> items_;
};

// A forward call's arguments (x strided with a contiguous last axis; h0, c0 C-contiguous or None; lengths a
// host int64 array or None) and its outputs y, h_n, c_n (outputs 0, 1, 2).
ForwardArgs forward_args(DeviceArgs& in, DeviceOutputs& out, const PyWeights& w, const py::object& x,
                         const py::object& h0, const py::object& c0, const py::object& lengths, bool batch_first) {
  const ModelShape& s = w.weights->shape;
  const dlpack::View& xv = in.array(x, "x");
  const Dims sh = xv.shape();
  if (sh.size() != 3) value_error("x: expected 3 dimensions, got shape " + dims_text(sh));
  const std::int64_t T = sh[batch_first ? 1 : 0], B = sh[batch_first ? 0 : 1];
  if (T < 1 || B < 1 || T > INT32_MAX || B > INT32_MAX) value_error("x: expected 1 <= T, B < 2^31");
  ForwardArgs a;
  a.weights = w.weights.get();
  a.T = static_cast<int>(T);
  a.B = static_cast<int>(B);
  a.x = DeviceArgs::sequence(xv, "x", a.T, a.B, s.input_size, batch_first, &a.x_st, &a.x_sb);
  const std::int64_t DL = static_cast<std::int64_t>(s.num_layers) * s.directions(), R = s.out_size();
  const std::int64_t W = s.directions() * R;
  a.h0 = in.compact(h0, "hx[0] (h0)", {DL, B, R});
  a.c0 = in.compact(c0, "hx[1] (c0)", {DL, B, s.hidden_size});
  if (!lengths.is_none()) a.lengths = checked_int64(lengths, "lengths", B);
  a.y = out.add(batch_first ? Dims{B, T, W} : Dims{T, B, W});
  a.y_st = batch_first ? W : B * W;
  a.y_sb = batch_first ? T * W : W;
  a.h_n = out.add({DL, B, R});
  a.c_n = out.add({DL, B, s.hidden_size});
  return a;
}

py::tuple forward(const PyEngine& e, const PyWeights& w, int index, const py::object& x, const py::object& h0,
                  const py::object& c0, const py::object& lengths, bool batch_first) {
  DeviceArgs in(index);
  DeviceOutputs out(index);
  const ForwardArgs a = forward_args(in, out, w, x, h0, c0, lengths, batch_first);
  {
    py::gil_scoped_release release;
    e.engine->forward(a);
    cuda::synchronize(index, nullptr);
  }
  return py::make_tuple(out.hand_over(0), out.hand_over(1), out.hand_over(2));
}

// A caller's buffer for a saved state: a uint8 device array, consumed; the view lives as long as the
// returned object (PySaved::buffer keeps it).
std::pair<std::unique_ptr<dlpack::View>, std::size_t> saved_buffer(const py::object& saved, int index) {
  auto v = device_view(saved, "saved", index, kU8);
  std::size_t bytes = 1;
  for (std::int64_t d : v->shape()) bytes *= static_cast<std::size_t>(d);
  if (!v->compact()) value_error("saved: expected a C-contiguous array");
  return {std::move(v), bytes};
}

py::object holder(std::unique_ptr<dlpack::View> v) {
  if (!v) return py::none();
  return py::capsule(v.release(), [](void* p) { delete static_cast<dlpack::View*>(p); });
}

// The training forward: -> (y, h_n, c_n, the saved state: in `saved`, a uint8 device array, or None: the
// engine's own device memory).
py::tuple forward_train(const PyEngine& e, const PyWeights& w, int index, const py::object& x, const py::object& h0,
                        const py::object& c0, const py::object& lengths, bool batch_first, const py::object& masks,
                        const py::object& saved) {
  DeviceArgs in(index);
  DeviceOutputs out(index);
  const ForwardArgs a = forward_args(in, out, w, x, h0, c0, lengths, batch_first);
  const std::vector<const void*> mp = in.masks(masks, w.weights->shape, a.T, a.B);
  std::pair<std::unique_ptr<dlpack::View>, std::size_t> buf{nullptr, 0};
  if (!saved.is_none()) buf = saved_buffer(saved, index);
  std::shared_ptr<const SavedState> state;
  {
    py::gil_scoped_release release;
    state = e.engine->forward_train(a, masks.is_none() ? nullptr : mp.data(), buf.first ? buf.first->data() : nullptr,
                                    buf.second);
    cuda::synchronize(index, nullptr);
  }
  return py::make_tuple(out.hand_over(0), out.hand_over(1), out.hand_over(2),
                        PySaved{state, holder(std::move(buf.first))});
}

// The saved state a training forward of T steps on B rows wrote into `saved` (a uint8 device array).
PySaved saved_view(const PyEngine& e, const PyWeights& w, int index, const py::object& saved, int T, int B) {
  auto buf = saved_buffer(saved, index);
  auto state = e.engine->saved_view(*w.weights, T, B, nullptr, buf.first->data(), buf.second);
  return PySaved{std::move(state), holder(std::move(buf.first))};
}

// dy in y's layout (batch_first as the forward; strided with a contiguous last axis), dh_n and dc_n
// C-contiguous or None -> (dx in x's layout, dh0, dc0, grads: a dict of capsules per layer and direction).
py::tuple backward(const PyEngine& e, const PyWeights& w, int index, const PySaved& saved, const py::object& dy,
                   const py::object& dh_n, const py::object& dc_n, bool batch_first, const py::object& masks) {
  const SavedState& st = *saved.state;
  const ModelShape& s = st.shape;
  const std::int64_t DL = static_cast<std::int64_t>(s.num_layers) * s.directions(), R = s.out_size(), T = st.T,
                     B = st.B, I = s.input_size;
  DeviceArgs in(index);
  DeviceOutputs out(index);
  BackwardArgs a;
  a.weights = w.weights.get();
  a.state = &st;
  a.dy =
      DeviceArgs::sequence(in.array(dy, "dy"), "dy", st.T, st.B, s.directions() * R, batch_first, &a.dy_st, &a.dy_sb);
  a.dh_n = in.compact(dh_n, "dh_n", {DL, B, R});
  a.dc_n = in.compact(dc_n, "dc_n", {DL, B, s.hidden_size});
  const std::vector<const void*> mp = in.masks(masks, s, st.T, st.B);
  a.masks = masks.is_none() ? nullptr : mp.data();
  a.dx = out.add(batch_first ? Dims{B, T, I} : Dims{T, B, I});
  a.dx_st = batch_first ? I : B * I;
  a.dx_sb = batch_first ? T * I : I;
  a.dh0 = out.add({DL, B, R});
  a.dc0 = out.add({DL, B, s.hidden_size});
  std::vector<std::pair<py::dict, const char*>> slots;  // output 3 + i goes to slots[i]
  py::list grads;
  const std::vector<GradPointers> gp =
      grad_outputs(s, grads, [&](py::dict& d, const char* name, const std::vector<py::ssize_t>& shape) {
        slots.emplace_back(d, name);
        return out.add(Dims(shape.begin(), shape.end()));
      });
  a.grads = gp.data();
  {
    py::gil_scoped_release release;
    e.engine->backward(a);
    cuda::synchronize(index, nullptr);
  }
  for (std::size_t i = 0; i < slots.size(); ++i) slots[i].first[slots[i].second] = out.hand_over(3 + i);
  return py::make_tuple(out.hand_over(0), out.hand_over(1), out.hand_over(2), grads);
}

}  // namespace

void bind_cuda_device(py::module_& m) {
  m.def("cuda_forward_dlpack", &forward, py::arg("engine"), py::arg("weights"), py::arg("index"), py::arg("x"),
        py::arg("h0"), py::arg("c0"), py::arg("lengths"), py::arg("batch_first"),
        "A CUDA engine's forward on DLPack capsules of device arrays: -> capsules of new device arrays.");
  m.def("cuda_forward_train_dlpack", &forward_train, py::arg("engine"), py::arg("weights"), py::arg("index"),
        py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("lengths"), py::arg("batch_first"), py::arg("masks"),
        py::arg("saved"),
        "The training forward on device arrays: -> (capsules of y, h_n, c_n; the saved state, in `saved` (a "
        "uint8 device array) or in the engine's memory for None).");
  m.def("cuda_saved_view", &saved_view, py::arg("engine"), py::arg("weights"), py::arg("index"), py::arg("saved"),
        py::arg("T"), py::arg("B"), "The saved state a training forward of T steps on B rows wrote into `saved`.");
  m.def("cuda_backward_dlpack", &backward, py::arg("engine"), py::arg("weights"), py::arg("index"), py::arg("saved"),
        py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("batch_first"), py::arg("masks"),
        "Backward on device arrays: -> capsules of (dx, dh0, dc0, [per layer and direction: gradients]).");
}

}  // namespace fastlstm::bindings
