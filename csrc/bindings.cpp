// fastlstm._core: the only pybind11 file. It turns numpy arrays into the engines' plain structs (checking
// every shape, dtype and stride a raw pointer depends on), releases the GIL, and maps C++ errors to
// Python's: invalid_argument -> ValueError, bad_alloc / CUDA out of memory -> MemoryError,
// other CUDA errors -> RuntimeError. No math here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fastlstm/isa.h"
#include "fastlstm/lstm.h"
#if defined(FASTLSTM_HAVE_CUDA)
#include "fastlstm_cuda.h"
#endif

namespace py = pybind11;
using namespace fastlstm;

namespace {

[[noreturn]] void type_error(const std::string& msg) { throw py::type_error(msg); }
[[noreturn]] void value_error(const std::string& msg) { throw py::value_error(msg); }

cpu::DType dtype_of(const std::string& name) {
  if (name == "float32") return cpu::DType::kF32;
  if (name == "float64") return cpu::DType::kF64;
  value_error("dtype: expected 'float32' or 'float64', got '" + name + "'");
}

py::dtype np_dtype(cpu::DType t) { return t == cpu::DType::kF32 ? py::dtype::of<float>() : py::dtype::of<double>(); }

cpu::Isa isa_of(const std::string& name) {
  cpu::Isa isa;
  if (!cpu::isa_from_name(name.c_str(), &isa)) value_error("isa: expected scalar, avx2 or avx512, got '" + name + "'");
  return isa;
}

std::string shape_str(const std::vector<py::ssize_t>& s) {
  std::string out = "(";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) out.append(", ");
    out.append(std::to_string(s[i]));
  }
  out.append(s.size() == 1 ? ",)" : ")");
  return out;
}

// An array the engine may read through a raw pointer: the model's dtype, C-contiguous, the given shape.
const void* checked(const py::handle& obj, const std::string& name, cpu::DType dt, std::vector<py::ssize_t> shape) {
  if (!py::isinstance<py::array>(obj)) type_error(name + ": expected a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(np_dtype(dt))) type_error(name + ": expected dtype " + std::string(py::str(np_dtype(dt))));
  if (!(a.flags() & py::array::c_style)) value_error(name + ": expected a C-contiguous array");
  std::vector<py::ssize_t> got(a.shape(), a.shape() + a.ndim());
  if (got != shape) value_error(name + ": expected shape " + shape_str(shape) + ", got " + shape_str(got));
  return a.data();
}

// Element stride of one axis (an axis of length 1 has no meaningful stride: numpy may report any).
std::int64_t elem_stride(const py::array& a, int axis, const std::string& name) {
  if (a.shape(axis) <= 1) return 0;
  const py::ssize_t s = a.strides(axis), item = a.itemsize();
  if (s % item != 0) value_error(name + ": strides must be multiples of the item size");
  return s / item;
}

struct Packed {
  std::shared_ptr<const cpu::PackedModel> model;
};

Packed pack(int input_size, int hidden_size, int num_layers, int proj_size, bool bidirectional, bool bias,
            bool peephole, const std::string& dtype, const std::string& isa, const py::list& layers, bool training) {
  cpu::ModelShape s;
  s.input_size = input_size;
  s.hidden_size = hidden_size;
  s.num_layers = num_layers;
  s.proj_size = proj_size;
  s.bidirectional = bidirectional;
  s.bias = bias;
  s.peephole = peephole;
  if (input_size < 1 || hidden_size < 1 || num_layers < 1 || proj_size < 0 || proj_size >= hidden_size)
    value_error("pack: invalid model shape");
  const cpu::DType dt = dtype_of(dtype);
  const int D = s.directions();
  if (static_cast<int>(layers.size()) != num_layers * D) value_error("layers: expected num_layers * D entries");
  const py::ssize_t H = hidden_size, G = 4 * H, P = proj_size;
  std::vector<cpu::RawLayer> raw(layers.size());
  for (int k = 0; k < num_layers; ++k) {
    for (int d = 0; d < D; ++d) {
      py::dict p = layers[k * D + d].cast<py::dict>();
      const std::string tag = "layers[" + std::to_string(k * D + d) + "].";
      cpu::RawLayer& r = raw[k * D + d];
      r.w_ih = checked(p["w_ih"], tag + "w_ih", dt, {G, s.layer_input(k)});
      r.w_hh = checked(p["w_hh"], tag + "w_hh", dt, {G, s.out_size()});
      if (bias) {
        r.b_ih = checked(p["b_ih"], tag + "b_ih", dt, {G});
        r.b_hh = checked(p["b_hh"], tag + "b_hh", dt, {G});
      }
      if (P > 0) r.w_hr = checked(p["w_hr"], tag + "w_hr", dt, {P, H});
      if (peephole) {
        r.p_i = checked(p["p_i"], tag + "p_i", dt, {H});
        r.p_f = checked(p["p_f"], tag + "p_f", dt, {H});
        r.p_o = checked(p["p_o"], tag + "p_o", dt, {H});
      }
    }
  }
  const cpu::Isa which = isa_of(isa);
  py::gil_scoped_release release;
  return Packed{cpu::pack_model(s, dt, which, raw.data(), training)};
}

const void* checked_int64(const py::handle& obj, py::ssize_t B) {
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!(a.flags() & py::array::c_style) || a.ndim() != 1 || a.shape(0) != B)
    value_error("lengths: expected a contiguous 1-D array of B = " + std::to_string(B) + " integers");
  return a.data();
}

