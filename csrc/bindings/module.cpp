// fastlstm._core, the compiled half of fastlstm (private: the public API is the fastlstm package). The
// bindings turn numpy arrays into the engines' plain structs and map C++ errors to Python's:
// std::invalid_argument -> ValueError, std::bad_alloc (and CUDA out of memory) -> MemoryError, other CUDA
// errors -> RuntimeError. No math here.
#include <pybind11/pybind11.h>

#include "bindings/module.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastlstm's compiled engines (private: use the fastlstm package)";
  fastlstm::bindings::bind_cpu(m);
  fastlstm::bindings::bind_cuda(m);
  fastlstm::bindings::bind_dlpack(m);
}
