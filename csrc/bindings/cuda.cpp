// The CUDA library's bindings: device queries, the fused cell kernel, and the sequence engine on the seam
// (cuda_engine -> the Engine class of cpu.cpp; cuda_forward, cuda_forward_train, cuda_backward: numpy arrays
// staged through device memory; cuda_device.cpp: the same calls on DLPack device arrays).
// Without a CUDA build, only cuda_built = False.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/cuda_memory.h"
#include "bindings/engine.h"
#include "bindings/module.h"
#if defined(FASTLSTM_HAVE_CUDA)
#include "fastlstm/cuda.h"
#endif

namespace fastlstm::bindings {

#if defined(FASTLSTM_HAVE_CUDA)
namespace {

py::tuple cell_forward(const py::array& z, const py::array& c_prev, const py::object& p_i, const py::object& p_f,
                       const py::object& p_o) {
  if (z.ndim() != 2 || z.shape(1) % 4 != 0) value_error("z: expected shape (B, 4H)");
  const py::ssize_t B = z.shape(0), H = z.shape(1) / 4;
  if (B < 1 || H < 1 || B > INT32_MAX || H > INT32_MAX) value_error("z: expected 1 <= B, H < 2^31");
  const auto* zp = static_cast<const float*>(checked(z, "z", DType::kF32, {B, 4 * H}));
  const auto* cp = static_cast<const float*>(checked(c_prev, "c_prev", DType::kF32, {B, H}));
  const bool peep = !p_i.is_none();
  if (peep == p_f.is_none() || peep == p_o.is_none()) value_error("p_i, p_f, p_o: give all three peepholes or none");
  const float *pi = nullptr, *pf = nullptr, *po = nullptr;
  if (peep) {
    pi = static_cast<const float*>(checked(p_i, "p_i", DType::kF32, {H}));
    pf = static_cast<const float*>(checked(p_f, "p_f", DType::kF32, {H}));
    po = static_cast<const float*>(checked(p_o, "p_o", DType::kF32, {H}));
  }
  py::array_t<float> h({B, H}), c({B, H});
  float* hp = h.mutable_data();
  float* cn = c.mutable_data();
  {
    py::gil_scoped_release release;
    cuda::cell_forward_host_f32(static_cast<int>(B), static_cast<int>(H), zp, cp, pi, pf, po, hp, cn);
  }
  return py::make_tuple(h, c);
}

PyEngine cuda_engine(int index, const std::string& dtype, const std::string& precision, const std::string& cell) {
  EngineKey key;
  key.dtype = dtype_of(dtype);
  if (!precision_from_name(precision.c_str(), &key.precision))
    value_error("precision: expected 'default', 'tf32', 'bf16' or 'fp16', got '" + precision + "'");
  if (!cell_from_name(cell.c_str(), &key.cell)) value_error("cell: expected 'lstm', got '" + cell + "'");
  return PyEngine{cuda::make_engine(key, index)};
}

// Host <-> device pairs of one staged call, in one device allocation: inputs are copied in before the engine
// runs, outputs out after (the copies wait for the kernels).
class StagedCall {
 public:
  explicit StagedCall(int index) : index_(index) {}
  // Registers `bytes` at host (null: nothing); -> where the device copy will be, patched into *slot by stage().
  void in(const void** slot, std::size_t bytes) { add(const_cast<void**>(slot), bytes, true); }
  void out(void** slot, std::size_t bytes) { add(slot, bytes, false); }
  // Allocates, copies the inputs in and points every slot at its device copy.
  void stage() {
    std::size_t total = 0;
    for (Item& i : items_) {
      i.at = total;
      total += (i.bytes + 255) & ~std::size_t{255};
    }
    dev_ = std::make_unique<DeviceMemory>(total, index_);
    for (Item& i : items_) {
      void* d = dev_->get() + i.at;
      if (i.input) cuda::copy_to_device(d, i.host, i.bytes, index_, nullptr);
      *i.slot = d;
    }
  }
  void copy_out() {
    for (const Item& i : items_)
      if (!i.input) cuda::copy_to_host(i.host, dev_->get() + i.at, i.bytes, index_, nullptr);
  }