// x: [T, B, I] or, with batch_first, [B, T, I] (last axis contiguous). Returns (y, h_n, c_n) with y in x's
// layout. h0/c0: C-contiguous [D*L, B, Hout] / [D*L, B, H] or None. lengths: int64 [B] or None.
struct Saved {
  std::shared_ptr<const cpu::TrainState> state;
};

// Fills a's inputs from x, h0, c0, lengths and allocates the outputs (y in x's layout).
struct ForwardIo {
  cpu::ForwardArgs a;
  py::array y, h_n, c_n;
};

ForwardIo forward_io(const Packed& packed, const py::array& x, const py::object& h0, const py::object& c0,
                     const py::object& lengths, bool batch_first, int num_threads) {
  const cpu::PackedModel& m = *packed.model;
  const cpu::ModelShape& s = m.shape;
  if (!x.dtype().is(np_dtype(m.dtype))) type_error("x: expected dtype " + std::string(py::str(np_dtype(m.dtype))));
  if (x.ndim() != 3) value_error("x: expected 3 dimensions");
  if (x.shape(2) != s.input_size) value_error("x: expected input size " + std::to_string(s.input_size));
  if (x.shape(2) > 1 && x.strides(2) != x.itemsize()) value_error("x: the last axis must be contiguous");
  const int ta = batch_first ? 1 : 0, ba = batch_first ? 0 : 1;
  if (x.shape(ta) > INT32_MAX || x.shape(ba) > INT32_MAX) value_error("x: T and B must be < 2^31");
  ForwardIo io;
  cpu::ForwardArgs& a = io.a;
  a.model = &m;
  a.T = static_cast<int>(x.shape(ta));
  a.B = static_cast<int>(x.shape(ba));
  a.x = x.data();
  a.x_st = elem_stride(x, ta, "x");
  a.x_sb = elem_stride(x, ba, "x");
  const py::ssize_t D = s.directions(), L = s.num_layers, Hout = s.out_size(), H = s.hidden_size;
  if (!h0.is_none()) a.h0 = checked(h0, "h0", m.dtype, {D * L, a.B, Hout});
  if (!c0.is_none()) a.c0 = checked(c0, "c0", m.dtype, {D * L, a.B, H});
  if (!lengths.is_none()) {
    if (!py::isinstance<py::array_t<std::int64_t>>(lengths)) type_error("lengths: expected an int64 array");
    a.lengths = static_cast<const std::int64_t*>(checked_int64(lengths, a.B));
  }
  std::vector<py::ssize_t> yshape = batch_first ? std::vector<py::ssize_t>{a.B, a.T, D * Hout}
                                                : std::vector<py::ssize_t>{a.T, a.B, D * Hout};
  io.y = py::array(np_dtype(m.dtype), yshape);
  io.h_n = py::array(np_dtype(m.dtype), std::vector<py::ssize_t>{D * L, a.B, Hout});
  io.c_n = py::array(np_dtype(m.dtype), std::vector<py::ssize_t>{D * L, a.B, H});
  a.y = io.y.mutable_data();
  a.y_st = elem_stride(io.y, ta, "y");
  a.y_sb = elem_stride(io.y, ba, "y");
  a.h_n = io.h_n.mutable_data();
  a.c_n = io.c_n.mutable_data();
  a.num_threads = num_threads > 0 ? num_threads : cpu::default_num_threads();
  return io;
}

