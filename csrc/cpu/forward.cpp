// The forward driver: checks a call's arguments, orders rows by length, plans and carves the workspace, and
// runs layers and directions on the thread team (inference, and the training forward that keeps what
// backward needs).
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

// W_hh panel bytes the row tiles of a step pass over before moving on to the next blocks: small enough to stay
// in L2 under the G rows and h, large enough to keep each pass long. Measured on Zen 5 (1 MB L2), one run
// each, times of 0 (all of a thread's blocks per row tile) / 128 KiB / 64 KiB: b16-h512 14.6 / 14.3 / 14.0 ms,
// b64-h512 76.5 / 72.3 / 70.9 ms, b256-h1024 629 / 600 / 627 ms, bf16 b16-h512 8.1 / 7.6 / 7.5 ms; b16-h256
// and B = 1 unchanged. The order of tiles changes no result.
constexpr std::int64_t kStepGroupBytes = 128 << 10;

// The forward's workspace, planned from the call's geometry before anything is allocated: the state of
// every layer and direction, the layer outputs between layers (inference; training keeps them in the saved
// state), the tasks, and one kernel workspace per thread.
struct ForwardPlan {
  int chunk = 1;                    // steps per input-projection chunk
  std::int64_t h_ld = 0, c_ld = 0;  // row strides of h and c: Hout and H rounded up to the vector
  std::size_t state_bytes = 0;      // one layer-direction's h[2], c, hpre
  std::size_t o_tasks = 0, o_state = 0, o_inter[2] = {0, 0}, o_work = 0, work_stride = 0;
  std::size_t total = 0;

  ForwardPlan(const Geometry& g, int steps_max, int B, const TeamSplit& team, bool train, std::size_t elem) {
    const ModelShape& s = g.shape;
    const int U = g.family->units, G = g.family->cells[static_cast<int>(g.cell)].gates;
    const int L = s.num_layers, D = s.directions(), H = s.hidden_size, P = s.proj_size, Hout = s.out_size();
    h_ld = static_cast<std::int64_t>(round_up(Hout, U));
    c_ld = static_cast<std::int64_t>(round_up(H, U));
    const std::size_t hb = mul_sz(mul_sz(B, h_ld), elem), cb = mul_sz(mul_sz(B, c_ld), elem);
    state_bytes = add_sz(add_sz(2 * hb, cb), P > 0 ? cb : 0);

    // Steps per input-projection chunk: one thread's G and x rows of a chunk stay within half of its L2 (tuned
    // at 512 KB on 1 MiB L2s; the chunk length changes no result).
    const int nb = (H + U - 1) / U;
    const int max_blocks = (nb + team.smallest_group() - 1) / team.smallest_group();
    const std::size_t row_bytes = (static_cast<std::size_t>(max_blocks) * G * U + s.input_size) * elem;
    const std::size_t per_step = std::max<std::size_t>(1, mul_sz(B, row_bytes));
    chunk =
        static_cast<int>(std::min<std::size_t>(steps_max, std::max<std::size_t>(1, l2_cache_bytes() / 2 / per_step)));
    chunk = std::max(1, std::min(chunk, 64));

    Layout layout;
    o_tasks = layout.reserve(mul_sz(static_cast<std::size_t>(L) * D, sizeof(DirTask)));
    o_state = layout.reserve(mul_sz(static_cast<std::size_t>(L) * D, round_up(state_bytes, 64)));
    const std::size_t inter_bytes = mul_sz(mul_sz(mul_sz(steps_max, B), D * Hout), elem);
    if (!train)
      for (int i = 0; i < std::min(L - 1, 2); ++i) o_inter[i] = layout.reserve(inter_bytes);
    // The kernel's workspace (the family sizes it: G [blocks][chunk * B][G * U], row pointers, operands).
    const CellKernels& kernels = g.family->cells[static_cast<int>(g.cell)];
    mul_sz(mul_sz(mul_sz(mul_sz(chunk, B), max_blocks), static_cast<std::size_t>(G) * U), elem);  // overflow check
    const int widest_input = L > 1 ? std::max(s.input_size, D * Hout) : s.input_size;
    work_stride = round_up(kernels.direction_workspace(chunk, B, max_blocks, widest_input, Hout), 64);
    o_work = layout.reserve(mul_sz(work_stride, team.size));
    total = layout.total();
  }
};

