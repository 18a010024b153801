// DLPack import and export (dlpack.h).
#include "bindings/dlpack.h"

#include <Python.h>
#include <pybind11/stl.h>

#include <memory>

#include "bindings/arrays.h"

namespace fastlstm::bindings::dlpack {
namespace {

constexpr const char* kName = "dltensor";
constexpr const char* kUsed = "used_dltensor";

DLManagedTensor* peek(const py::handle& obj, const std::string& name) {
  if (!PyCapsule_IsValid(obj.ptr(), kName)) {
    if (PyCapsule_IsValid(obj.ptr(), kUsed)) type_error(name + ": this DLPack capsule was already consumed");
    type_error(name + ": expected a DLPack capsule (the array's __dlpack__())");
  }
  return static_cast<DLManagedTensor*>(PyCapsule_GetPointer(obj.ptr(), kName));
}

std::vector<std::int64_t> compact_strides(const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> s(shape.size());
  std::int64_t step = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    s[i] = step;
    step *= shape[i];
  }
  return s;
}

std::vector<std::int64_t> shape_of(const DLTensor& t) { return {t.shape, t.shape + t.ndim}; }

std::vector<std::int64_t> strides_of(const DLTensor& t) {
  if (t.strides == nullptr) return compact_strides(shape_of(t));
  return {t.strides, t.strides + t.ndim};
}

// What export_f32's capsules own: the tensor, its shape and strides, and how to free the memory.
struct Export {
  DLManagedTensor managed{};
  std::vector<std::int64_t> shape, strides;
  void (*release)(void*, int) = nullptr;
  int arg = 0;
};

void delete_export(DLManagedTensor* m) {
  std::unique_ptr<Export> e(static_cast<Export*>(m->manager_ctx));
  e->release(e->managed.dl_tensor.data, e->arg);
}

// The capsule's destructor: frees the tensor only when no consumer took it (a consumer renames the capsule
// and calls the deleter itself).
void capsule_destructor(PyObject* cap) {
  if (PyCapsule_IsValid(cap, kName)) {
    auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, kName));
    if (m != nullptr && m->deleter != nullptr) m->deleter(m);
  } else {
    PyErr_Clear();  // IsValid on a renamed capsule sets no error, but stay safe in a destructor
  }
}

}  // namespace

View::View(const py::handle& obj, const std::string& name) : m_(peek(obj, name)) {
  if (PyCapsule_SetName(obj.ptr(), kUsed) != 0) throw py::error_already_set();
}

View::~View() {
  if (m_ != nullptr && m_->deleter != nullptr) m_->deleter(m_);
}

std::vector<std::int64_t> View::shape() const { return shape_of(m_->dl_tensor); }
std::vector<std::int64_t> View::strides() const { return strides_of(m_->dl_tensor); }

bool View::compact() const {
  const std::vector<std::int64_t> sh = shape(), st = strides(), want = compact_strides(sh);
  for (std::size_t i = 0; i < sh.size(); ++i) {
    if (sh[i] > 1 && st[i] != want[i]) return false;
  }
  return true;
}

py::capsule export_f32(void* data, DLDevice device, const std::vector<std::int64_t>& shape,
                       void (*release)(void* data, int arg), int arg) {
  auto e = std::make_unique<Export>();
  e->shape = shape;
  e->strides = compact_strides(shape);
  e->release = release;
  e->arg = arg;
  DLTensor& t = e->managed.dl_tensor;
  t.data = data;
  t.device = device;
  t.ndim = static_cast<std::int32_t>(shape.size());
  t.dtype = DLDataType{kDLFloat, 32, 1};
  t.shape = e->shape.data();
  t.strides = e->strides.data();
  t.byte_offset = 0;
  e->managed.manager_ctx = e.get();
  e->managed.deleter = delete_export;
  PyObject* cap = PyCapsule_New(&e->managed, kName, capsule_destructor);
  if (cap == nullptr) {
    release(data, arg);
    throw py::error_already_set();
  }
  e.release();  // the capsule owns it now
  return py::reinterpret_steal<py::capsule>(cap);
}

py::dict describe(const py::handle& obj) {
  const DLTensor& t = peek(obj, "capsule")->dl_tensor;
  py::dict d;
  d["device"] = py::make_tuple(t.device.device_type, t.device.device_id);
  d["dtype"] = py::make_tuple(t.dtype.code, t.dtype.bits, t.dtype.lanes);
  d["shape"] = py::cast(shape_of(t));
  d["strides"] = py::cast(strides_of(t));
  d["byte_offset"] = t.byte_offset;
  d["first"] = reinterpret_cast<std::uintptr_t>(static_cast<const char*>(t.data) + t.byte_offset);  // what View reads
  return d;
}

}  // namespace fastlstm::bindings::dlpack

namespace fastlstm::bindings {

void bind_dlpack(py::module_& m) {
  m.def("dlpack_describe", &dlpack::describe, py::arg("capsule"),
        "What a DLPack capsule holds, without consuming it (device, dtype, shape, strides, byte_offset).");
}

}  // namespace fastlstm::bindings
