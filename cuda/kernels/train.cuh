// A training step of a whole model on the CUDA kernels: the forward with each layer's output, gates and c
// kept (forward.cuh with LayerSave), then per layer from the top: the backward recurrence (recurrence_bwd.cuh,
// both directions at once), the weight gradients and the gradient reaching the layer's input (grads.cuh).
// Host code over an executor, as forward.cuh: the same launches run on a GPU and on the CPU execution model.
// Every gradient is a fixed-order sum (no atomics): bitwise the same from run to run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fastlstm/types.h"
#include "kernels/forward.cuh"
#include "kernels/grads.cuh"
#include "kernels/recurrence_bwd.cuh"

namespace fastlstm::cuda::detail {

// The call's arrays besides the forward's: dy like y, dx like x; dh_n [L*D, B, R] / dc_n [L*D, B, H] (or null:
// zeros); dh0 [L*D, B, R] / dc0 [L*D, B, H] written (R = proj_size or hidden_size).
struct TrainIO {
  ForwardIO fwd;
  const float* dy = nullptr;
  std::int64_t dy_st = 0, dy_sb = 0;
  const float *dh_n = nullptr, *dc_n = nullptr;
  float* dx = nullptr;
  std::int64_t dx_st = 0, dx_sb = 0;
  float *dh0 = nullptr, *dc0 = nullptr;
  // Dropout between layers: L - 1 masks [T, B, D*R], the one of layer k applied where layer k + 1 reads
  // layer k's output (its input projection and dW_ih) and to the gradient passed back down; or null.
  const float* const* masks = nullptr;
};

// Two device buffers. The saved state (what the forward keeps for backward, only read by backward): per layer
// the gates [T*B, D*4H] and c [T*B, D*H], and the outputs of the layers below the last [T*B, D*R]. The
// workspace (any call's scratch): the forward's (forward_layout), two buffers for the gradient passed down a
// layer, W_hh transposed [D][R][4H] and W_hr transposed [D][H][P] (operand format), dr_t [T*B, D*P]
// (projection), and the backward's carried dh [D][2][B, R] and dc [D][B, H]. Offsets in bytes, 256-aligned.
struct TrainLayout {
  ForwardLayout fwd;
  std::size_t gates = 0, c = 0, ys = 0, saved_total = 0;                               // in the saved state
  std::size_t dx[2] = {0, 0}, wt = 0, wr = 0, dr = 0, dh = 0, dc = 0, work_total = 0;  // in the workspace
  std::size_t gates_bytes = 0, c_bytes = 0, y_bytes = 0;                               // one layer's
};

inline TrainLayout train_layout(const ModelShape& s, int T, int B, std::size_t operand_bytes) {
  const auto a256 = [](std::size_t n) { return (n + 255) & ~std::size_t{255}; };
  const std::size_t D = static_cast<std::size_t>(s.directions()), H = static_cast<std::size_t>(s.hidden_size);
  const std::size_t L = static_cast<std::size_t>(s.num_layers), TB = static_cast<std::size_t>(T) * B;
  const std::size_t R = static_cast<std::size_t>(s.out_size()), P = static_cast<std::size_t>(s.proj_size);
  TrainLayout w;
  w.fwd = forward_layout(s, T, B);
  w.gates_bytes = a256(sizeof(float) * TB * D * 4 * H);
  w.c_bytes = a256(sizeof(float) * TB * D * H);
  w.y_bytes = a256(sizeof(float) * TB * D * R);
  std::size_t at = 0;
  w.gates = at;
  at += L * w.gates_bytes;
  w.c = at;
  at += L * w.c_bytes;
  w.ys = at;
  at += (L - 1) * w.y_bytes;
  w.saved_total = at;
  at = w.fwd.total;
  for (int i = 0; i < 2; ++i) {
    w.dx[i] = at;
    at += L > 1 ? w.y_bytes : 0;
  }
  w.wt = at;
  at += a256(operand_bytes * D * R * 4 * H);
  w.wr = at;
  at += a256(operand_bytes * D * H * P);
  w.dr = at;
  at += a256(sizeof(float) * TB * D * P);
  w.dh = at;
  at += a256(sizeof(float) * D * 2 * B * R);
  w.dc = at;
  at += a256(sizeof(float) * D * B * H);
  w.work_total = at;
  return w;
}

// out[d][r][n] = in[d][n][r]: W_hh [D][4H, R] -> [D][R][4H] for the backward's columns.
template <class Storage>
struct TransposeParams {
  int rows = 0, cols = 0;  // of one direction's input
  const Storage* in = nullptr;
  Storage* out = nullptr;
};

template <class Storage>
__global__ void __launch_bounds__(kGradThreads) transpose_kernel(TransposeParams<Storage> p) {
  const std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t n = static_cast<std::int64_t>(p.rows) * p.cols, d = blockIdx.y;
  if (e >= n) return;
  const int r = static_cast<int>(e / p.cols), c = static_cast<int>(e - static_cast<std::int64_t>(r) * p.cols);
  p.out[d * n + static_cast<std::int64_t>(c) * p.rows + r] = p.in[d * n + e];
}

// Where the training forward keeps each layer's output, gates and c in the saved state.
inline std::vector<LayerSave> layer_saves(const ModelShape& s, const TrainLayout& w, void* saved,
                                          const float* const* masks) {
  unsigned char* ws = static_cast<unsigned char*>(saved);
  const int L = s.num_layers;
  std::vector<LayerSave> save(static_cast<std::size_t>(L));
  for (int k = 0; k < L; ++k) {
    save[k].y = k < L - 1 ? reinterpret_cast<float*>(ws + w.ys + k * w.y_bytes) : nullptr;
    save[k].gates = reinterpret_cast<float*>(ws + w.gates + k * w.gates_bytes);
    save[k].c = reinterpret_cast<float*>(ws + w.c + k * w.c_bytes);
    save[k].mask = masks != nullptr && k < L - 1 ? masks[k] : nullptr;
  }
  return save;
}

// The backward recurrence's plan; std::invalid_argument (before anything runs) for a hidden size it cannot take.
inline RecurrencePlan backward_plan(const ModelShape& s, int B, std::size_t operand_bytes, const DeviceLimits& dev) {
  const RecurrencePlan plan =
      recurrence_backward_plan(s.hidden_size, s.proj_size, s.directions(), B, operand_bytes, dev);
  if (plan.batch_chunk == 0) {
    throw std::invalid_argument("hidden_size: " + std::to_string(s.hidden_size) +
                                " is too large for the CUDA backward on this device (one row of 4 * hidden_size "
                                "gate gradients must fit in a block's shared memory)");
  }
  return plan;
}

// The training forward: io.fwd's outputs, and in `saved` (train_layout's saved_total bytes) what
// train_backward needs; `workspace` (work_total bytes) is scratch.
template <Operand Op, class Exec>
void train_forward(Exec& exec, const DeviceLimits& dev, const ModelShape& s, const PackedLayer<Op>* layers,
                   const ForwardIO& io, const float* const* masks, void* saved, void* workspace) {
  backward_plan(s, io.B, sizeof(typename OperandTraits<Op>::Storage), dev);  // refused before the forward runs
  const TrainLayout w = train_layout(s, io.T, io.B, sizeof(typename OperandTraits<Op>::Storage));
  const std::vector<LayerSave> save = layer_saves(s, w, saved, masks);
  forward_sequence<Op>(exec, dev, s, layers, io, workspace, save.data());
}

// Backward after train_forward, io.fwd as that call's (x, h0, c0, lengths and y are read). `saved` is only
// read, so backward may run again (or concurrently, each call with a workspace of its own).
template <Operand Op, class Exec>
void train_backward(Exec& exec, const DeviceLimits& dev, const ModelShape& s, const PackedLayer<Op>* layers,
                    const TrainIO& io, const GradPointers* grads, const void* saved, void* workspace) {
  using Storage = typename OperandTraits<Op>::Storage;
  const int T = io.fwd.T, B = io.fwd.B, D = s.directions(), H = s.hidden_size, L = s.num_layers;
  const int P = s.proj_size, R = s.out_size();
  const TrainLayout w = train_layout(s, T, B, sizeof(Storage));
  unsigned char* ws = static_cast<unsigned char*>(workspace);
  const std::vector<LayerSave> save = layer_saves(s, w, const_cast<void*>(saved), io.masks);

  const RecurrencePlan plan = backward_plan(s, B, sizeof(Storage), dev);
  const std::int64_t layer_h = static_cast<std::int64_t>(D) * B * R, layer_c = static_cast<std::int64_t>(D) * B * H;
  const std::int64_t G = 4 * H, ldg = D * G;
  const std::int64_t inter_st = static_cast<std::int64_t>(B) * D * R, inter_sb = static_cast<std::int64_t>(D) * R;
  float* const dz = reinterpret_cast<float*>(ws + w.fwd.z);
  float* const dr = reinterpret_cast<float*>(ws + w.dr);
  Storage* const wt = reinterpret_cast<Storage*>(ws + w.wt);
  Storage* const wr = reinterpret_cast<Storage*>(ws + w.wr);
  for (int k = L - 1; k >= 0; --k) {
    TransposeParams<Storage> tp{static_cast<int>(G), R, layers[k].w_hh, wt};
    exec(elementwise_plan(G * R, static_cast<unsigned>(D)), transpose_kernel<Storage>, tp);
    if (P > 0) {
      TransposeParams<Storage> tr{P, H, layers[k].w_hr, wr};
      exec(elementwise_plan(static_cast<std::int64_t>(P) * H, static_cast<unsigned>(D)), transpose_kernel<Storage>, tr);
    }

    BackwardParams<Op> bp;
    bp.T = T;
    bp.B = B;
    bp.H = H;
    bp.P = P;
    bp.R = R;
    bp.units = plan.units;
    bp.punits = plan.punits;
    bp.batch_chunk = plan.batch_chunk;
    bp.weights_in_smem = plan.weights_in_smem;
    bp.gates = save[k].gates;
    bp.c = save[k].c;
    bp.ldg = ldg;
    bp.w_hh_t = wt;
    bp.w_hr_t = P > 0 ? wr : nullptr;
    bp.peep = layers[k].peep;
    bp.c0 = io.fwd.c0 != nullptr ? io.fwd.c0 + k * layer_c : nullptr;
    bp.lengths = io.fwd.lengths;
    if (k == L - 1) {
      bp.dy = io.dy;
      bp.dy_st = io.dy_st;
      bp.dy_sb = io.dy_sb;
    } else {
      bp.dy = reinterpret_cast<const float*>(ws + w.dx[k & 1]);
      bp.dy_st = inter_st;
      bp.dy_sb = inter_sb;
      bp.dy_mask = save[k].mask;
    }
    bp.dh_n = io.dh_n != nullptr ? io.dh_n + k * layer_h : nullptr;
    bp.dc_n = io.dc_n != nullptr ? io.dc_n + k * layer_c : nullptr;
    bp.dz = dz;
    bp.dr = dr;
    bp.dh0 = io.dh0 + k * layer_h;
    bp.dc0 = io.dc0 + k * layer_c;
    bp.dhbuf = reinterpret_cast<float*>(ws + w.dh);
    bp.dcbuf = reinterpret_cast<float*>(ws + w.dc);
    if (s.peephole) {
      exec(plan.launch, recurrence_backward_kernel<Op, true>, bp);
    } else {
      exec(plan.launch, recurrence_backward_kernel<Op, false>, bp);
    }

    // The layer's input (x, or the output of the layer below) and output, as the forward read and wrote them.
    const int In = s.layer_input(k);
    OuterParams op;
    op.M = T * B;
    op.B = B;
    op.T = T;
    op.dz = dz;
    op.ldz = ldg;
    op.lengths = io.fwd.lengths;
    // Each direction's gradients straight into the caller's arrays (GradPointers' layouts).
    const GradPointers* gk = grads + static_cast<std::size_t>(k) * D;
    // Runs op per direction d (its dz columns from d * a_per_d) into field `out` of d's gradients, and into
    // `out2` as well when given (b_hh beside b_ih); a null field is skipped.
    using Field = void* GradPointers::*;
    const auto per_direction = [&](std::int64_t a_per_d, Field out, Field out2, auto kernel) {
      for (int d = 0; d < D; ++d) {
        float* a = static_cast<float*>(gk[d].*out);
        float* b = out2 != nullptr ? static_cast<float*>(gk[d].*out2) : nullptr;
        if (a == nullptr) std::swap(a, b);
        if (a == nullptr) continue;
        op.d = d;
        op.a_off = d * a_per_d;
        op.out = a;
        op.out2 = b;
        exec(grad_tile_plan(op.N, op.K), kernel, op);
      }
    };
    op.N = static_cast<int>(G);
    op.K = In;
    op.rows = OuterRows::kInput;
    if (k == 0) {
      op.x = io.fwd.x;
      op.x_st = io.fwd.x_st;
      op.x_sb = io.fwd.x_sb;
    } else {
      op.x = save[k - 1].y;
      op.x_st = inter_st;
      op.x_sb = inter_sb;
      op.x_mask = save[k - 1].mask;
    }
    per_direction(G, &GradPointers::w_ih, nullptr, outer_grad_kernel<Op>);
    if (s.bias) {  // db, into b_ih and b_hh alike
      op.K = 1;
      op.rows = OuterRows::kOnes;
      per_direction(G, &GradPointers::b_ih, &GradPointers::b_hh, outer_grad_kernel<Operand::kF32>);
    }
    op.K = R;
    op.rows = OuterRows::kHprev;
    op.x = k == L - 1 ? io.fwd.y : save[k].y;
    op.x_st = k == L - 1 ? io.fwd.y_st : inter_st;
    op.x_sb = k == L - 1 ? io.fwd.y_sb : inter_sb;
    op.x_mask = nullptr;  // h_{t-1} is the layer's own output, before any dropout
    op.h0 = io.fwd.h0 != nullptr ? io.fwd.h0 + k * layer_h : nullptr;
    per_direction(G, &GradPointers::w_hh, nullptr, outer_grad_kernel<Op>);
    if (P > 0) {  // dW_hr = sum dr_t m_t^T
      op.dz = dr;
      op.ldz = static_cast<std::int64_t>(D) * P;
      op.N = P;
      op.K = H;
      op.rows = OuterRows::kCellOut;
      op.gates = save[k].gates;
      op.c = save[k].c;
      op.ldg = ldg;
      per_direction(P, &GradPointers::w_hr, nullptr, outer_grad_kernel<Op>);
    }
    for (int d = 0; d < D && s.peephole; ++d) {
      PeepGradParams pp{T,
                        B,
                        H,
                        dz,
                        save[k].c,
                        ldg,
                        bp.c0,
                        io.fwd.lengths,
                        d,
                        static_cast<float*>(gk[d].p_i),
                        static_cast<float*>(gk[d].p_f),
                        static_cast<float*>(gk[d].p_o)};
      exec(elementwise_plan(H), peep_grad_kernel<>, pp);
    }

    InputGradParams<Op> ip;
    ip.M = T * B;
    ip.N = static_cast<int>(ldg);
    ip.K = In;
    ip.B = B;
    ip.dz = dz;
    ip.w = layers[k].w_ih;
    if (k == 0) {
      ip.dx = io.dx;
      ip.dx_st = io.dx_st;
      ip.dx_sb = io.dx_sb;
    } else {
      ip.dx = reinterpret_cast<float*>(ws + w.dx[(k - 1) & 1]);
      ip.dx_st = inter_st;
      ip.dx_sb = inter_sb;
    }
    exec(grad_tile_plan(static_cast<std::int64_t>(T) * B, In), input_grad_kernel<Op>, ip);
  }
}

// A whole training step: the forward, then backward of dy.
// dst(t, b, k) = src(t, b, k) for T x B rows of K contiguous floats, each side with its own row strides:
// the engine's copies of x and y into a saved state (and back out).
struct CopyRowsParams {
  int T = 0, B = 0, K = 0;
  const float* src = nullptr;
  std::int64_t s_st = 0, s_sb = 0;
  float* dst = nullptr;
  std::int64_t d_st = 0, d_sb = 0;
};

// A template only for its linkage: included by several translation units, one definition each.
template <int = 0>
__global__ void __launch_bounds__(kGradThreads) copy_rows_kernel(CopyRowsParams p) {
  const std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= static_cast<std::int64_t>(p.T) * p.B * p.K) return;
  const std::int64_t row = e / p.K;
  const int k = static_cast<int>(e - row * p.K), t = static_cast<int>(row / p.B), b = static_cast<int>(row % p.B);
  p.dst[t * p.d_st + b * p.d_sb + k] = p.src[t * p.s_st + b * p.s_sb + k];
}

template <class Exec>
void copy_rows(Exec& exec, const CopyRowsParams& p) {
  exec(elementwise_plan(static_cast<std::int64_t>(p.T) * p.B * p.K), copy_rows_kernel<>, p);
}

template <Operand Op, class Exec>
void train_sequence(Exec& exec, const DeviceLimits& dev, const ModelShape& s, const PackedLayer<Op>* layers,
                    const TrainIO& io, const GradPointers* grads, void* saved, void* workspace) {
  train_forward<Op>(exec, dev, s, layers, io.fwd, io.masks, saved, workspace);
  train_backward<Op>(exec, dev, s, layers, io, grads, saved, workspace);
}

}  // namespace fastlstm::cuda::detail
