// What the CPU and CUDA bindings share: the Python objects of the engine seam, a module dtype's name, and a
// forward or backward call's arguments checked on numpy arrays (cpu.cpp defines them; cuda.cpp stages the
// same arrays through device memory).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

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

// The dropout masks of a training call: None, or L-1 arrays [T, B, D*Hout] (C-contiguous, the engine's dtype).
std::vector<const void*> mask_pointers(const ModelShape& s, DType dt, const py::object& masks, int T, int B);

// GradPointers' fields by the names grad_outputs gives their arrays.
inline constexpr std::pair<const char*, void * GradPointers::*> kGradFields[] = {
    {"w_ih", &GradPointers::w_ih}, {"w_hh", &GradPointers::w_hh}, {"b_ih", &GradPointers::b_ih},
    {"b_hh", &GradPointers::b_hh}, {"w_hr", &GradPointers::w_hr}, {"p_i", &GradPointers::p_i},
    {"p_f", &GradPointers::p_f},   {"p_o", &GradPointers::p_o}};

// The parameters' gradients of a backward call, per layer and direction (k * D + d): a dict each, appended to
// `grads`, whose arrays make(dict, name, shape) adds and returns the address of (in state_dict's order);
// -> the GradPointers into them.
template <class Make>
std::vector<GradPointers> grad_outputs(const ModelShape& s, py::list& grads, Make&& make) {
  const py::ssize_t D = s.directions(), H = s.hidden_size, P = s.proj_size;
  std::vector<GradPointers> gp(static_cast<std::size_t>(s.num_layers * D));
  for (py::ssize_t i = 0; i < s.num_layers * D; ++i) {
    py::dict g;
    GradPointers& p = gp[i];
    p.w_ih = make(g, "w_ih", {4 * H, s.layer_input(static_cast<int>(i / D))});
    p.w_hh = make(g, "w_hh", {4 * H, s.out_size()});
    if (s.bias) {
      p.b_ih = make(g, "b_ih", {4 * H});
      p.b_hh = make(g, "b_hh", {4 * H});
    }
    if (P > 0) p.w_hr = make(g, "w_hr", {P, H});
    if (s.peephole) {
      p.p_i = make(g, "p_i", {H});
      p.p_f = make(g, "p_f", {H});
      p.p_o = make(g, "p_o", {H});
    }
    grads.append(g);
  }
  return gp;
}

// A backward call's arguments checked on numpy arrays, and its outputs allocated: dx in x's layout, dh0, dc0,
// and per layer and direction a dict of the parameters' gradients (grads) that gp points into.
struct BackwardIo {
  BackwardArgs a;
  py::array dx, dh0, dc0;
  py::list grads;
  std::vector<GradPointers> gp;
  std::vector<const void*> masks;
};
BackwardIo backward_io(const PyEngine& e, const PyWeights& w, const PySaved& saved, const py::array& dy,
                       const py::object& dh_n, const py::object& dc_n, bool batch_first, const py::object& masks);

}  // namespace fastlstm::bindings