// x: [T, B, I] or, with batch_first, [B, T, I] (last axis contiguous). Returns (y, h_n, c_n) with y in x's
// layout. h0/c0: C-contiguous [D*L, B, Hout] / [D*L, B, H] or None. lengths: int64 [B] or None.
py::tuple forward(const Packed& packed, const py::array& x, const py::object& h0, const py::object& c0,
                  const py::object& lengths, bool batch_first, int num_threads) {
  ForwardIo io = forward_io(packed, x, h0, c0, lengths, batch_first, num_threads);
  {
    py::gil_scoped_release release;
    cpu::forward(io.a);
  }
  return py::make_tuple(io.y, io.h_n, io.c_n);
}

// The dropout masks of a training call: None, or L-1 arrays [T, B, D*Hout] (C-contiguous, the model's dtype).
std::vector<const void*> mask_pointers(const cpu::PackedModel& m, const py::object& masks, int T, int B) {
  const int L = m.shape.num_layers;
  std::vector<const void*> out(std::max(L - 1, 1), nullptr);
  if (masks.is_none()) return out;
  py::list lst = masks.cast<py::list>();
  if (static_cast<int>(lst.size()) != L - 1) value_error("masks: expected num_layers - 1 arrays");
  const py::ssize_t width = static_cast<py::ssize_t>(m.shape.directions()) * m.shape.out_size();
  for (int k = 0; k < L - 1; ++k) out[k] = checked(lst[k], "masks[" + std::to_string(k) + "]", m.dtype, {T, B, width});
  return out;
}

py::tuple forward_train(const Packed& packed, const py::array& x, const py::object& h0, const py::object& c0,
                        const py::object& lengths, bool batch_first, const py::object& masks, int num_threads) {
  if (!packed.model->training) value_error("packed: not packed for training");
  ForwardIo io = forward_io(packed, x, h0, c0, lengths, batch_first, num_threads);
  const std::vector<const void*> mp = mask_pointers(*packed.model, masks, io.a.T, io.a.B);
  std::shared_ptr<cpu::TrainState> state;
  {
    py::gil_scoped_release release;
    state = cpu::forward_train(io.a, mp.data());
  }
  return py::make_tuple(io.y, io.h_n, io.c_n, Saved{state});
}

