// Array conversion for the bindings (arrays.h).
#include "bindings/arrays.h"

#include <memory>

#include "common/memory.h"

namespace fastlstm::bindings {

void type_error(const std::string& msg) { throw py::type_error(msg); }
void value_error(const std::string& msg) { throw py::value_error(msg); }

py::dtype np_dtype(DType t) {
  switch (t) {
    case DType::kF32:
      return py::dtype::of<float>();
    case DType::kF64:
      return py::dtype::of<double>();
    default:
      value_error(std::string("dtype: ") + dtype_name(t) + " has no numpy array form here");
  }
}

py::array new_array(DType t, const std::vector<py::ssize_t>& shape) {
  const py::dtype dt = np_dtype(t);
  std::size_t bytes = static_cast<std::size_t>(dt.itemsize());
  for (const py::ssize_t n : shape) bytes = mul_sz(bytes, static_cast<std::size_t>(n));
  if (bytes < kRecycledBytes) return py::array(dt, shape);
  auto buf = std::make_unique<AlignedBuffer>(bytes, /*zero=*/false);
  void* data = buf->data();
  py::capsule owner(buf.get(), [](void* p) { delete static_cast<AlignedBuffer*>(p); });
  buf.release();  // the capsule owns it now
  return py::array(dt, shape, {}, data, owner);
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

const void* checked(const py::handle& obj, const std::string& name, DType dt, const std::vector<py::ssize_t>& shape) {
  if (!py::isinstance<py::array>(obj)) type_error(name + ": expected a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(np_dtype(dt))) type_error(name + ": expected dtype " + std::string(py::str(np_dtype(dt))));
  if (!(a.flags() & py::array::c_style)) value_error(name + ": expected a C-contiguous array");
  std::vector<py::ssize_t> got(a.shape(), a.shape() + a.ndim());
  if (got != shape) value_error(name + ": expected shape " + shape_str(shape) + ", got " + shape_str(got));
  return a.data();
}

const std::int64_t* checked_int64(const py::handle& obj, const std::string& name, py::ssize_t n) {
  if (!py::isinstance<py::array_t<std::int64_t>>(obj)) type_error(name + ": expected an int64 array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!(a.flags() & py::array::c_style) || a.ndim() != 1 || a.shape(0) != n)
    value_error(name + ": expected a contiguous 1-D array of " + std::to_string(n) + " integers");
  return static_cast<const std::int64_t*>(a.data());
}

std::int64_t elem_stride(const py::array& a, int axis, const std::string& name) {
  if (a.shape(axis) <= 1) return 0;
  const py::ssize_t s = a.strides(axis), item = a.itemsize();
  if (s % item != 0) value_error(name + ": strides must be multiples of the item size");
  return s / item;
}

}  // namespace fastlstm::bindings