// The saved state's layout (training): per layer its input, per layer and direction the gates, c and the
// initial state, for `steps` steps of B rows.
struct SavedPlan {
  std::vector<std::size_t> inputs;
  std::vector<TrainState::Saved> saved;
  struct Piece {
    std::size_t offset, row_bytes;  // per-step pieces: [steps][B] rows of row_bytes; others: one row of B rows
    bool per_step;
  };
  std::vector<Piece> pieces;  // in address order
  std::size_t total = 0;

  SavedPlan(const Geometry& g, int steps, int B, std::int64_t h_ld, std::int64_t c_ld, std::size_t elem) {
    const ModelShape& s = g.shape;
    const int G = g.family->cells[static_cast<int>(g.cell)].gates, L = s.num_layers, D = s.directions();
    Layout layout;
    const std::size_t rows = mul_sz(steps, B);
    auto per_step = [&](std::size_t row_bytes) {
      pieces.push_back({layout.reserve(mul_sz(rows, row_bytes)), row_bytes, true});
      return pieces.back().offset;
    };
    auto per_call = [&](std::size_t row_bytes) {
      pieces.push_back({layout.reserve(mul_sz(B, row_bytes)), mul_sz(B, row_bytes), false});
      return pieces.back().offset;
    };
    for (int k = 0; k < L; ++k) inputs.push_back(per_step(mul_sz(s.layer_input(k), elem)));
    for (int i = 0; i < L * D; ++i) {
      TrainState::Saved p;
      p.gates = per_step(mul_sz(G * c_ld, elem));
      p.c = per_step(mul_sz(c_ld, elem));
      p.h0 = per_call(mul_sz(h_ld, elem));
      p.c0 = per_call(mul_sz(c_ld, elem));
      saved.push_back(p);
    }
    total = layout.total();
  }

  // Zeroes what a training forward leaves unwritten in `bytes` at base: the alignment gaps, the tail, and
  // the rows past each length. A caller's buffer then holds a function of the call's inputs only (a framework
  // may compare two runs' buffers, as torch's opcheck does).
  void zero_unwritten(char* base, std::size_t bytes, const RowOrder& order) const {
    std::size_t at = 0;
    for (const Piece& p : pieces) {
      std::memset(base + at, 0, p.offset - at);
      const std::size_t size = p.per_step ? mul_sz(mul_sz(order.steps, order.B), p.row_bytes) : p.row_bytes;
      if (p.per_step && order.has_lengths()) {
        for (int t = 0; t < order.steps; ++t) {
          const std::size_t live = static_cast<std::size_t>(order.alive(t));
          const std::size_t row0 = static_cast<std::size_t>(t) * order.B;
          std::memset(base + p.offset + (row0 + live) * p.row_bytes, 0, (order.B - live) * p.row_bytes);
        }
      }
      at = p.offset + size;
    }
    std::memset(base + at, 0, bytes - at);
  }
};

// One forward call on T = float or double.
template <class T>
struct Call {
  const ForwardArgs& a;
  const PackedModel& m;
  const CellKernels& kernels;
  int L, D, H, P, Hout, B, T_;
  RowOrder order;
  TeamSplit team;
  DirTask* tasks = nullptr;  // [L * D]
  char* work = nullptr;      // per thread, plan.work_stride apart
  std::size_t work_stride = 0;
  TrainState* save = nullptr;          // training forward: where the saved state goes
  const void* const* masks = nullptr;  // training forward: dropout masks per layer (or null)
  void* save_buffer = nullptr;         // training forward: the caller's memory for it (or null: its own)
  std::size_t save_bytes = 0;

  Call(const PackedModel& model, const ForwardArgs& args)
      : a(args),
        m(model),
        kernels(model.kernels()),
        L(m.shape.num_layers),
        D(m.shape.directions()),
        H(m.shape.hidden_size),
        P(m.shape.proj_size),
        Hout(m.shape.out_size()),
        B(args.B),
        T_(args.T) {}

  void run() {
    order.build(T_, B, a.lengths);
    TeamLease lease(a.num_threads);
    team.reset(D, lease.form(team_work(forward_flops(m.shape, order.work_rows()), m.family->weights)));
    const Geometry geo{m.family, m.cell, m.shape};
    const ForwardPlan plan(geo, order.steps, B, team, save != nullptr, sizeof(T));
    // Before anything is written: the outputs (allocated, untouched), the workspace and the saved state.
    std::size_t need = add_sz(output_bytes(m.shape, T_, B, sizeof(T), false), plan.total);
    if (save) need = add_sz(need, saved_state_bytes(geo, order.steps, B));
    check_available_memory(need, "x");
    Workspace ws(plan.total);
    setup(plan, ws);
    lease.run(&Call::team_main, this);
    store_final_state();
  }