// dy in y's layout (batch_first as the forward); returns (dx, dh0, dc0, grads: list of dicts per layer-direction).
py::tuple backward(const Packed& packed, const Saved& saved, const py::array& dy, const py::object& dh_n,
                   const py::object& dc_n, bool batch_first, const py::object& masks, int num_threads) {
  const cpu::PackedModel& m = *packed.model;
  const cpu::TrainState& st = *saved.state;
  if (!m.training) value_error("packed: not packed for training");
  if (m.isa != st.isa || m.dtype != st.dtype) value_error("packed: packed for another isa or dtype than the state");
  const cpu::ModelShape& s = st.shape;
  const py::ssize_t D = s.directions(), L = s.num_layers, Hout = s.out_size(), H = s.hidden_size, P = s.proj_size;
  const py::ssize_t T = st.T, B = st.B;
  const int ta = batch_first ? 1 : 0, ba = batch_first ? 0 : 1;
  std::vector<py::ssize_t> yshape = batch_first ? std::vector<py::ssize_t>{B, T, D * Hout}
                                                : std::vector<py::ssize_t>{T, B, D * Hout};
  cpu::BackwardArgs a;
  a.model = &m;
  a.state = &st;
  a.dy = checked(dy, "dy", m.dtype, yshape);
  a.dy_st = elem_stride(dy, ta, "dy");
  a.dy_sb = elem_stride(dy, ba, "dy");
  if (!dh_n.is_none()) a.dh_n = checked(dh_n, "dh_n", m.dtype, {D * L, B, Hout});
  if (!dc_n.is_none()) a.dc_n = checked(dc_n, "dc_n", m.dtype, {D * L, B, H});
  std::vector<py::ssize_t> xshape = batch_first ? std::vector<py::ssize_t>{B, T, s.input_size}
                                                : std::vector<py::ssize_t>{T, B, s.input_size};
  py::array dx(np_dtype(m.dtype), xshape);
  py::array dh0(np_dtype(m.dtype), std::vector<py::ssize_t>{D * L, B, Hout});
  py::array dc0(np_dtype(m.dtype), std::vector<py::ssize_t>{D * L, B, H});
  a.dx = dx.mutable_data();
  a.dx_st = elem_stride(dx, ta, "dx");
  a.dx_sb = elem_stride(dx, ba, "dx");
  a.dh0 = dh0.mutable_data();
  a.dc0 = dc0.mutable_data();
  const std::vector<const void*> mp = mask_pointers(m, masks, static_cast<int>(T), static_cast<int>(B));
  a.masks = mp.data();
  py::list grads;
  std::vector<cpu::GradPointers> gp(static_cast<std::size_t>(L * D));
  const py::dtype dt = np_dtype(m.dtype);
  auto make = [&](py::dict& d, const char* name, std::vector<py::ssize_t> shape) {
    py::array arr(dt, shape);
    d[name] = arr;
    return arr.mutable_data();
  };
  for (py::ssize_t k = 0; k < L; ++k) {
    for (py::ssize_t d = 0; d < D; ++d) {
      py::dict g;
      cpu::GradPointers& p = gp[k * D + d];
      p.w_ih = make(g, "w_ih", {4 * H, s.layer_input(static_cast<int>(k))});
      p.w_hh = make(g, "w_hh", {4 * H, Hout});
      if (s.bias) {
        p.b_ih = make(g, "b_ih", {4 * H});
        p.b_hh = make(g, "b_hh", {4 * H});
      }
      if (P > 0) p.w_hr = make(g, "w_hr", {P, H});
      if (s.peephole) {
        p.p_i = make(g, "p_i", {H});
        p.p_f = make(g, "p_f", {H});
        p.p_o = make(g, "p_o", {H});
      }
      grads.append(g);
    }
  }
  a.grads = gp.data();
  a.num_threads = num_threads > 0 ? num_threads : cpu::default_num_threads();
  {
    py::gil_scoped_release release;
    cpu::backward(a);
  }
  return py::make_tuple(dx, dh0, dc0, grads);
}

py::array activation(const py::array& x, const std::string& which, const std::string& isa) {
  cpu::DType dt;
  if (x.dtype().is(py::dtype::of<float>())) dt = cpu::DType::kF32;
  else if (x.dtype().is(py::dtype::of<double>())) dt = cpu::DType::kF64;
  else type_error("x: expected float32 or float64");
  if (x.ndim() != 1 || !(x.flags() & py::array::c_style)) value_error("x: expected a contiguous 1-D array");
  if (which != "sigmoid" && which != "tanh") value_error("which: expected 'sigmoid' or 'tanh'");
  py::array out(x.dtype(), std::vector<py::ssize_t>{x.shape(0)});
  cpu::activation(isa_of(isa), dt, which == "tanh", x.data(), out.mutable_data(), static_cast<std::size_t>(x.shape(0)));
  return out;
}

py::dict cpu_info() {
  py::dict d;
  py::list built, supported;
  for (int i = 0; i < cpu::kNumIsas; ++i) {
    const auto isa = static_cast<cpu::Isa>(i);
    if (cpu::isa_built(isa)) built.append(cpu::isa_name(isa));
    if (cpu::isa_supported(isa)) supported.append(cpu::isa_name(isa));
  }
  d["built_isas"] = built;
  d["supported_isas"] = supported;
  d["best_isa"] = cpu::isa_name(cpu::isa_best());
  return d;
}

