// Array conversion for the bindings: numpy arrays checked for everything a raw pointer depends on (dtype,
// layout, shape), with errors that name the argument: TypeError for a type or dtype, ValueError otherwise.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fastlstm/types.h"

namespace fastlstm::bindings {

namespace py = pybind11;

[[noreturn]] void type_error(const std::string& msg);
[[noreturn]] void value_error(const std::string& msg);

// The numpy dtype of an element type (float32, float64).
py::dtype np_dtype(DType t);
// A new C-contiguous array for a call's output (uninitialised, as numpy.empty). From kRecycledBytes up its
// memory is an engine buffer the array owns, recycled when the array is freed: a training or long-sequence
// call's outputs of tens of MB then reuse mapped pages (a fresh numpy array faults in and clears each page
// on the engine's first write: 6.5% of a T=20 B=256 H=1024 inference on Zen 5; one-thread training at
// T=100 B=16 H=256, whose y, dx and weight gradients are 1-1.6 MB each, 23.4 ms with them in numpy memory,
// 20.7 ms recycled).
py::array new_array(DType t, const std::vector<py::ssize_t>& shape);
// "(2, 3)" as numpy prints a shape.
std::string shape_str(const std::vector<py::ssize_t>& s);

// An array the engine may read through a raw pointer: dtype `dt`, C-contiguous, exactly `shape`.
const void* checked(const py::handle& obj, const std::string& name, DType dt, const std::vector<py::ssize_t>& shape);
// A contiguous 1-D int64 array of n elements.
const std::int64_t* checked_int64(const py::handle& obj, const std::string& name, py::ssize_t n);
// The element stride of one axis (0 for an axis of length <= 1, whose stride numpy may report as anything).
std::int64_t elem_stride(const py::array& a, int axis, const std::string& name);

}  // namespace fastlstm::bindings