  void setup(const ForwardPlan& plan, const Workspace& ws) {
    const std::int64_t h_ld = plan.h_ld, c_ld = plan.c_ld;
    // This call starts its weight passes where the last one ended them, and leaves the next the other end.
    const bool first_down = m.next_down.load(std::memory_order_relaxed);
    m.next_down.store(first_down != ((order.steps & 1) != 0), std::memory_order_relaxed);
    const std::size_t hb = mul_sz(mul_sz(B, h_ld), sizeof(T)), cb = mul_sz(mul_sz(B, c_ld), sizeof(T));
    tasks = ws.at<DirTask>(plan.o_tasks);
    work = ws.at<char>(plan.o_work);
    work_stride = plan.work_stride;
    const std::int32_t* rows = order.rows();
    if (save) layout_saved();
    // Layer k's input: the user's x (layer 0 of inference), else a buffer in sorted row order.
    auto input_of = [&](int k) -> void* {
      return save ? static_cast<void*>(save->at(save->inputs[k])) : ws.at<void>(plan.o_inter[(k - 1) & 1]);
    };
    for (int k = 0; k < L; ++k) {
      for (int d = 0; d < D; ++d) {
        char* base = ws.at<char>(plan.o_state + static_cast<std::size_t>(k * D + d) * round_up(plan.state_bytes, 64));
        std::memset(base, 0, plan.state_bytes);
        DirTask& tk = *new (&tasks[k * D + d]) DirTask();
        tk.steps = order.steps;
        tk.B = B;
        tk.I = m.shape.layer_input(k);
        tk.H = H;
        tk.P = P;
        tk.reverse = d == 1;
        tk.peephole = m.shape.peephole;
        tk.active = order.active_rows();
        const PackedModel::Offsets& o = m.layers[k * D + d];
        tk.w_ih = m.at(o.w_ih);
        tk.w_hh = m.at(o.w_hh);
        tk.bias = m.at(o.bias);
        tk.peep = m.at(o.peep);
        tk.w_hr = m.at(o.w_hr);
        tk.h[0] = base;
        tk.h[1] = base + hb;
        tk.c = base + 2 * hb;
        tk.hpre = P > 0 ? base + 2 * hb + cb : nullptr;
        tk.h_ld = h_ld;
        tk.c_ld = c_ld;
        tk.chunk = plan.chunk;
        tk.group_bytes = kStepGroupBytes;
        tk.first_down = first_down;
        tk.barrier = team.barrier_of(d);
        load_state(k * D + d, tk, h_ld, c_ld);
        // Layer inputs and outputs: the user's x and y at the ends, sorted-row buffers in between.
        const std::int64_t inter_st = static_cast<std::int64_t>(B) * D * Hout;
        if (k == 0 && !save) {
          tk.x = a.x;
          tk.x_st = a.x_st;
          tk.x_sb = a.x_sb;
          tk.x_rows = rows;
        } else {
          const int width = m.shape.layer_input(k);
          tk.x = input_of(k);
          tk.x_st = static_cast<std::int64_t>(B) * width;
          tk.x_sb = width;
          tk.x_rows = nullptr;
        }
        if (k == L - 1) {
          tk.y = static_cast<T*>(a.y) + d * Hout;
          tk.y_st = a.y_st;
          tk.y_sb = a.y_sb;
          tk.y_rows = rows;
        } else {
          tk.y = static_cast<T*>(input_of(k + 1)) + d * Hout;
          tk.y_st = inter_st;
          tk.y_sb = D * Hout;
          tk.y_rows = nullptr;
        }
        if (save) {
          const TrainState::Saved& sv = save->saved[k * D + d];
          tk.save_gates = save->at(sv.gates);
          tk.save_c = save->at(sv.c);
          std::memcpy(save->at(sv.h0), tk.h[0], hb);
          std::memcpy(save->at(sv.c0), tk.c, cb);
          if (masks && k < L - 1 && masks[k]) {
            tk.mask = static_cast<const T*>(masks[k]) + d * Hout;
            tk.m_st = inter_st;
            tk.m_sb = D * Hout;
            tk.m_rows = rows;
          }
        }
      }
    }
    zero_padding();
  }

