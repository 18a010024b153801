// Everything a kernel family compiles, included INSIDE the family's namespace after its vector traits
// (vec_<isa>.h defines VecF / VecD): the kernels of every cell, the activations and the probes, and
// make_family(), which tables them by (ISA, compute type, weight format). A new cell is one include and one
// line in make_family(); a new family is one file like family_avx2.cpp.

// clang-format off: each part uses the ones above it
#include "activations-inl.h"
#include "gemm-inl.h"
#include "operands-inl.h"
#include "cells/lstm-inl.h"
#include "recurrence_fwd-inl.h"
#include "recurrence_bwd-inl.h"
#include "grads-inl.h"
#include "probes-inl.h"
// clang-format on

template <class V, class C, class O>
std::size_t direction_workspace_impl(int chunk, int B, int max_blocks, int I, int hout) {
  return direction_workspace<V, O>(chunk, B, max_blocks, C::kGates, I, hout);
}

// The kernels of cell C on vector traits V with operands O; training where O also gives the weight gradients'
// operands (O::kTrains: the native and bf16 policies, not int8).
template <class V, template <class> class C, class O = NativeOps<V>>
constexpr CellKernels cell_kernels() {
  CellKernels k;
  k.gates = C<V>::kGates;
  k.run_direction = run_direction_impl<V, C<V>, O>;
  k.direction_workspace = direction_workspace_impl<V, C<V>, O>;
  if constexpr (O::kTrains) {
    k.run_backward = run_backward_impl<V, C<V>, O>;
    k.run_grads = run_grads_impl<V, C<V>, O>;
    k.run_dx = run_dx_impl<V, O>;
    k.training_workspace = training_workspace_impl<V, C<V>, O>;
  }
  return k;
}

// The family of vector traits V with forward operands O: NativeOps (weights in the compute type, fp32 /
// fp64) or a low-precision policy (bf16-inl.h, int8-inl.h) with its weight format.
template <class V, class O = NativeOps<V>>
constexpr KernelFamily make_family(Isa isa, CpuFeature feature, DType compute, WeightFormat weights) {
  KernelFamily f;
  f.isa = isa;
  f.feature = feature;
  f.compute = compute;
  f.weights = weights;
  f.units = V::N;
  f.cells[static_cast<int>(Cell::kLstm)] = cell_kernels<V, LstmCell, O>();
  f.activation = activation_impl<V>;
  return f;
}

template <class V>
constexpr IsaProbes make_probes() {
  return IsaProbes{fma_probe_impl<V>, read_probe_impl<V>};
}
