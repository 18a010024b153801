// The CUDA library's bindings: device queries, the fused cell kernel, and the sequence engine on the seam
// (cuda_engine -> the Engine class of cpu.cpp; cuda_forward: numpy arrays staged through device memory).
// Without a CUDA build, only cuda_built = False.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/dlpack.h"
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

// Device memory of one output until a capsule takes it over.
struct Output {
  void* p = nullptr;
  int index = 0;
  std::vector<std::int64_t> shape;
  Output(std::vector<std::int64_t> s, int i) : index(i), shape(std::move(s)) {
    std::size_t n = sizeof(float);
    for (std::int64_t d : shape) n *= static_cast<std::size_t>(d);
    p = cuda::device_alloc(n, index);
  }
  ~Output() { cuda::device_free(p, index); }
  Output(const Output&) = delete;
  Output& operator=(const Output&) = delete;
  py::capsule hand_over() {
    void* q = p;
    p = nullptr;  // export_f32 owns it from here on, also when it throws
    return dlpack::export_f32(
        q, {dlpack::kDLCUDA, index}, shape, [](void* d, int i) { cuda::device_free(d, i); }, index);
  }
};

// A consumed device array of the call: float32 on cuda:index (TypeError / ValueError naming it otherwise).
std::unique_ptr<dlpack::View> device_view(const py::object& obj, const std::string& name, int index) {
  auto v = std::make_unique<dlpack::View>(obj, name);
  const dlpack::DLTensor& t = v->tensor();
  if (t.device.device_type != dlpack::kDLCUDA || t.device.device_id != index)
    value_error(name + ": expected an array on cuda:" + std::to_string(index) + " (DLPack device type " +
                std::to_string(t.device.device_type) + ", id " + std::to_string(t.device.device_id) + ")");
  if (t.dtype.code != dlpack::kDLFloat || t.dtype.bits != 32 || t.dtype.lanes != 1)
    type_error(name + ": expected float32");
  return v;
}

// DLPack capsules of device arrays in (x strided with a contiguous last axis; h0, c0 C-contiguous or None;
// lengths a host int64 array or None) -> capsules of new device arrays (y, h_n, c_n), complete when returned
// (the call waits for its kernels, so any stream of the consumer may read them).
py::tuple forward_dlpack(const PyEngine& e, const PyWeights& w, int index, const py::object& x, const py::object& h0,
                         const py::object& c0, const py::object& lengths, bool batch_first) {
  const ModelShape& s = w.weights->shape;
  const auto xv = device_view(x, "x", index);
  const std::vector<std::int64_t> sh = xv->shape(), st = xv->strides();
  if (sh.size() != 3) value_error("x: expected 3 dimensions");
  if (sh[2] != s.input_size) value_error("x: expected input size " + std::to_string(s.input_size));
  if (sh[2] > 1 && st[2] != 1) value_error("x: the last axis must be contiguous");
  const int ta = batch_first ? 1 : 0, ba = batch_first ? 0 : 1;
  if (sh[ta] < 1 || sh[ba] < 1 || sh[ta] > INT32_MAX || sh[ba] > INT32_MAX) value_error("x: expected 1 <= T, B < 2^31");
  ForwardArgs a;
  a.weights = w.weights.get();
  a.T = static_cast<int>(sh[ta]);
  a.B = static_cast<int>(sh[ba]);
  a.x = xv->data();
  a.x_st = sh[ta] > 1 ? st[ta] : 0;
  a.x_sb = sh[ba] > 1 ? st[ba] : 0;
  const std::int64_t DL = static_cast<std::int64_t>(s.num_layers) * s.directions(), R = s.out_size();
  std::unique_ptr<dlpack::View> hv, cv;
  const auto state = [&](const py::object& obj, const std::string& name, std::int64_t width) {
    auto v = device_view(obj, name, index);
    if (v->shape() != std::vector<std::int64_t>{DL, a.B, width} || !v->compact())
      value_error(name + ": expected a C-contiguous array of shape (" + std::to_string(DL) + ", " +
                  std::to_string(a.B) + ", " + std::to_string(width) + ")");
    return v;
  };
  if (!h0.is_none()) {
    hv = state(h0, "hx[0] (h0)", R);
    a.h0 = hv->data();
  }
  if (!c0.is_none()) {
    cv = state(c0, "hx[1] (c0)", s.hidden_size);
    a.c0 = cv->data();
  }
  if (!lengths.is_none()) a.lengths = checked_int64(lengths, "lengths", a.B);
  const std::int64_t W = static_cast<std::int64_t>(s.directions()) * R, T = a.T, B = a.B;
  Output y(batch_first ? std::vector<std::int64_t>{B, T, W} : std::vector<std::int64_t>{T, B, W}, index);
  Output hn({DL, B, R}, index), cn({DL, B, s.hidden_size}, index);
  a.y = y.p;
  a.y_st = batch_first ? W : B * W;
  a.y_sb = batch_first ? T * W : W;
  a.h_n = hn.p;
  a.c_n = cn.p;
  {
    py::gil_scoped_release release;
    e.engine->forward(a);
    cuda::synchronize(index, nullptr);
  }
  return py::make_tuple(y.hand_over(), hn.hand_over(), cn.hand_over());
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
  m.def("cuda_forward_dlpack", &forward_dlpack, py::arg("engine"), py::arg("weights"), py::arg("index"), py::arg("x"),
        py::arg("h0"), py::arg("c0"), py::arg("lengths"), py::arg("batch_first"),
        "A CUDA engine's forward on DLPack capsules of device arrays: -> capsules of new device arrays.");
}
#else
void bind_cuda(py::module_& m) { m.attr("cuda_built") = false; }
#endif

}  // namespace fastlstm::bindings