  // The saved state's layout, and layer 0's input copied in sorted row order (the caller may change x).
  void layout_saved() {
    TrainState& sv = *save;
    layout_train_state(sv, m, order, save_buffer, save_bytes, /*for_writing=*/true);
    const int I = m.shape.input_size;
    T* x0 = reinterpret_cast<T*>(sv.at(sv.inputs[0]));
    for (int t = 0; t < order.steps; ++t) {
      for (int r = 0, n = order.alive(t); r < n; ++r)
        std::memcpy(x0 + (static_cast<std::int64_t>(t) * B + r) * I,
                    static_cast<const T*>(a.x) + t * a.x_st + static_cast<std::int64_t>(order.user_row(r)) * a.x_sb,
                    sizeof(T) * I);
    }
  }

  // h0/c0 (or zeros) into both state buffers and c, in sorted row order.
  void load_state(int ld, DirTask& tk, std::int64_t h_ld, std::int64_t c_ld) {
    for (int r = 0; r < B; ++r) {
      const std::size_t src = static_cast<std::size_t>(ld) * B + order.user_row(r);
      if (a.h0) {
        const T* h0 = static_cast<const T*>(a.h0) + src * Hout;
        std::memcpy(static_cast<T*>(tk.h[0]) + r * h_ld, h0, sizeof(T) * Hout);
        std::memcpy(static_cast<T*>(tk.h[1]) + r * h_ld, h0, sizeof(T) * Hout);
      }
      if (a.c0) std::memcpy(static_cast<T*>(tk.c) + r * c_ld, static_cast<const T*>(a.c0) + src * H, sizeof(T) * H);
    }
  }

  // y = 0 where a sequence has ended: the kernels write only the steps that exist.
  void zero_padding() {
    for (int b = 0; b < B; ++b)
      for (std::int64_t t = order.length_of_user(b); t < T_; ++t)
        std::memset(static_cast<T*>(a.y) + t * a.y_st + b * a.y_sb, 0, sizeof(T) * D * Hout);
  }

  static void team_main(void* ctx, int tid, int n) { static_cast<Call*>(ctx)->member(tid, n); }

  void member(int tid, int) {
    const int g = team.group_of(tid), gtid = team.group_tid(tid), gsize = team.group_size(g);
    void* ws = work + static_cast<std::size_t>(tid) * work_stride;
    for (int k = 0; k < L; ++k) {
      if (team.groups == 2) {
        kernels.run_direction(tasks[k * D + g], gtid, gsize, ws);
      } else {
        for (int d = 0; d < D; ++d) kernels.run_direction(tasks[k * D + d], gtid, gsize, ws);
      }
      // The next layer reads both directions' outputs. (A direction ends without a barrier of its own: its
      // threads leave its last step unsynchronised, and the directions of one group share no memory.)
      if (k + 1 < L) team.team.wait();
    }
  }

  void store_final_state() {
    for (int k = 0; k < L; ++k) {
      for (int d = 0; d < D; ++d) {
        const DirTask& tk = tasks[k * D + d];
        for (int r = 0; r < B; ++r) {
          // Forward: the last step of row r is s = len-1, which wrote h[len & 1]; reverse: all rows end at s = steps-1.
          const std::int64_t last = d == 0 ? order.length_of_sorted(r) : order.steps;
          const std::size_t dst = static_cast<std::size_t>(k * D + d) * B + order.user_row(r);
          std::memcpy(static_cast<T*>(a.h_n) + dst * Hout, static_cast<const T*>(tk.h[last & 1]) + r * tk.h_ld,
                      sizeof(T) * Hout);
          std::memcpy(static_cast<T*>(a.c_n) + dst * H, static_cast<const T*>(tk.c) + r * tk.c_ld, sizeof(T) * H);
        }
      }
    }
  }
};

}  // namespace

void check_lengths(const std::int64_t* lengths, int T, int B) {
  if (!lengths) return;
  for (int b = 0; b < B; ++b)
    require(lengths[b] >= 1 && lengths[b] <= T, "lengths: every length must be in [1, T = " + std::to_string(T) +
                                                    "]; lengths[" + std::to_string(b) +
                                                    "] = " + std::to_string(lengths[b]));
}

