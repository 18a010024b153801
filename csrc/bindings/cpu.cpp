// The engine seam's bindings: an Engine object per key, and its calls on numpy arrays. Every shape, dtype
// and layout a raw pointer depends on is checked here; the engine checks the values (lengths). The GIL is
// released while an engine runs. No math here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/engine.h"
#include "bindings/module.h"
#include "fastlstm/cpu.h"

namespace fastlstm::bindings {
namespace {

// A caller's buffer for a saved state: a writable, C-contiguous uint8 numpy array (64-byte aligned: the engine
// checks). -> (pointer, bytes).
std::pair<void*, std::size_t> saved_buffer(const py::object& obj) {
  if (!py::isinstance<py::array_t<std::uint8_t>>(obj)) type_error("saved: expected a uint8 numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!(a.flags() & py::array::c_style) || !a.writeable())
    value_error("saved: expected a writable, C-contiguous array");
  return {a.mutable_data(), static_cast<std::size_t>(a.nbytes())};
}

cpu::Isa isa_of(const std::string& name) {
  cpu::Isa isa;
  if (!cpu::isa_from_name(name.c_str(), &isa)) value_error("isa: expected scalar, avx2 or avx512, got '" + name + "'");
  return isa;
}

}  // namespace

DType dtype_of(const std::string& name) {
  DType t;
  if (!dtype_from_name(name.c_str(), &t) || (t != DType::kF32 && t != DType::kF64))
    value_error("dtype: expected 'float32' or 'float64', got '" + name + "'");
  return t;
}

// The dropout masks of a training call: None, or L-1 arrays [T, B, D*Hout] (C-contiguous, the engine's dtype).
std::vector<const void*> mask_pointers(const ModelShape& s, DType dt, const py::object& masks, int T, int B) {
  const int L = s.num_layers;
  std::vector<const void*> out(std::max(L - 1, 1), nullptr);
  if (masks.is_none()) return out;
  py::list lst = masks.cast<py::list>();
  if (static_cast<int>(lst.size()) != L - 1) value_error("masks: expected num_layers - 1 arrays");
  const py::ssize_t width = static_cast<py::ssize_t>(s.directions()) * s.out_size();
  for (int k = 0; k < L - 1; ++k) out[k] = checked(lst[k], "masks[" + std::to_string(k) + "]", dt, {T, B, width});
  return out;
}

BackwardIo backward_io(const PyEngine& e, const PyWeights& w, const PySaved& saved, const py::array& dy,
                       const py::object& dh_n, const py::object& dc_n, bool batch_first, const py::object& masks) {
  const SavedState& st = *saved.state;
  const ModelShape& s = st.shape;
  const DType dt = e.engine->key().dtype;
  const py::ssize_t D = s.directions(), L = s.num_layers, Hout = s.out_size(), H = s.hidden_size;
  const py::ssize_t T = st.T, B = st.B;
  const int ta = batch_first ? 1 : 0, ba = batch_first ? 0 : 1;
  const std::vector<py::ssize_t> yshape =
      batch_first ? std::vector<py::ssize_t>{B, T, D * Hout} : std::vector<py::ssize_t>{T, B, D * Hout};
  BackwardIo io;
  BackwardArgs& a = io.a;
  a.weights = w.weights.get();
  a.state = &st;
  a.dy = checked(dy, "dy", dt, yshape);
  a.dy_st = elem_stride(dy, ta, "dy");
  a.dy_sb = elem_stride(dy, ba, "dy");
  if (!dh_n.is_none()) a.dh_n = checked(dh_n, "dh_n", dt, {D * L, B, Hout});
  if (!dc_n.is_none()) a.dc_n = checked(dc_n, "dc_n", dt, {D * L, B, H});
  const std::vector<py::ssize_t> xshape =
      batch_first ? std::vector<py::ssize_t>{B, T, s.input_size} : std::vector<py::ssize_t>{T, B, s.input_size};
  io.dx = new_array(dt, xshape);
  io.dh0 = new_array(dt, {D * L, B, Hout});
  io.dc0 = new_array(dt, {D * L, B, H});
  a.dx = io.dx.mutable_data();
  a.dx_st = elem_stride(io.dx, ta, "dx");
  a.dx_sb = elem_stride(io.dx, ba, "dx");
  a.dh0 = io.dh0.mutable_data();
  a.dc0 = io.dc0.mutable_data();
  io.masks = mask_pointers(s, dt, masks, static_cast<int>(T), static_cast<int>(B));
  a.masks = io.masks.data();
  io.gp = grad_outputs(s, io.grads, [&](py::dict& d, const char* name, std::vector<py::ssize_t> shape) {
    py::array arr = new_array(dt, shape);
    d[name] = arr;
    return arr.mutable_data();
  });
  a.grads = io.gp.data();
  return io;
}

namespace {

PyEngine cpu_engine(const std::string& isa, const std::string& dtype, const std::string& precision,
                    const std::string& cell) {
  EngineKey key;
  key.dtype = dtype_of(dtype);
  if (!precision_from_name(precision.c_str(), &key.precision))
    value_error("precision: expected None, 'fp32', 'bf16', 'int8', 'tf32' or 'fp16', got '" + precision + "'");
  if (!cell_from_name(cell.c_str(), &key.cell)) value_error("cell: expected 'lstm', got '" + cell + "'");
  return PyEngine{cpu::make_engine(isa_of(isa), key)};
}

ModelShape make_shape(int input_size, int hidden_size, int num_layers, int proj_size, bool bidirectional, bool bias,
                      bool peephole) {
  if (input_size < 1 || hidden_size < 1 || num_layers < 1 || proj_size < 0 || proj_size >= hidden_size)
    value_error("shape: expected input_size, hidden_size, num_layers >= 1 and 0 <= proj_size < hidden_size");
  ModelShape s;
  s.input_size = input_size;
  s.hidden_size = hidden_size;
  s.num_layers = num_layers;
  s.proj_size = proj_size;
  s.bidirectional = bidirectional;
  s.bias = bias;
  s.peephole = peephole;
  return s;
}

PyWeights pack(const PyEngine& e, const ModelShape& s, const py::list& layers, bool training) {
  const int num_layers = s.num_layers, hidden_size = s.hidden_size, proj_size = s.proj_size;
  const bool bias = s.bias, peephole = s.peephole;
  const DType dt = e.engine->key().dtype;
  const int D = s.directions();
  if (static_cast<int>(layers.size()) != num_layers * D) value_error("layers: expected num_layers * D entries");
  const py::ssize_t H = hidden_size, G = 4 * H, P = proj_size;
  std::vector<RawLayer> raw(layers.size());
  for (int k = 0; k < num_layers; ++k) {
    for (int d = 0; d < D; ++d) {
      py::dict p = layers[k * D + d].cast<py::dict>();
      const std::string tag = "layers[" + std::to_string(k * D + d) + "].";
      RawLayer& r = raw[k * D + d];
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
  py::gil_scoped_release release;
  return PyWeights{e.engine->pack(s, raw.data(), training)};
}

}  // namespace

ForwardIo forward_io(const PyEngine& e, const PyWeights& w, const py::array& x, const py::object& h0,
                     const py::object& c0, const py::object& lengths, bool batch_first, int num_threads) {
  const ModelShape& s = w.weights->shape;
  const DType dt = e.engine->key().dtype;
  if (!x.dtype().is(np_dtype(dt))) type_error("x: expected dtype " + std::string(py::str(np_dtype(dt))));
  if (x.ndim() != 3) value_error("x: expected 3 dimensions");
  if (x.shape(2) != s.input_size) value_error("x: expected input size " + std::to_string(s.input_size));
  if (x.shape(2) > 1 && x.strides(2) != x.itemsize()) value_error("x: the last axis must be contiguous");
  const int ta = batch_first ? 1 : 0, ba = batch_first ? 0 : 1;
  if (x.shape(ta) > INT32_MAX || x.shape(ba) > INT32_MAX) value_error("x: T and B must be < 2^31");
  ForwardIo io;
  ForwardArgs& a = io.a;
  a.weights = w.weights.get();
  a.T = static_cast<int>(x.shape(ta));
  a.B = static_cast<int>(x.shape(ba));
  a.x = x.data();
  a.x_st = elem_stride(x, ta, "x");
  a.x_sb = elem_stride(x, ba, "x");
  const py::ssize_t D = s.directions(), L = s.num_layers, Hout = s.out_size(), H = s.hidden_size;
  if (!h0.is_none()) a.h0 = checked(h0, "h0", dt, {D * L, a.B, Hout});
  if (!c0.is_none()) a.c0 = checked(c0, "c0", dt, {D * L, a.B, H});
  if (!lengths.is_none()) a.lengths = checked_int64(lengths, "lengths", a.B);
  const std::vector<py::ssize_t> yshape =
      batch_first ? std::vector<py::ssize_t>{a.B, a.T, D * Hout} : std::vector<py::ssize_t>{a.T, a.B, D * Hout};
  io.y = new_array(dt, yshape);
  io.h_n = new_array(dt, {D * L, a.B, Hout});
  io.c_n = new_array(dt, {D * L, a.B, H});
  a.y = io.y.mutable_data();
  a.y_st = elem_stride(io.y, ta, "y");
  a.y_sb = elem_stride(io.y, ba, "y");
  a.h_n = io.h_n.mutable_data();
  a.c_n = io.c_n.mutable_data();
  a.num_threads = num_threads > 0 ? num_threads : cpu::default_num_threads();
  return io;
}

namespace {

py::tuple forward(const PyEngine& e, const PyWeights& w, const py::array& x, const py::object& h0, const py::object& c0,
                  const py::object& lengths, bool batch_first, int num_threads) {
  ForwardIo io = forward_io(e, w, x, h0, c0, lengths, batch_first, num_threads);
  {
    py::gil_scoped_release release;
    e.engine->forward(io.a);
  }
  return py::make_tuple(io.y, io.h_n, io.c_n);
}

py::tuple forward_train(const PyEngine& e, const PyWeights& w, const py::array& x, const py::object& h0,
                        const py::object& c0, const py::object& lengths, bool batch_first, const py::object& masks,
                        const py::object& saved, int num_threads) {
  ForwardIo io = forward_io(e, w, x, h0, c0, lengths, batch_first, num_threads);
  const std::vector<const void*> mp = mask_pointers(w.weights->shape, e.engine->key().dtype, masks, io.a.T, io.a.B);
  std::pair<void*, std::size_t> buf{nullptr, 0};
  if (!saved.is_none()) buf = saved_buffer(saved);
  std::shared_ptr<const SavedState> state;
  {
    py::gil_scoped_release release;
    state = e.engine->forward_train(io.a, mp.data(), buf.first, buf.second);
  }
  return py::make_tuple(io.y, io.h_n, io.c_n, PySaved{state, saved});
}

PySaved saved_view(const PyEngine& e, const PyWeights& w, const py::object& saved, int T, int B,
                   const py::object& lengths) {
  const auto buf = saved_buffer(saved);
  const std::int64_t* lens = lengths.is_none() ? nullptr : checked_int64(lengths, "lengths", B);
  return PySaved{e.engine->saved_view(*w.weights, T, B, lens, buf.first, buf.second), saved};
}

// dy in y's layout (batch_first as the forward); -> (dx, dh0, dc0, grads: a dict per layer and direction).
py::tuple backward(const PyEngine& e, const PyWeights& w, const PySaved& saved, const py::array& dy,
                   const py::object& dh_n, const py::object& dc_n, bool batch_first, const py::object& masks,
                   int num_threads) {
  BackwardIo io = backward_io(e, w, saved, dy, dh_n, dc_n, batch_first, masks);
  io.a.num_threads = num_threads > 0 ? num_threads : cpu::default_num_threads();
  {
    py::gil_scoped_release release;
    e.engine->backward(io.a);
  }
  return py::make_tuple(io.dx, io.dh0, io.dc0, io.grads);
}

py::dict sizes(const PyEngine& e, const ModelShape& shape, int T, int B, bool train) {
  if (T < 1 || B < 1) value_error("T, B: expected >= 1");
  const CallSizes c = e.engine->sizes(shape, T, B, train);
  py::dict d;
  d["outputs"] = c.outputs;
  d["workspace"] = c.workspace;
  d["saved"] = c.saved;
  return d;
}

py::array activation(const py::array& x, const std::string& which, const std::string& isa) {
  DType dt;
  if (x.dtype().is(py::dtype::of<float>()))
    dt = DType::kF32;
  else if (x.dtype().is(py::dtype::of<double>()))
    dt = DType::kF64;
  else
    type_error("x: expected float32 or float64");
  if (x.ndim() != 1 || !(x.flags() & py::array::c_style)) value_error("x: expected a contiguous 1-D array");
  if (which != "sigmoid" && which != "tanh") value_error("which: expected 'sigmoid' or 'tanh'");
  py::array out(x.dtype(), std::vector<py::ssize_t>{x.shape(0)});
  cpu::activation(isa_of(isa), dt, which == "tanh", x.data(), out.mutable_data(), static_cast<std::size_t>(x.shape(0)));
  return out;
}

py::dict cpu_info() {
  py::dict d;
  py::list built, supported, features;
  for (int i = 0; i < cpu::kNumIsas; ++i) {
    const auto isa = static_cast<cpu::Isa>(i);
    if (cpu::isa_built(isa)) built.append(cpu::isa_name(isa));
    if (cpu::isa_supported(isa)) supported.append(cpu::isa_name(isa));
  }
  for (auto f : {cpu::CpuFeature::kAvx512Bf16, cpu::CpuFeature::kAvx512Vnni, cpu::CpuFeature::kAvxVnni})
    if (cpu::cpu_has(f)) features.append(cpu::cpu_feature_name(f));
  d["built_isas"] = built;
  d["supported_isas"] = supported;
  d["best_isa"] = cpu::isa_name(cpu::isa_best());
  d["l2_cache_bytes"] = cpu::l2_cache_bytes();
  d["features"] = features;
  d["families"] = cpu::describe_families();
  return d;
}

}  // namespace

void bind_cpu(py::module_& m) {
  py::class_<PyEngine>(m, "Engine", "An engine for one (dtype, precision, cell) key (immutable).")
      .def_property_readonly("name", [](const PyEngine& e) { return e.engine->name(); })
      .def_property_readonly("trains", [](const PyEngine& e) { return e.engine->trains(); })
      .def_property_readonly("dtype", [](const PyEngine& e) { return std::string(dtype_name(e.engine->key().dtype)); })
      .def_property_readonly("precision",
                             [](const PyEngine& e) { return std::string(precision_name(e.engine->key().precision)); })
      .def("pack", &pack, py::arg("shape"), py::arg("layers"), py::arg("training") = false)
      .def("forward", &forward, py::arg("weights"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("lengths"),
           py::arg("batch_first"), py::arg("num_threads") = 0)
      .def("forward_train", &forward_train, py::arg("weights"), py::arg("x"), py::arg("h0"), py::arg("c0"),
           py::arg("lengths"), py::arg("batch_first"), py::arg("masks"), py::arg("saved") = py::none(),
           py::arg("num_threads") = 0)
      .def("saved_view", &saved_view, py::arg("weights"), py::arg("saved"), py::arg("T"), py::arg("B"),
           py::arg("lengths"), "The state a training forward wrote into `saved`, for backward (same T, B, lengths).")
      .def("backward", &backward, py::arg("weights"), py::arg("saved"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"),
           py::arg("batch_first"), py::arg("masks"), py::arg("num_threads") = 0)
      .def("sizes", &sizes, py::arg("shape"), py::arg("T"), py::arg("B"), py::arg("train"),
           "Bytes a call of T steps on B rows needs at most: outputs, workspace, saved state (training).");
  py::class_<ModelShape>(m, "Shape", "A model's shape and options (immutable).")
      .def(py::init(&make_shape), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"),
           py::arg("proj_size"), py::arg("bidirectional"), py::arg("bias"), py::arg("peephole"));
  py::class_<PyWeights>(m, "Weights", "Weights packed by an engine (immutable).")
      .def_property_readonly("nbytes", [](const PyWeights& w) { return w.weights->nbytes; })
      .def_property_readonly("training", [](const PyWeights& w) { return w.weights->training; });
  py::class_<PySaved>(m, "Saved", "What a training forward kept for backward (immutable).")
      .def_property_readonly("nbytes", [](const PySaved& s) { return s.state->nbytes; });
  m.def("cpu_engine", &cpu_engine, py::arg("isa"), py::arg("dtype"), py::arg("precision") = "default",
        py::arg("cell") = "lstm");
  m.def(
      "precisions",
      [](const std::string& isa, const std::string& dtype) {
        py::list out;
        for (const cpu::PrecisionSupport& p : cpu::precisions(isa_of(isa), dtype_of(dtype)))
          out.append(py::make_tuple(precision_name(p.precision), p.native));
        return out;
      },
      py::arg("isa"), py::arg("dtype"),
      "[(name, native)] of the precisions a family of `isa` runs for `dtype` (native: with its own instructions).");
  m.def("activation", &activation, py::arg("x"), py::arg("which"), py::arg("isa"));
  m.def("cpu_info", &cpu_info);
  m.def(
      "fma_peak_gflops",
      [](const std::string& isa, int threads, double seconds) {
        const cpu::Isa which = isa_of(isa);
        py::gil_scoped_release release;
        return cpu::fma_peak_gflops(which, threads, seconds);
      },
      py::arg("isa"), py::arg("threads"), py::arg("seconds") = 0.2,
      "Measured float32 FMA throughput (GFLOP/s) of an ISA's kernels on `threads` threads.");
  m.def(
      "read_bandwidth_gbs",
      [](const std::string& isa, int threads, std::size_t bytes_per_thread, double seconds) {
        const cpu::Isa which = isa_of(isa);
        py::gil_scoped_release release;
        return cpu::read_bandwidth_gbs(which, threads, bytes_per_thread, seconds);
      },
      py::arg("isa"), py::arg("threads"), py::arg("bytes_per_thread"), py::arg("seconds") = 0.2,
      "Measured read bandwidth (GB/s, all threads) of vector loads sweeping bytes_per_thread on each thread, "
      "in alternating directions (as the recurrence reads W_hh).");
  m.def(
      "step_exchange_us",
      [](int threads, std::size_t bytes, int steps) {
        py::gil_scoped_release release;
        return cpu::step_exchange_us(threads, bytes, steps);
      },
      py::arg("threads"), py::arg("bytes"), py::arg("steps") = 20000,
      "Measured microseconds of one step's exchange of a bytes-long state across threads (write share, barrier, "
      "read all).");
  m.def("get_num_threads", &cpu::default_num_threads);
  m.def("set_num_threads", &cpu::set_default_num_threads, py::arg("n"));
  m.def("l2_cache_bytes", &cpu::l2_cache_bytes, "The L2 size the kernels' cache blocking is sized by.");
  m.def("set_l2_cache_bytes", &cpu::set_l2_cache_bytes, py::arg("bytes"),
        "Overrides the L2 size of the cache blocking (0: the OS's value again); results do not depend on it.");
}

}  // namespace fastlstm::bindings
