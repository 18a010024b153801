// The CUDA library's bindings: device queries and the fused cell kernel (until the sequence engine plugs
// into the seam). Without a CUDA build, only cuda_built = False.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/arrays.h"
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
}
#else
void bind_cuda(py::module_& m) { m.attr("cuda_built") = false; }
#endif

}  // namespace fastlstm::bindings