void layout_train_state(TrainState& st, const PackedModel& m, const RowOrder& order, void* buffer, std::size_t bytes,
                        bool for_writing) {
  const int U = m.units;
  const auto h_ld = static_cast<std::int64_t>(round_up(m.shape.out_size(), U));
  const auto c_ld = static_cast<std::int64_t>(round_up(m.shape.hidden_size, U));
  const SavedPlan plan(Geometry{m.family, m.cell, m.shape}, order.steps, order.B, h_ld, c_ld,
                       dtype_size(m.family->compute));
  st.shape = m.shape;
  st.T = order.T;
  st.B = order.B;
  st.owner = m.family;
  st.family = m.family;
  st.order = order;
  st.h_ld = h_ld;
  st.c_ld = c_ld;
  st.inputs = plan.inputs;
  st.saved = plan.saved;
  if (buffer) {
    require(bytes >= plan.total,
            "saved: expected at least " + std::to_string(plan.total) + " bytes, got " + std::to_string(bytes));
    require(reinterpret_cast<std::uintptr_t>(buffer) % 64 == 0, "saved: expected a 64-byte aligned buffer");
    st.base = static_cast<char*>(buffer);
    st.nbytes = bytes;
    if (for_writing) plan.zero_unwritten(st.base, bytes, order);
  } else {
    st.own = AlignedBuffer(plan.total, /*zero=*/false);  // every element read is written first
    st.base = static_cast<char*>(st.own.data());
    st.nbytes = plan.total;
  }
}

namespace {

void check_args(const PackedModel& m, const ForwardArgs& a) {
  require(a.T >= 1, "x: the sequence length T must be >= 1");
  require(a.B >= 1, "x: the batch size B must be >= 1");
  require(a.x && a.y && a.h_n && a.c_n, "x, y, h_n, c_n: null pointer");
  require(a.num_threads >= 1, "num_threads: must be >= 1");
  require(m.shape.num_layers >= 1 && m.shape.hidden_size >= 1 && m.shape.input_size >= 1, "weights: empty shape");
  check_lengths(a.lengths, a.T, a.B);
}

template <class F>
void by_type(const KernelFamily& f, F fn) {
  if (f.compute == DType::kF32)
    fn(float{});
  else if (f.compute == DType::kF64)
    fn(double{});
  else
    throw std::invalid_argument(std::string("compute type ") + dtype_name(f.compute) + ": no forward driver");
}

}  // namespace

void run_forward(const PackedModel& m, const ForwardArgs& args) {
  check_args(m, args);
  by_type(*m.family, [&](auto t) { Call<decltype(t)>(m, args).run(); });
}

std::unique_ptr<TrainState> run_forward_train(const PackedModel& m, const ForwardArgs& args, const void* const* masks,
                                              void* saved, std::size_t saved_bytes) {
  check_args(m, args);
  require(m.training, "weights: not packed for training");
  require(m.kernels().run_backward != nullptr, "precision: this engine runs inference only (train=True)");
  auto state = std::make_unique<TrainState>();
  by_type(*m.family, [&](auto t) {
    Call<decltype(t)> call(m, args);
    call.save = state.get();
    call.masks = masks;
    call.save_buffer = saved;
    call.save_bytes = saved_bytes;
    call.run();
  });
  return state;
}

std::size_t forward_workspace_bytes(const Geometry& g, int steps, int B, int nthreads, bool train) {
  TeamSplit team;
  team.reset(g.shape.directions(), nthreads);
  return ForwardPlan(g, steps, B, team, train, dtype_size(g.family->compute)).total;
}

std::size_t output_bytes(const ModelShape& s, int T, int B, std::size_t elem, bool train) {
  const std::size_t D = s.directions(), L = s.num_layers, TB = mul_sz(T, B);
  std::size_t out = add_sz(mul_sz(TB, D * s.out_size()), mul_sz(mul_sz(D * L, B), s.out_size() + s.hidden_size));
  if (train) {  // dx, dh0, dc0 and the parameter gradients
    const std::size_t H = s.hidden_size;
    std::size_t params = 0;
    for (int k = 0; k < s.num_layers; ++k)
      params += 4 * H * (s.layer_input(k) + s.out_size() + 2) + 3 * H + static_cast<std::size_t>(s.proj_size) * H;
    out = add_sz(out, add_sz(mul_sz(TB, s.input_size),
                             add_sz(mul_sz(mul_sz(D * L, B), s.out_size() + s.hidden_size), mul_sz(params, D))));
  }
  return mul_sz(out, elem);
}

std::size_t saved_state_bytes(const Geometry& g, int steps, int B) {
  const std::size_t elem = dtype_size(g.family->compute);
  const int U = g.family->units;
  const auto h_ld = static_cast<std::int64_t>(round_up(g.shape.out_size(), U));
  const auto c_ld = static_cast<std::int64_t>(round_up(g.shape.hidden_size, U));
  return SavedPlan(g, steps, B, h_ld, c_ld, elem).total;
}

}  // namespace fastlstm::cpu
