// The backward driver: per layer from the top, the recurrence of each direction (on its thread group), then
// the weight gradients and the layer input's gradient over the whole team, and the packed, transposed
// gradients back to the user's layouts, also over the team.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/packed.h"
#include "fastlstm/isa.h"

namespace fastlstm::cpu {
namespace {

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

// Backward's workspace, per direction (the two directions of a layer run at once) and shared, for `steps`
// steps of B rows of which M (t, r) pairs are alive, on a team of n threads.
struct BackwardPlan {
  struct PerDirection {
    std::size_t dh, dc, dpre, hall, hpre, dh_save, ptr, gw_ih, gw_hh, gb, gp, gw_hr, dz;
  };
  PerDirection dir[2] = {};
  std::size_t dx_ptr = 0, grad_work = 0, grad_work_stride = 0, upstream[2] = {0, 0};
  std::size_t total = 0;

  BackwardPlan(const Geometry& g, int steps, int B, std::size_t M, int n, std::int64_t h_ld, std::int64_t c_ld,
               std::size_t elem) {
    const ModelShape& s = g.shape;
    const int G = g.family->cells[static_cast<int>(g.cell)].gates, U = g.family->units;
    const int D = s.directions(), L = s.num_layers, H = s.hidden_size, P = s.proj_size, Hout = s.out_size();
    const std::size_t rows = mul_sz(steps, B);
    const std::size_t hb = mul_sz(mul_sz(B, h_ld), elem), cb = mul_sz(mul_sz(B, c_ld), elem);
    const int Imax = std::max(s.input_size, D * Hout);
    Layout layout;
    for (int d = 0; d < D; ++d) {
      PerDirection& o = dir[d];
      o.dh = layout.reserve(hb);
      o.dc = layout.reserve(cb);
      o.dpre = layout.reserve(cb);
      o.hall = layout.reserve(mul_sz(mul_sz(rows, h_ld), elem));
      o.hpre = layout.reserve(P > 0 ? mul_sz(mul_sz(rows, c_ld), elem) : 0);
      o.dh_save = layout.reserve(P > 0 ? mul_sz(mul_sz(rows, h_ld), elem) : 0);
      o.dz = layout.reserve(mul_sz(mul_sz(rows, G * c_ld), elem));
      o.ptr = layout.reserve(mul_sz(mul_sz(M, 7), sizeof(void*)));
      o.gw_ih = layout.reserve(mul_sz(mul_sz(Imax, G * c_ld), elem));
      o.gw_hh = layout.reserve(mul_sz(mul_sz(Hout, G * c_ld), elem));
      o.gb = layout.reserve(mul_sz(G * c_ld, elem));
      o.gp = layout.reserve(mul_sz(3 * c_ld, elem));
      o.gw_hr = layout.reserve(mul_sz(mul_sz(H, h_ld), elem));
    }
    dx_ptr = layout.reserve(mul_sz(mul_sz(M, 2), sizeof(void*)));
    // Each thread's scratch (the weight gradients' dz panel, a converting family's operands).
    const CellKernels& kernels = g.family->cells[static_cast<int>(g.cell)];
    mul_sz(mul_sz(GradTask::kRowChunk, static_cast<std::size_t>(G) * U), elem);  // overflow check
    grad_work_stride = round_up(kernels.training_workspace(B, Imax, Hout, c_ld), 64);
    grad_work = layout.reserve(mul_sz(grad_work_stride, n));
    const std::size_t up_bytes = mul_sz(mul_sz(rows, D * Hout), elem);
    upstream[0] = layout.reserve(L > 1 ? up_bytes : 0);
    upstream[1] = layout.reserve(L > 2 ? up_bytes : 0);
    total = layout.total();
  }
};

// One backward call on T = float or double.
template <class T>
struct BackCall {
  const BackwardArgs& a;
  const TrainState& st;
  const PackedModel& m;
  const CellKernels& kernels;
  const RowOrder& order;
  int L, D, H, P, Hout, B, steps, I0;
  std::int64_t h_ld, c_ld;
  TeamSplit team;
  BackTask bt[2];
  GradTask gt[2];
  DxTask dxt;
  int layer = 0;                             // the layer the team works on
  const T *dh_end[2] = {}, *dc_end[2] = {};  // its directions' dh, dc after the first step

