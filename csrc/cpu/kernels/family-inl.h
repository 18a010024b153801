// Everything a kernel family compiles, included INSIDE the family's namespace after its vector traits
// (vec_<isa>.h defines VecF / VecD): the kernels of every cell, the activations and the probes, and
// make_family(), which tables them by (ISA, compute type, weight format). A new cell is one include and one
// line in make_family(); a new family is one file like family_avx2.cpp.

// clang-format off: each part uses the ones above it
#include "activations-inl.h"
#include "gemm-inl.h"
#include "cells/lstm-inl.h"
#include "recurrence_fwd-inl.h"
#include "recurrence_bwd-inl.h"
#include "grads-inl.h"
#include "probes-inl.h"
// clang-format on

template <class V, template <class> class C>
constexpr CellKernels cell_kernels() {
  CellKernels k;
  k.gates = C<V>::kGates;
  k.run_direction = run_direction_impl<V, C<V>>;
  k.run_backward = run_backward_impl<V, C<V>>;
  k.run_grads = run_grads_impl<V, C<V>>;
  k.run_dx = run_dx_impl<V>;
  return k;
}

// The fp32 / fp64 family of vector traits V: weights stored in the compute type.
template <class V>
constexpr KernelFamily make_family(Isa isa, CpuFeature feature, DType compute, WeightFormat weights) {
  KernelFamily f;
  f.isa = isa;
  f.feature = feature;
  f.compute = compute;
  f.weights = weights;
  f.units = V::N;
  f.cells[static_cast<int>(Cell::kLstm)] = cell_kernels<V, LstmCell>();
  f.activation = activation_impl<V>;
  return f;
}

template <class V>
constexpr IsaProbes make_probes() {
  return IsaProbes{fma_probe_impl<V>, read_probe_impl<V>};
}
