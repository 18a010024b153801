// The inference forward of a whole model on the CUDA kernels: per layer, one input-projection GEMM (both
// directions' W_ih stacked) and one persistent recurrence kernel (both directions concurrently). Host code,
// written once over an executor, so the same sequence of launches runs on a GPU (launch/engine.cu: nvcc
// launches on a stream) and on the CPU execution model (the tests: emu::launch), with the same plans.
//
// Exec: `exec(const LaunchPlan&, kernel, params)` launches kernel<<<plan>>>(params), cooperatively when the
// plan says so. Every pointer in ForwardIO, PackedLayer and the workspace is device memory.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/plan.h"
#include "fastlstm/types.h"
#include "kernels/input_proj.cuh"
#include "kernels/operand.cuh"
#include "kernels/recurrence.cuh"

namespace fastlstm::cuda::detail {

// One layer's parameters as the kernels read them (launch/engine.cu packs them), D directions stacked:
//   w_ih [D*4H, In] and w_hh [D][4H, R], w_hr [D][P, H] in the operand format; bias [D*4H] = b_ih + b_hh
//   (fp32, or null); peep [D][3][H] fp32 (p_i, p_f, p_o), or null.
template <Operand Op>
struct PackedLayer {
  using Storage = typename OperandTraits<Op>::Storage;
  const Storage *w_ih = nullptr, *w_hh = nullptr, *w_hr = nullptr;
  const float *bias = nullptr, *peep = nullptr;
};

// One call's arrays, as engine.h's ForwardArgs (fp32), with lengths already on the device as int32.
struct ForwardIO {
  int T = 0, B = 0;
  const float* x = nullptr;
  std::int64_t x_st = 0, x_sb = 0;
  const float *h0 = nullptr, *c0 = nullptr;  // [L*D, B, R], [L*D, B, H], or null
  const int* lengths = nullptr;              // [B] or null
  float* y = nullptr;
  std::int64_t y_st = 0, y_sb = 0;
  float *h_n = nullptr, *c_n = nullptr;
};

// The workspace: the layer's pre-activations z [T*B, D*4H], the h ping-pong [D][2][B, R], m [D][B, H] (with a
// projection), and two [T, B, D*R] buffers for the outputs of the layers below the last. Offsets in bytes,
// each 256-aligned (what cudaMalloc returns).
struct ForwardLayout {
  std::size_t z = 0, hbuf = 0, mbuf = 0, y[2] = {0, 0}, total = 0;
};

inline ForwardLayout forward_layout(const ModelShape& s, int T, int B) {
  const auto a256 = [](std::size_t n) { return (n + 255) & ~std::size_t{255}; };
  const std::size_t D = static_cast<std::size_t>(s.directions()), H = static_cast<std::size_t>(s.hidden_size);
  const std::size_t R = static_cast<std::size_t>(s.out_size()), TB = static_cast<std::size_t>(T) * B;
  ForwardLayout w;
  std::size_t at = 0;
  w.z = at;
  at += a256(sizeof(float) * TB * D * 4 * H);
  w.hbuf = at;
  at += a256(sizeof(float) * D * 2 * B * R);
  w.mbuf = at;
  at += s.proj_size > 0 ? a256(sizeof(float) * D * B * H) : 0;
  for (int i = 0; i < 2; ++i) {
    w.y[i] = at;
    at += s.num_layers > i + 1 ? a256(sizeof(float) * TB * D * R) : 0;
  }
  w.total = at;
  return w;
}

// What a training forward keeps of layer k (train.cuh): its output y [T, B, D*R] (for the layers below the
// last; the last writes io.y), and the cell's saved gates and c (recurrence.cuh's save_gates / save_c); and
// the dropout mask [T, B, D*R] the layer above reads y through (null: none; the layer below the last only).
struct LayerSave {
  float* y = nullptr;
  float* gates = nullptr;
  float* c = nullptr;
  const float* mask = nullptr;
};

// With `save` (one per layer: training), each layer's output and cell state are kept for backward.
template <Operand Op, class Exec>
void forward_sequence(Exec& exec, const DeviceLimits& dev, const ModelShape& s, const PackedLayer<Op>* layers,
                      const ForwardIO& io, void* workspace, const LayerSave* save = nullptr) {
  const ForwardLayout w = forward_layout(s, io.T, io.B);
  unsigned char* ws = static_cast<unsigned char*>(workspace);
  const int D = s.directions(), H = s.hidden_size, R = s.out_size();
  const RecurrencePlan rplan =
      recurrence_plan(H, s.proj_size, D, io.B, sizeof(typename OperandTraits<Op>::Storage), dev);
  const std::int64_t layer_h = static_cast<std::int64_t>(D) * io.B * R,
                     layer_c = static_cast<std::int64_t>(D) * io.B * H;
  for (int k = 0; k < s.num_layers; ++k) {
    InputProjParams<Op> g;
    g.M = io.T * io.B;
    g.N = D * 4 * H;
    g.K = s.layer_input(k);
    g.B = io.B;
    if (k == 0) {
      g.x = io.x;
      g.x_st = io.x_st;
      g.x_sb = io.x_sb;
    } else {
      g.x = save != nullptr ? save[k - 1].y : reinterpret_cast<const float*>(ws + w.y[(k - 1) % 2]);
      g.x_mask = save != nullptr ? save[k - 1].mask : nullptr;
      g.x_st = static_cast<std::int64_t>(io.B) * D * R;
      g.x_sb = static_cast<std::int64_t>(D) * R;
    }
    g.w = layers[k].w_ih;
    g.bias = layers[k].bias;
    g.z = reinterpret_cast<float*>(ws + w.z);
    if constexpr (Op == Operand::kF32) {
      exec(input_proj_plan(g.M, g.N), input_proj_simt_kernel<Op>, g);
    } else {
      exec(input_proj_plan(g.M, g.N), input_proj_mma_kernel<Op>, g);
    }

    RecurrenceParams<Op> r;
    r.T = io.T;
    r.B = io.B;
    r.H = H;
    r.P = s.proj_size;
    r.R = R;
    r.units = rplan.units;
    r.punits = rplan.punits;
    r.batch_chunk = rplan.batch_chunk;
    r.weights_in_smem = rplan.weights_in_smem;
    r.z = g.z;
    r.ldz = g.N;
    r.w_hh = layers[k].w_hh;
    r.w_hr = layers[k].w_hr;
    r.peep = layers[k].peep;
    r.h0 = io.h0 != nullptr ? io.h0 + k * layer_h : nullptr;
    r.c0 = io.c0 != nullptr ? io.c0 + k * layer_c : nullptr;
    r.lengths = io.lengths;
    if (k == s.num_layers - 1) {
      r.y = io.y;
      r.y_st = io.y_st;
      r.y_sb = io.y_sb;
    } else {
      r.y = save != nullptr ? save[k].y : reinterpret_cast<float*>(ws + w.y[k % 2]);
      r.y_st = static_cast<std::int64_t>(io.B) * D * R;
      r.y_sb = static_cast<std::int64_t>(D) * R;
    }
    r.h_n = io.h_n + k * layer_h;
    r.c_n = io.c_n + k * layer_c;
    r.hbuf = reinterpret_cast<float*>(ws + w.hbuf);
    r.mbuf = reinterpret_cast<float*>(ws + w.mbuf);
    if (save != nullptr) {
      r.save_gates = save[k].gates;
      r.save_c = save[k].c;
    }
    if (s.peephole) {
      exec(rplan.launch, recurrence_kernel<Op, true>, r);
    } else {
      exec(rplan.launch, recurrence_kernel<Op, false>, r);
    }
  }
}

}  // namespace fastlstm::cuda::detail