  BackCall(const PackedModel& model, const TrainState& state, const BackwardArgs& args)
      : a(args),
        st(state),
        m(model),
        kernels(model.kernels()),
        order(state.order),
        L(st.shape.num_layers),
        D(st.shape.directions()),
        H(st.shape.hidden_size),
        P(st.shape.proj_size),
        Hout(st.shape.out_size()),
        B(st.B),
        steps(order.steps),
        I0(st.shape.input_size),
        h_ld(st.h_ld),
        c_ld(st.c_ld) {}

  std::int64_t row(int t, int r) const { return static_cast<std::int64_t>(t) * B + r; }

  // The k slice of a product dz W over `width` columns split among `threads`, with `directions` weight matrices
  // (the recurrence's dh = dz W_hh: h_ld, one; dx = dz W_ih: the layer input, D): 0 (one pass per row tile)
  // while a thread's columns of W^T fit half this core's L2, else the k of four panels (one register tile's
  // width) in a quarter of it. Either way the same bits (recurrence_bwd-inl.h, grads-inl.h).
  int k_slice(std::int64_t width, int threads, int directions) const {
    const std::size_t l2 = l2_cache_bytes(), vec = static_cast<std::size_t>(m.units) * sizeof(T);
    const std::size_t K = static_cast<std::size_t>(m.gates) * c_ld, cols = (width + threads - 1) / threads;
    if (cols * K * sizeof(T) * directions <= l2 / 2) return 0;
    return static_cast<int>(std::max<std::size_t>(l2 / 4 / (4 * vec), 64));
  }

  static void team_main(void* ctx, int tid, int n) { static_cast<BackCall*>(ctx)->member(tid, n); }
  void member(int tid, int n) {
    void* scratch = gt[0].work[tid];  // this thread's, used by each phase in turn
    if (team.groups == 2) {
      const int g = team.group_of(tid);
      kernels.run_backward(bt[g], team.group_tid(tid), team.group_size(g), scratch);
    } else {
      for (int d = 0; d < D; ++d) kernels.run_backward(bt[d], tid, n, scratch);
    }
    team.team.wait();  // every direction's dz is complete
    for (int d = 0; d < D; ++d) kernels.run_grads(gt[d], tid, n);
    kernels.run_dx(dxt, tid, n, scratch);
    team.team.wait();  // every weight gradient is complete
    for (int d = 0; d < D; ++d) unpack(d, tid, n);
  }