 private:
  struct Item {
    void** slot;
    void* host;
    std::size_t bytes, at;
    bool input;
  };
  void add(void** slot, std::size_t bytes, bool input) {
    if (*slot != nullptr) items_.push_back({slot, *slot, bytes, 0, input});
  }
  int index_;
  std::vector<Item> items_;
  std::unique_ptr<DeviceMemory> dev_;
};

// numpy in -> device -> numpy out: forward_io checks the arrays and allocates the outputs on the host (x is
// made C-contiguous first), every array is staged in one device allocation, the engine runs on the legacy
// default stream, and the outputs are copied back (which waits for the kernels). With `train`, the training
// forward: the saved state lives in the device memory of the engine, held by the returned object until
// backward.
py::tuple forward_staged(const PyEngine& e, const PyWeights& w, int index, const py::array& x_in, const py::object& h0,
                         const py::object& c0, const py::object& lengths, bool batch_first, const py::object& masks,
                         bool train) {
  const py::array x = py::array::ensure(x_in, py::array::c_style);
  if (!x) type_error("x: expected an array");
  ForwardIo io = forward_io(e, w, x, h0, c0, lengths, batch_first, 1);
  ForwardArgs a = io.a;
  const ModelShape& s = w.weights->shape;
  std::vector<const void*> mp = mask_pointers(s, DType::kF32, masks, a.T, a.B);
  const std::size_t states = static_cast<std::size_t>(s.num_layers) * s.directions() * a.B * sizeof(float);
  const std::size_t mask_bytes = sizeof(float) * a.T * a.B * s.directions() * s.out_size();
  std::shared_ptr<const SavedState> state;
  {
    py::gil_scoped_release release;
    StagedCall call(index);
    call.in(&a.x, static_cast<std::size_t>(x.nbytes()));
    call.in(&a.h0, states * s.out_size());
    call.in(&a.c0, states * s.hidden_size);
    for (const void*& m : mp) call.in(&m, mask_bytes);
    call.out(&a.y, static_cast<std::size_t>(io.y.nbytes()));
    call.out(&a.h_n, static_cast<std::size_t>(io.h_n.nbytes()));
    call.out(&a.c_n, static_cast<std::size_t>(io.c_n.nbytes()));
    call.stage();
    if (train) {
      state = e.engine->forward_train(a, masks.is_none() ? nullptr : mp.data());
    } else {
      e.engine->forward(a);
    }
    call.copy_out();
  }
  if (!train) return py::make_tuple(io.y, io.h_n, io.c_n);
  return py::make_tuple(io.y, io.h_n, io.c_n, PySaved{state, py::none()});
}

py::tuple forward(const PyEngine& e, const PyWeights& w, int index, const py::array& x, const py::object& h0,
                  const py::object& c0, const py::object& lengths, bool batch_first) {
  return forward_staged(e, w, index, x, h0, c0, lengths, batch_first, py::none(), false);
}

py::tuple forward_train(const PyEngine& e, const PyWeights& w, int index, const py::array& x, const py::object& h0,
                        const py::object& c0, const py::object& lengths, bool batch_first, const py::object& masks) {
  return forward_staged(e, w, index, x, h0, c0, lengths, batch_first, masks, true);
}

// Backward on numpy arrays: dy (made C-contiguous), dh_n, dc_n and the masks staged in, dx, dh0, dc0 and every
// gradient copied out.
py::tuple backward(const PyEngine& e, const PyWeights& w, int index, const PySaved& saved, const py::array& dy_in,
                   const py::object& dh_n, const py::object& dc_n, bool batch_first, const py::object& masks) {
  const py::array dy = py::array::ensure(dy_in, py::array::c_style);
  if (!dy) type_error("dy: expected an array");
  BackwardIo io = backward_io(e, w, saved, dy, dh_n, dc_n, batch_first, masks);
  BackwardArgs& a = io.a;
  const ModelShape& s = saved.state->shape;
  const std::size_t mask_bytes = sizeof(float) * saved.state->T * saved.state->B * s.directions() * s.out_size();
  const auto bytes = [](const py::array& arr) { return static_cast<std::size_t>(arr.nbytes()); };
  std::vector<std::pair<void**, std::size_t>> grads;  // each gradient's slot and its array's size
  for (std::size_t i = 0; i < io.gp.size(); ++i) {
    const py::dict d = io.grads[i];
    for (const auto& [name, field] : kGradFields)
      if (d.contains(name)) grads.emplace_back(&(io.gp[i].*field), bytes(d[name].cast<py::array>()));
  }
  {
    py::gil_scoped_release release;
    StagedCall call(index);
    call.in(&a.dy, bytes(dy));
    call.in(&a.dh_n, bytes(io.dh0));  // dh_n, dc_n: the shapes of dh0, dc0 (backward_io checked them)
    call.in(&a.dc_n, bytes(io.dc0));
    for (const void*& m : io.masks) call.in(&m, mask_bytes);
    call.out(&a.dx, bytes(io.dx));
    call.out(&a.dh0, bytes(io.dh0));
    call.out(&a.dc0, bytes(io.dc0));
    for (const auto& [slot, n] : grads) call.out(slot, n);
    call.stage();
    a.masks = masks.is_none() ? nullptr : io.masks.data();
    e.engine->backward(a);
    call.copy_out();
  }
  return py::make_tuple(io.dx, io.dh0, io.dc0, io.grads);
}

py::list devices() {
  py::list out;
  const int n = cuda::device_count();
  for (int i = 0; i < n; ++i) {
    const cuda::DeviceInfo info = cuda::device_info(i);
    py::dict d;
    d["name"] = info.name;
    d["compute_capability"] = py::make_tuple(info.major, info.minor);
    d["sm_count"] = info.sm_count;
    d["total_memory"] = info.total_mem;
    out.append(d);
  }
  return out;
}

}  // namespace

void bind_cuda(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const cuda::CudaOutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const cuda::CudaError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
  m.attr("cuda_built") = true;
  m.def("cuda_devices", &devices, "The visible CUDA devices (empty without a driver or GPU).");
  m.def("cuda_cell_forward", &cell_forward, py::arg("z"), py::arg("c_prev"), py::arg("p_i") = py::none(),
        py::arg("p_f") = py::none(), py::arg("p_o") = py::none(),
        "One fused LSTM cell update on the GPU: z [B,4H] (i,f,g,o), c_prev [B,H] -> (h [B,H], c [B,H]).");
  m.def("cuda_engine", &cuda_engine, py::arg("index"), py::arg("dtype"), py::arg("precision") = "default",
        py::arg("cell") = "lstm", "The CUDA sequence engine of a key on device `index` (inference).");
  m.def("cuda_forward", &forward, py::arg("engine"), py::arg("weights"), py::arg("index"), py::arg("x"), py::arg("h0"),
        py::arg("c0"), py::arg("lengths"), py::arg("batch_first"),
        "A CUDA engine's forward on numpy arrays: staged through device memory, results as numpy arrays.");
  m.def("cuda_forward_train", &forward_train, py::arg("engine"), py::arg("weights"), py::arg("index"), py::arg("x"),
        py::arg("h0"), py::arg("c0"), py::arg("lengths"), py::arg("batch_first"), py::arg("masks"),
        "A CUDA engine's training forward on numpy arrays: -> (y, h_n, c_n, saved state on the device).");
  m.def("cuda_backward", &backward, py::arg("engine"), py::arg("weights"), py::arg("index"), py::arg("saved"),
        py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("batch_first"), py::arg("masks"),
        "A CUDA engine's backward on numpy arrays: -> (dx, dh0, dc0, [per layer and direction: gradients]).");
  bind_cuda_device(m);
}
#else
void bind_cuda(py::module_& m) { m.attr("cuda_built") = false; }
#endif

}  // namespace fastlstm::bindings