#if defined(FASTLSTM_HAVE_CUDA)
py::tuple cuda_cell_forward(const py::array& z, const py::array& c_prev, const py::object& p_i,
                            const py::object& p_f, const py::object& p_o) {
  if (z.ndim() != 2 || z.shape(1) % 4 != 0) value_error("z: expected shape (B, 4H)");
  const py::ssize_t B = z.shape(0), H = z.shape(1) / 4;
  if (B < 1 || H < 1 || B > INT32_MAX || H > INT32_MAX) value_error("z: expected 1 <= B, H < 2^31");
  const float* zp = static_cast<const float*>(checked(z, "z", cpu::DType::kF32, {B, 4 * H}));
  const float* cp = static_cast<const float*>(checked(c_prev, "c_prev", cpu::DType::kF32, {B, H}));
  const bool peep = !p_i.is_none();
  if (peep == p_f.is_none() || peep == p_o.is_none()) value_error("p_i, p_f, p_o: give all three peepholes or none");
  const float *pi = nullptr, *pf = nullptr, *po = nullptr;
  if (peep) {
    pi = static_cast<const float*>(checked(p_i, "p_i", cpu::DType::kF32, {H}));
    pf = static_cast<const float*>(checked(p_f, "p_f", cpu::DType::kF32, {H}));
    po = static_cast<const float*>(checked(p_o, "p_o", cpu::DType::kF32, {H}));
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

py::list cuda_devices() {
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
#endif

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastlstm's compiled engines (private: use the fastlstm package)";
#if defined(FASTLSTM_HAVE_CUDA)
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
  m.def("cuda_devices", &cuda_devices, "The visible CUDA devices (empty without a driver or GPU).");
  m.def("cuda_cell_forward", &cuda_cell_forward, py::arg("z"), py::arg("c_prev"), py::arg("p_i") = py::none(),
        py::arg("p_f") = py::none(), py::arg("p_o") = py::none(),
        "One fused LSTM cell update on the GPU: z [B,4H] (i,f,g,o), c_prev [B,H] -> (h [B,H], c [B,H]).");
#else
  m.attr("cuda_built") = false;
#endif
  py::class_<Packed>(m, "Packed", "Weights packed for one kernel family and dtype (immutable).")
      .def_property_readonly("isa", [](const Packed& p) { return std::string(cpu::isa_name(p.model->isa)); })
      .def_property_readonly("nbytes", [](const Packed& p) { return p.model->packed_bytes; })
      .def_property_readonly("units", [](const Packed& p) { return p.model->units; });
  py::class_<Saved>(m, "Saved", "What a training forward kept for backward (immutable).")
      .def_property_readonly("nbytes", [](const Saved& s) { return s.state->data.size(); })
      .def_property_readonly("isa", [](const Saved& s) { return std::string(cpu::isa_name(s.state->isa)); });
  m.def("pack", &pack, py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"), py::arg("proj_size"),
        py::arg("bidirectional"), py::arg("bias"), py::arg("peephole"), py::arg("dtype"), py::arg("isa"),
        py::arg("layers"), py::arg("training") = false);
  m.def("forward_train", &forward_train, py::arg("packed"), py::arg("x"), py::arg("h0"), py::arg("c0"),
        py::arg("lengths"), py::arg("batch_first"), py::arg("masks"), py::arg("num_threads") = 0);
  m.def("backward", &backward, py::arg("packed"), py::arg("saved"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"),
        py::arg("batch_first"), py::arg("masks"), py::arg("num_threads") = 0);
  m.def("forward", &forward, py::arg("packed"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("lengths"),
        py::arg("batch_first"), py::arg("num_threads") = 0);
  m.def("activation", &activation, py::arg("x"), py::arg("which"), py::arg("isa"));
  m.def("cpu_info", &cpu_info);
  m.def("fma_peak_gflops", [](const std::string& isa, int threads, double seconds) {
    const cpu::Isa which = isa_of(isa);
    py::gil_scoped_release release;
    return cpu::fma_peak_gflops(which, threads, seconds);
  }, py::arg("isa"), py::arg("threads"), py::arg("seconds") = 0.2,
     "Measured float32 FMA throughput (GFLOP/s) of a kernel family on `threads` threads.");
  m.def("read_bandwidth_gbs", [](const std::string& isa, int threads, std::size_t bytes_per_thread, double seconds) {
    const cpu::Isa which = isa_of(isa);
    py::gil_scoped_release release;
    return cpu::read_bandwidth_gbs(which, threads, bytes_per_thread, seconds);
  }, py::arg("isa"), py::arg("threads"), py::arg("bytes_per_thread"), py::arg("seconds") = 0.2,
     "Measured read bandwidth (GB/s, all threads) of vector loads sweeping bytes_per_thread on each thread.");
  m.def("step_exchange_us", [](int threads, std::size_t bytes, int steps) {
    py::gil_scoped_release release;
    return cpu::step_exchange_us(threads, bytes, steps);
  }, py::arg("threads"), py::arg("bytes"), py::arg("steps") = 20000,
     "Measured microseconds of one step's exchange of a bytes-long state across threads (write share, barrier, read all).");
  m.def("get_num_threads", &cpu::default_num_threads);
  m.def("set_num_threads", &cpu::set_default_num_threads, py::arg("n"));
}