  void run() {
    TeamLease lease(a.num_threads);
    const int n = lease.form(team_work(2 * forward_flops(st.shape, order.work_rows()), m.family->weights));
    team.reset(D, n);
    std::size_t M = 0;
    for (int t = 0; t < steps; ++t) M += order.alive(t);
    const BackwardPlan plan(Geometry{m.family, m.cell, st.shape}, steps, B, M, n, h_ld, c_ld, sizeof(T));
    check_available_memory(plan.total, "dy");
    Workspace ws(plan.total);
    std::vector<void*> gwork(n);
    for (int i = 0; i < n; ++i)
      gwork[i] = ws.at<char>(plan.grad_work) + static_cast<std::size_t>(i) * plan.grad_work_stride;
    const int G = kernels.gates;
    const std::size_t hb = mul_sz(mul_sz(B, h_ld), sizeof(T)), cb = mul_sz(mul_sz(B, c_ld), sizeof(T));

    // dx = 0 where a sequence has ended.
    for (int b = 0; b < B; ++b)
      for (std::int64_t t = order.length_of_user(b); t < st.T; ++t)
        std::memset(static_cast<T*>(a.dx) + t * a.dx_st + b * a.dx_sb, 0, sizeof(T) * I0);

    for (int k = L - 1; k >= 0; --k) {
      const int width = st.shape.layer_input(k);
      const T* input = reinterpret_cast<const T*>(st.at(st.inputs[k]));
      for (int d = 0; d < D; ++d) {
        const int ld = k * D + d;
        const TrainState::Saved& sv = st.saved[ld];
        const PackedModel::Offsets& o = m.layers[ld];
        const BackwardPlan::PerDirection& po = plan.dir[d];
        BackTask& b = bt[d];
        b = BackTask();
        b.steps = steps;
        b.B = B;
        b.H = H;
        b.P = P;
        b.reverse = d == 1;
        b.peephole = st.shape.peephole;
        b.active = order.active_rows();
        b.gates = st.at(sv.gates);
        b.dz = ws.at<void>(po.dz);
        b.csave = st.at(sv.c);
        b.c0 = st.at(sv.c0);
        b.h0 = st.at(sv.h0);
        if (k == L - 1) {
          b.dy = static_cast<const T*>(a.dy) + d * Hout;
          b.dy_st = a.dy_st;
          b.dy_sb = a.dy_sb;
          b.dy_rows = order.rows();
        } else {
          b.dy = ws.at<T>(plan.upstream[k & 1]) + d * Hout;
          b.dy_st = static_cast<std::int64_t>(B) * D * Hout;
          b.dy_sb = D * Hout;
          b.dy_rows = nullptr;
        }
        T* dh = ws.at<T>(po.dh);
        T* dc = ws.at<T>(po.dc);
        std::memset(dh, 0, hb);
        std::memset(dc, 0, cb);
        for (int r = 0; r < B; ++r) {
          const std::size_t src = static_cast<std::size_t>(ld) * B + order.user_row(r);
          if (a.dh_n) std::memcpy(dh + r * h_ld, static_cast<const T*>(a.dh_n) + src * Hout, sizeof(T) * Hout);
          if (a.dc_n) std::memcpy(dc + r * c_ld, static_cast<const T*>(a.dc_n) + src * H, sizeof(T) * H);
        }
        b.dh = dh;
        b.dc = dc;
        b.dpre = ws.at<void>(po.dpre);
        b.hall = ws.at<void>(po.hall);
        b.hpre_all = P > 0 ? ws.at<void>(po.hpre) : nullptr;
        b.dh_save = P > 0 ? ws.at<void>(po.dh_save) : nullptr;
        b.w_hh_t = m.at(o.w_hh_t);
        b.w_hr = m.at(o.w_hr);
        b.w_hr_t = m.at(o.w_hr_t);
        b.peep = m.at(o.peep);
        b.h_ld = h_ld;
        b.c_ld = c_ld;
        b.k_slice = k_slice(h_ld, team.group_size(team.groups == 2 ? d : 0), 1);
        b.barrier = team.barrier_of(d);

        // Row lists of the weight gradients: every live (t, r), t ascending then r.
        const void** p = ws.at<const void*>(po.ptr);
        const void **dz_r = p, **x_r = p + M, **hp_r = p + 2 * M, **cp_r = p + 3 * M, **c_r = p + 4 * M,
                   **dh_r = p + 5 * M, **hpre_r = p + 6 * M;
        std::size_t i = 0;
        for (int t = 0; t < steps; ++t) {
          for (int r = 0; r < order.alive(t); ++r, ++i) {
            const int tp = order.prev_time(d, t, r);
            dz_r[i] = ws.at<T>(po.dz) + row(t, r) * G * c_ld;
            x_r[i] = input + row(t, r) * width;
            hp_r[i] = tp < 0 ? static_cast<const void*>(st.at(sv.h0) + r * h_ld * sizeof(T))
                             : static_cast<const void*>(ws.at<T>(po.hall) + row(tp, r) * h_ld);
            cp_r[i] = tp < 0 ? st.at(sv.c0) + r * c_ld * sizeof(T) : st.at(sv.c) + row(tp, r) * c_ld * sizeof(T);
            c_r[i] = st.at(sv.c) + row(t, r) * c_ld * sizeof(T);
            dh_r[i] = P > 0 ? ws.at<T>(po.dh_save) + row(t, r) * h_ld : nullptr;
            hpre_r[i] = P > 0 ? ws.at<T>(po.hpre) + row(t, r) * c_ld : nullptr;
          }
        }
        GradTask& g = gt[d];
        g = GradTask();
        g.M = static_cast<int>(M);
        g.I = width;
        g.H = H;
        g.P = P;
        g.peephole = st.shape.peephole;
        g.dz_rows = dz_r;
        g.x_rows = x_r;
        g.hprev_rows = hp_r;
        g.cprev_rows = cp_r;
        g.c_rows = c_r;
        g.dh_rows = dh_r;
        g.hpre_rows = hpre_r;
        g.gw_ih_t = ws.at<void>(po.gw_ih);
        g.gw_hh_t = ws.at<void>(po.gw_hh);
        g.gb = ws.at<void>(po.gb);
        g.gp = ws.at<void>(po.gp);
        g.gw_hr_t = ws.at<void>(po.gw_hr);
        g.h_ld = h_ld;
        g.c_ld = c_ld;
        g.work = gwork.data();
      }
      // The layer input's gradient: the user's dx, or the upstream gradient of layer k - 1 (times its mask).
      void** dx_r = ws.at<void*>(plan.dx_ptr);
      const void** mk_r = ws.at<const void*>(plan.dx_ptr) + M;
      const bool masked = k > 0 && a.masks && a.masks[k - 1];
      std::size_t i = 0;
      for (int t = 0; t < steps; ++t) {
        for (int r = 0; r < order.alive(t); ++r, ++i) {
          const int ur = order.user_row(r);
          if (k == 0) {
            dx_r[i] = static_cast<T*>(a.dx) + t * a.dx_st + static_cast<std::int64_t>(ur) * a.dx_sb;
          } else {
            dx_r[i] = ws.at<T>(plan.upstream[(k - 1) & 1]) + row(t, r) * width;
          }
          if (masked)
            mk_r[i] = static_cast<const T*>(a.masks[k - 1]) + (static_cast<std::int64_t>(t) * st.B + ur) * width;
        }
      }
      dxt = DxTask();
      dxt.M = static_cast<int>(M);
      dxt.I = width;
      dxt.D = D;
      dxt.K = G * c_ld;
      for (int d = 0; d < D; ++d) {
        dxt.dz_rows[d] = ws.at<const void*>(plan.dir[d].ptr);
        dxt.w_ih_t[d] = m.at(m.layers[k * D + d].w_ih_t);
      }
      dxt.dx_rows = dx_r;
      dxt.mask_rows = masked ? mk_r : nullptr;
      dxt.k_slice = k_slice(width, n, D);  // rows in chunks whose slice of dz takes another quarter of L2
      dxt.m_slice = dxt.k_slice > 0
                        ? static_cast<int>(std::max<std::size_t>(
                              l2_cache_bytes() / 4 / (static_cast<std::size_t>(dxt.k_slice) * sizeof(T)), 16))
                        : 0;

      layer = k;
      for (int d = 0; d < D; ++d) {
        dh_end[d] = ws.at<T>(plan.dir[d].dh);
        dc_end[d] = ws.at<T>(plan.dir[d].dc);
      }
      lease.run(&BackCall::team_main, this);
    }
  }

