// What the CPU and CUDA bindings share: the Python objects of the engine seam, a module dtype's name, and a
// forward call's arguments checked on numpy arrays (cpu.cpp defines them; cuda.cpp stages the same arrays
// through device memory).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "bindings/arrays.h"
#include "fastlstm/engine.h"

namespace fastlstm::bindings {

// An engine and the objects it makes, as Python holds them (immutable, shared by concurrent calls).
struct PyEngine {
  std::shared_ptr<const Engine> engine;
};
struct PyWeights {
  std::shared_ptr<const PackedWeights> weights;
};
struct PySaved {
  std::shared_ptr<const SavedState> state;
  py::object buffer;  // the caller's array the state lives in (None: the engine's own memory)
};

// 'float32' | 'float64' -> the DType (ValueError naming dtype otherwise).
DType dtype_of(const std::string& name);

// A call's arguments and its outputs, allocated in x's layout (the engine checks the memory the call needs
// before it writes any: an allocation the machine cannot back fails then, not when first touched).
struct ForwardIo {
  ForwardArgs a;
  py::array y, h_n, c_n;
};
ForwardIo forward_io(const PyEngine& e, const PyWeights& w, const py::array& x, const py::object& h0,
                     const py::object& c0, const py::object& lengths, bool batch_first, int num_threads);

}  // namespace fastlstm::bindings
