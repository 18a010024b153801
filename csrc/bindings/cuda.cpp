// The CUDA library's bindings: device queries, the fused cell kernel, and the sequence engine on the seam
// (cuda_engine -> the Engine class of cpu.cpp; cuda_forward: numpy arrays staged through device memory).
// Without a CUDA build, only cuda_built = False.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <string>

#include "bindings/arrays.h"
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

// One device allocation for a call's staged arrays, freed when the call returns (also on a throw).
class Staging {
 public:
  Staging(std::size_t bytes, int index)
      : index_(index), base_(static_cast<unsigned char*>(cuda::device_alloc(bytes, index))) {}
  ~Staging() { cuda::device_free(base_, index_); }
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;
  unsigned char* at(std::size_t offset) const { return base_ + offset; }

 private:
  int index_;
  unsigned char* base_;
};

// numpy in -> device -> numpy out: forward_io checks the arrays and allocates the outputs on the host (x is
// made C-contiguous first), every array is staged in one device allocation, the engine runs on the legacy
// default stream, and the outputs are copied back (which waits for the kernels).
py::tuple forward(const PyEngine& e, const PyWeights& w, int index, const py::array& x_in, const py::object& h0,
                  const py::object& c0, const py::object& lengths, bool batch_first) {
  const py::array x = py::array::ensure(x_in, py::array::c_style);
  if (!x) type_error("x: expected an array");
  ForwardIo io = forward_io(e, w, x, h0, c0, lengths, batch_first, 1);
  ForwardArgs a = io.a;
  const ModelShape& s = w.weights->shape;
  const std::size_t states = static_cast<std::size_t>(s.num_layers) * s.directions() * a.B * sizeof(float);
  const std::size_t xb = static_cast<std::size_t>(x.nbytes()), h0b = a.h0 != nullptr ? states * s.out_size() : 0,
                    c0b = a.c0 != nullptr ? states * s.hidden_size : 0;
  const std::size_t yb = static_cast<std::size_t>(io.y.nbytes()), hnb = static_cast<std::size_t>(io.h_n.nbytes()),
                    cnb = static_cast<std::size_t>(io.c_n.nbytes());
  std::size_t off[7] = {0};
  const std::size_t bytes[6] = {xb, h0b, c0b, yb, hnb, cnb};
  for (int i = 0; i < 6; ++i) off[i + 1] = off[i] + ((bytes[i] + 255) & ~std::size_t{255});
  {
    py::gil_scoped_release release;
    Staging dev(off[6], index);
    cuda::copy_to_device(dev.at(off[0]), a.x, xb, index, nullptr);
    a.x = dev.at(off[0]);
    if (a.h0 != nullptr) {
      cuda::copy_to_device(dev.at(off[1]), a.h0, h0b, index, nullptr);
      a.h0 = dev.at(off[1]);
    }
    if (a.c0 != nullptr) {
      cuda::copy_to_device(dev.at(off[2]), a.c0, c0b, index, nullptr);
      a.c0 = dev.at(off[2]);
    }
    a.y = dev.at(off[3]);
    a.h_n = dev.at(off[4]);
    a.c_n = dev.at(off[5]);
    e.engine->forward(a);
    cuda::copy_to_host(io.y.mutable_data(), a.y, yb, index, nullptr);
    cuda::copy_to_host(io.h_n.mutable_data(), a.h_n, hnb, index, nullptr);
    cuda::copy_to_host(io.c_n.mutable_data(), a.c_n, cnb, index, nullptr);
  }
  return py::make_tuple(io.y, io.h_n, io.c_n);
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
}
#else
void bind_cuda(py::module_& m) { m.attr("cuda_built") = false; }
#endif

}  // namespace fastlstm::bindings