  // dst[gate * H + j][c] = src[c][packed row of (gate, j)] for c < width, for items [i0, i1) of the
  // (gate, unit block) pairs: a packed, transposed weight gradient [width][G * c_ld] back to torch's
  // (G*H, width). Source rows are G * c_ld apart (a power of two times 16 bytes: straight column reads would
  // fight over a few cache sets), so it goes through tiles of one unit block by 64 columns, read and written a
  // cache line at a time.
  void unpack_transposed(const T* src, int width, T* dst, int i0, int i1) const {
    constexpr int kCols = 64;
    const int U = m.units, G = m.gates, blocks = (H + U - 1) / U;
    T tile[kCols][64];  // [column][unit]; U <= 64
    for (int i = i0; i < i1; ++i) {
      const int gate = i / blocks, j0 = (i % blocks) * U, count = std::min(U, H - j0);
      const T* s = src + static_cast<std::int64_t>((j0 / U) * G + gate) * U;
      for (int c0 = 0; c0 < width; c0 += kCols) {
        const int cw = std::min(kCols, width - c0);
        for (int c = 0; c < cw; ++c)
          std::memcpy(tile[c], s + static_cast<std::int64_t>(c0 + c) * G * c_ld, sizeof(T) * count);
        for (int u = 0; u < count; ++u) {
          T* row = dst + static_cast<std::int64_t>(gate * H + j0 + u) * width + c0;
          for (int c = 0; c < cw; ++c) row[c] = tile[c][u];
        }
      }
    }
  }

