// fastlstm._core: each part of the bindings registers itself on the module.
#pragma once

#include <pybind11/pybind11.h>

namespace fastlstm::bindings {

void bind_cpu(pybind11::module_& m);     // cpu.cpp: the engine seam on the CPU, probes, threads
void bind_cuda(pybind11::module_& m);    // cuda.cpp: the CUDA library (cuda_built = False without it)
void bind_dlpack(pybind11::module_& m);  // dlpack.cpp: DLPack capsules (the import's inspection)
// cuda_device.cpp (CUDA builds only; bind_cuda calls it): the CUDA engine's calls on DLPack device arrays.
void bind_cuda_device(pybind11::module_& m);

}  // namespace fastlstm::bindings