  // Member tid's share of direction d's results in the user's layouts: the two large transposed gradients
  // split by (gate, unit block); dh0, dc0, biases, peepholes and W_hr by the last member.
  void unpack(int d, int tid, int n) {
    const int ld = layer * D + d, U = m.units, G = m.gates, width = st.shape.layer_input(layer);
    const GradTask& g = gt[d];
    const GradPointers& out = a.grads[ld];
    int i0, i1;
    split_range(G * ((H + U - 1) / U), tid, n, &i0, &i1);
    unpack_transposed(static_cast<const T*>(g.gw_ih_t), width, static_cast<T*>(out.w_ih), i0, i1);
    unpack_transposed(static_cast<const T*>(g.gw_hh_t), Hout, static_cast<T*>(out.w_hh), i0, i1);
    if (tid != n - 1) return;
    for (int r = 0; r < B; ++r) {
      const std::size_t dst = static_cast<std::size_t>(ld) * B + order.user_row(r);
      std::memcpy(static_cast<T*>(a.dh0) + dst * Hout, dh_end[d] + r * h_ld, sizeof(T) * Hout);
      std::memcpy(static_cast<T*>(a.dc0) + dst * H, dc_end[d] + r * c_ld, sizeof(T) * H);
    }
    const T* gb = static_cast<const T*>(g.gb);
    for (int gate = 0; gate < G; ++gate) {
      for (int j = 0; j < H; ++j) {
        const std::int64_t pr = static_cast<std::int64_t>((j / U) * G + gate) * U + j % U, ur = gate * H + j;
        if (out.b_ih) static_cast<T*>(out.b_ih)[ur] = gb[pr];
        if (out.b_hh) static_cast<T*>(out.b_hh)[ur] = gb[pr];
      }
    }
    if (st.shape.peephole) {
      void* dst[3] = {out.p_i, out.p_f, out.p_o};
      for (int gi = 0; gi < 3; ++gi) std::memcpy(dst[gi], static_cast<const T*>(g.gp) + gi * c_ld, sizeof(T) * H);
    }
    if (P > 0) {
      const T* gw_hr = static_cast<const T*>(g.gw_hr_t);
      for (int p = 0; p < P; ++p)
        for (int j = 0; j < H; ++j) static_cast<T*>(out.w_hr)[p * H + j] = gw_hr[j * h_ld + p];
    }
  }
};

}  // namespace

void run_backward(const PackedModel& m, const TrainState& st, const BackwardArgs& args) {
  require(m.training, "weights: not packed for training");
  require(m.family == st.family, "state: made by another engine than the weights'");
  require(m.shape.num_layers == st.shape.num_layers && m.shape.hidden_size == st.shape.hidden_size &&
              m.shape.input_size == st.shape.input_size && m.shape.proj_size == st.shape.proj_size &&
              m.shape.bidirectional == st.shape.bidirectional && m.shape.peephole == st.shape.peephole,
          "state: made for weights of another shape");
  require(args.dy && args.dx && args.dh0 && args.dc0 && args.grads, "dy, dx, dh0, dc0, grads: null pointer");
  require(args.num_threads >= 1, "num_threads: must be >= 1");
  if (m.family->compute == DType::kF32) {
    BackCall<float>(m, st, args).run();
  } else if (m.family->compute == DType::kF64) {
    BackCall<double>(m, st, args).run();
  } else {
    throw std::invalid_argument(std::string("compute type ") + dtype_name(m.family->compute) + ": no backward driver");
  }
}

std::size_t backward_workspace_bytes(const Geometry& g, int steps, int B, int nthreads) {
  const int U = g.family->units;
  const auto h_ld = static_cast<std::int64_t>(round_up(g.shape.out_size(), U));
  const auto c_ld = static_cast<std::int64_t>(round_up(g.shape.hidden_size, U));
  const std::size_t M = mul_sz(steps, B);
  return BackwardPlan(g, steps, B, M, nthreads, h_ld, c_ld, dtype_size(g.family->compute)).total;
}

}  // namespace fastlstm::cpu
