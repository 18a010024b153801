// The sequence driver: packs weights for a kernel family, checks a call's arguments, orders rows by
// length, lays out the workspace and runs layers and directions on the thread team.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <numeric>
#include <string>
#include <vector>

#include "engine.h"
#include "fastlstm/lstm.h"
#include "threads.h"

namespace fastlstm::cpu {

// ---- memory --------------------------------------------------------------------------------------
AlignedBuffer::AlignedBuffer(std::size_t bytes) : n_(bytes) {
  if (bytes == 0) return;
  const std::size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded < bytes) throw std::bad_alloc();
  p_ = std::aligned_alloc(64, rounded);
  if (!p_) throw std::bad_alloc();
  std::memset(p_, 0, rounded);
}
AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    std::free(p_);
    p_ = o.p_;
    n_ = o.n_;
    o.p_ = nullptr;
    o.n_ = 0;
  }
  return *this;
}
AlignedBuffer::~AlignedBuffer() { std::free(p_); }

namespace {

// Size arithmetic that cannot overflow silently: any product past SIZE_MAX becomes bad_alloc
// (the bindings turn it into MemoryError), never a small wrapped size.
std::size_t mul_sz(std::size_t a, std::size_t b) {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) throw std::bad_alloc();
  return a * b;
}
std::size_t add_sz(std::size_t a, std::size_t b) {
  if (b > std::numeric_limits<std::size_t>::max() - a) throw std::bad_alloc();
  return a + b;
}
std::size_t round_up(std::size_t n, std::size_t m) { return (n + m - 1) / m * m; }

const KernelTable& table_for(Isa isa) {
  switch (isa) {
#if defined(FASTLSTM_HAVE_AVX512)
    case Isa::kAvx512: return kernels_avx512();
#endif
#if defined(FASTLSTM_HAVE_AVX2)
    case Isa::kAvx2: return kernels_avx2();
#endif
    default: return kernels_scalar();
  }
}

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

// [4H, K] row-major -> [NB][K][4][U], units past H zero.
template <class T>
void pack_gates(const T* w, int H, int K, int U, T* out) {
  const int nb = (H + U - 1) / U;
  for (int b = 0; b < nb; ++b)
    for (int k = 0; k < K; ++k)
      for (int g = 0; g < 4; ++g)
        for (int u = 0; u < U; ++u) {
          const int unit = b * U + u;
          out[((static_cast<std::size_t>(b) * K + k) * 4 + g) * U + u] =
              unit < H ? w[static_cast<std::size_t>(g * H + unit) * K + k] : T(0);
        }
}

// [P, H] row-major -> [ceil(P/U)][H][U].
template <class T>
void pack_rows(const T* w, int P, int H, int U, T* out) {
  const int pb = (P + U - 1) / U;
  for (int b = 0; b < pb; ++b)
    for (int k = 0; k < H; ++k)
      for (int u = 0; u < U; ++u) {
        const int row = b * U + u;
        out[(static_cast<std::size_t>(b) * H + k) * U + u] = row < P ? w[static_cast<std::size_t>(row) * H + k] : T(0);
      }
}

template <class T>
void pack_all(PackedModel& m, const RawLayer* layers) {
  const ModelShape& s = m.shape;
  const int U = m.units, H = s.hidden_size, P = s.proj_size, D = s.directions();
  const std::size_t hp = round_up(H, U), pp = round_up(P, U);
  std::size_t total = 0;
  m.layers.resize(static_cast<std::size_t>(s.num_layers) * D);
  for (int k = 0; k < s.num_layers; ++k) {
    for (int d = 0; d < D; ++d) {
      PackedModel::Offsets& o = m.layers[k * D + d];
      o.w_ih = total;
      total = add_sz(total, mul_sz(mul_sz(hp, 4), s.layer_input(k)));
      o.w_hh = total;
      total = add_sz(total, mul_sz(mul_sz(hp, 4), s.out_size()));
      o.bias = total;
      total = add_sz(total, 4 * hp);
      o.peep = total;
      total = add_sz(total, 3 * hp);
      o.w_hr = total;
      total = add_sz(total, mul_sz(pp, H));
      total = round_up(total, 16);  // keep every panel 64-byte aligned
    }
  }
  m.packed_bytes = mul_sz(total, sizeof(T));
  m.data = AlignedBuffer(m.packed_bytes);
  T* base = static_cast<T*>(m.data.data());
  for (int k = 0; k < s.num_layers; ++k) {
    for (int d = 0; d < D; ++d) {
      const RawLayer& raw = layers[k * D + d];
      const PackedModel::Offsets& o = m.layers[k * D + d];
      pack_gates(static_cast<const T*>(raw.w_ih), H, s.layer_input(k), U, base + o.w_ih);
      pack_gates(static_cast<const T*>(raw.w_hh), H, s.out_size(), U, base + o.w_hh);
      T* bias = base + o.bias;  // [NB][4][U]
      if (s.bias) {
        const T* bi = static_cast<const T*>(raw.b_ih);
        const T* bh = static_cast<const T*>(raw.b_hh);
        for (int g = 0; g < 4; ++g)
          for (int j = 0; j < H; ++j) bias[((j / U) * 4 + g) * U + j % U] = bi[g * H + j] + bh[g * H + j];
      }
      if (s.peephole) {
        const T* src[3] = {static_cast<const T*>(raw.p_i), static_cast<const T*>(raw.p_f),
                           static_cast<const T*>(raw.p_o)};
        for (int g = 0; g < 3; ++g) std::memcpy(base + o.peep + g * hp, src[g], sizeof(T) * H);
      }
      if (P > 0) pack_rows(static_cast<const T*>(raw.w_hr), P, H, U, base + o.w_hr);
    }
  }
}

int env_threads() {
  const char* s = std::getenv("FASTLSTM_NUM_THREADS");
  if (s && *s) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (end && *end == '\0' && v >= 1 && v <= 1024) return static_cast<int>(v);
  }
  return hardware_threads();
}
std::atomic<int> g_default_threads{0};

// ---- one call --------------------------------------------------------------------------------------
template <class T>
struct Call {
  const ForwardArgs& a;
  const PackedModel& m;
  const KernelTable& kt;
  int L, D, H, P, Hout, B, T_, steps = 0;
  std::vector<std::int32_t> perm, active;  // sorted row -> user row; rows alive per t
  bool sorted_lengths = false;
  std::int64_t h_ld = 0, c_ld = 0;
  std::vector<AlignedBuffer> state;  // per layer-direction: h[2], c, hpre
  AlignedBuffer inter[2];            // layer outputs between layers [steps][B][D*Hout], sorted rows
  std::vector<AlignedBuffer> work;   // per thread
  std::vector<DirTask> tasks;        // [k * D + d]
  Barrier team_barrier, group_barrier[2];
  int groups = 1;

  Call(const ForwardArgs& args, const KernelTable& table)
      : a(args), m(*args.model), kt(table), L(m.shape.num_layers), D(m.shape.directions()),
        H(m.shape.hidden_size), P(m.shape.proj_size), Hout(m.shape.out_size()), B(args.B), T_(args.T) {}

  void order_rows() {
    steps = T_;
    if (!a.lengths) return;
    perm.resize(B);
    std::iota(perm.begin(), perm.end(), 0);
    std::stable_sort(perm.begin(), perm.end(), [&](int x, int y) { return a.lengths[x] > a.lengths[y]; });
    steps = static_cast<int>(a.lengths[perm[0]]);
    active.assign(T_, 0);
    for (int r = 0; r < B; ++r)
      for (int t = 0, n = static_cast<int>(a.lengths[perm[r]]); t < n; ++t) active[t] = r + 1;
    sorted_lengths = true;
  }

  std::int64_t len_of_sorted(int r) const { return a.lengths ? a.lengths[perm[r]] : T_; }
  int user_row(int r) const { return a.lengths ? perm[r] : r; }

  void setup(int nthreads) {
    const int U = kt.units[sizeof(T) == 8];
    h_ld = static_cast<std::int64_t>(round_up(Hout, U));
    c_ld = static_cast<std::int64_t>(round_up(H, U));
    const std::size_t hb = mul_sz(mul_sz(B, h_ld), sizeof(T)), cb = mul_sz(mul_sz(B, c_ld), sizeof(T));
    const std::size_t per_ld = add_sz(add_sz(2 * hb, cb), P > 0 ? cb : 0);
    groups = (D == 2 && nthreads >= 2) ? 2 : 1;
    const int group_size[2] = {groups == 2 ? nthreads / 2 : nthreads, nthreads - nthreads / 2};
    team_barrier.reset(nthreads);
    group_barrier[0].reset(group_size[0]);
    group_barrier[1].reset(group_size[1]);

    // Steps per input-projection chunk: the chunk's G and x rows of one thread stay within ~512 KB.
    const int nb = (H + U - 1) / U;
    const int min_group = groups == 2 ? group_size[1] : nthreads;
    const int max_blocks = (nb + min_group - 1) / min_group;
    const std::size_t row_bytes = (static_cast<std::size_t>(max_blocks) * 4 * U + m.shape.input_size) * sizeof(T);
    const std::size_t per_step = std::max<std::size_t>(1, mul_sz(B, row_bytes));
    int chunk = static_cast<int>(std::min<std::size_t>(steps, std::max<std::size_t>(1, (512u << 10) / per_step)));
    chunk = std::max(1, std::min(chunk, 64));

    state.reserve(static_cast<std::size_t>(L) * D);
    tasks.resize(static_cast<std::size_t>(L) * D);
    for (int k = 0; k < L; ++k) {
      for (int d = 0; d < D; ++d) {
        state.emplace_back(per_ld);
        char* base = static_cast<char*>(state.back().data());
        DirTask& tk = tasks[k * D + d];
        tk.steps = steps;
        tk.B = B;
        tk.I = m.shape.layer_input(k);
        tk.H = H;
        tk.P = P;
        tk.reverse = d == 1;
        tk.peephole = m.shape.peephole;
        tk.active = sorted_lengths ? active.data() : nullptr;
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
        tk.chunk = chunk;
        tk.barrier = &group_barrier[groups == 2 ? d : 0];
        load_state(k * D + d, tk);
      }
    }
    // Layer inputs and outputs: the user's x and y at the ends, sorted-row buffers in between.
    const std::size_t inter_elems = mul_sz(mul_sz(steps, B), D * Hout);
    for (int i = 0; i < std::min(L - 1, 2); ++i) inter[i] = AlignedBuffer(mul_sz(inter_elems, sizeof(T)));
    const std::int32_t* rows = sorted_lengths ? perm.data() : nullptr;
    for (int k = 0; k < L; ++k) {
      for (int d = 0; d < D; ++d) {
        DirTask& tk = tasks[k * D + d];
        if (k == 0) {
          tk.x = a.x; tk.x_st = a.x_st; tk.x_sb = a.x_sb; tk.x_rows = rows;
        } else {
          tk.x = inter[(k - 1) & 1].data(); tk.x_st = static_cast<std::int64_t>(B) * D * Hout; tk.x_sb = D * Hout;
          tk.x_rows = nullptr;
        }
        if (k == L - 1) {
          tk.y = static_cast<T*>(a.y) + d * Hout; tk.y_st = a.y_st; tk.y_sb = a.y_sb; tk.y_rows = rows;
        } else {
          tk.y = static_cast<T*>(inter[k & 1].data()) + d * Hout;
          tk.y_st = static_cast<std::int64_t>(B) * D * Hout; tk.y_sb = D * Hout; tk.y_rows = nullptr;
        }
      }
    }
    // Per-thread workspace, for the largest block share any thread gets.
    const std::size_t ws = direction_workspace_bytes(tasks[0], U, max_blocks, sizeof(T));
    for (int i = 0; i < nthreads; ++i) work.emplace_back(ws);
    zero_padding();
  }

  // h0/c0 (or zeros) into both state buffers and c, in sorted row order.
  void load_state(int ld, DirTask& tk) {
    for (int r = 0; r < B; ++r) {
      const std::size_t src = static_cast<std::size_t>(ld) * B + user_row(r);
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
    for (int b = 0; b < B; ++b) {
      const std::int64_t len = a.lengths ? a.lengths[b] : T_;
      for (std::int64_t t = len; t < T_; ++t)
        std::memset(static_cast<T*>(a.y) + t * a.y_st + b * a.y_sb, 0, sizeof(T) * D * Hout);
    }
  }

  static void team_main(void* ctx, int tid, int n) { static_cast<Call*>(ctx)->member(tid, n); }

  void member(int tid, int n) {
    const int g = groups == 2 ? (tid < n / 2 ? 0 : 1) : 0;
    const int gtid = g == 0 ? tid : tid - n / 2;
    const int gsize = groups == 2 ? (g == 0 ? n / 2 : n - n / 2) : n;
    auto run = kt.run_direction[sizeof(T) == 8];
    for (int k = 0; k < L; ++k) {
      if (groups == 2) {
        run(tasks[k * D + g], gtid, gsize, work[tid].data());
      } else {
        for (int d = 0; d < D; ++d) run(tasks[k * D + d], gtid, gsize, work[tid].data());
      }
      if (k + 1 < L) team_barrier.wait();  // the next layer reads both directions' outputs
    }
  }

  void store_final_state() {
    for (int k = 0; k < L; ++k) {
      for (int d = 0; d < D; ++d) {
        const DirTask& tk = tasks[k * D + d];
        for (int r = 0; r < B; ++r) {
          // Forward: the last step of row r is s = len-1, which wrote h[len & 1]; reverse: all rows end at s = steps-1.
          const std::int64_t last = d == 0 ? len_of_sorted(r) : steps;
          const std::size_t dst = static_cast<std::size_t>(k * D + d) * B + user_row(r);
          std::memcpy(static_cast<T*>(a.h_n) + dst * Hout, static_cast<const T*>(tk.h[last & 1]) + r * h_ld,
                      sizeof(T) * Hout);
          std::memcpy(static_cast<T*>(a.c_n) + dst * H, static_cast<const T*>(tk.c) + r * c_ld, sizeof(T) * H);
        }
      }
    }
  }

  void run(int requested_threads) {
    order_rows();
    TeamLease lease(requested_threads);
    setup(lease.size());
    lease.run(&Call::team_main, this);
    store_final_state();
  }
};

void check_args(const ForwardArgs& a) {
  require(a.model != nullptr, "model: not packed");
  const ModelShape& s = a.model->shape;
  require(a.T >= 1, "x: the sequence length T must be >= 1");
  require(a.B >= 1, "x: the batch size B must be >= 1");
  require(a.x && a.y && a.h_n && a.c_n, "x, y, h_n, c_n: null pointer");
  require(a.num_threads >= 1, "num_threads: must be >= 1");
  require(s.num_layers >= 1 && s.hidden_size >= 1 && s.input_size >= 1, "model: empty shape");
  if (a.lengths) {
    for (int b = 0; b < a.B; ++b)
      require(a.lengths[b] >= 1 && a.lengths[b] <= a.T,
              "lengths: every length must be in [1, T]; lengths[" + std::to_string(b) + "] = " +
                  std::to_string(a.lengths[b]));
  }
}

}  // namespace

std::size_t direction_workspace_bytes(const DirTask& task, int units, int max_blocks, std::size_t elem) {
  const std::size_t rows = mul_sz(task.chunk, task.B);
  const std::size_t g = mul_sz(mul_sz(mul_sz(rows, max_blocks), 4 * units), elem);
  return add_sz(round_up(g, 64), mul_sz(rows, sizeof(void*)));
}

std::unique_ptr<PackedModel> pack_model(const ModelShape& shape, DType dtype, Isa isa, const RawLayer* layers) {
  require(shape.input_size >= 1, "input_size: must be >= 1");
  require(shape.hidden_size >= 1, "hidden_size: must be >= 1");
  require(shape.num_layers >= 1, "num_layers: must be >= 1");
  require(shape.proj_size >= 0 && shape.proj_size < shape.hidden_size, "proj_size: must be in [0, hidden_size)");
  require(isa_supported(isa), std::string("isa: ") + isa_name(isa) + " is not supported on this CPU");
  auto m = std::make_unique<PackedModel>();
  m->shape = shape;
  m->isa = isa;
  m->dtype = dtype;
  m->units = table_for(isa).units[dtype == DType::kF64];
  if (dtype == DType::kF32) pack_all<float>(*m, layers); else pack_all<double>(*m, layers);
  return m;
}

void forward(const ForwardArgs& args) {
  check_args(args);
  const KernelTable& kt = table_for(args.model->isa);
  if (args.model->dtype == DType::kF32) {
    Call<float> call(args, kt);
    call.run(args.num_threads);
  } else {
    Call<double> call(args, kt);
    call.run(args.num_threads);
  }
}

void activation(Isa isa, DType dtype, int which, const void* in, void* out, std::size_t n) {
  require(which == 0 || which == 1, "which: 0 (sigmoid) or 1 (tanh)");
  require(isa_supported(isa), std::string("isa: ") + isa_name(isa) + " is not supported on this CPU");
  table_for(isa).activation[dtype == DType::kF64](which, in, out, n);
}

int default_num_threads() {
  const int n = g_default_threads.load();
  return n > 0 ? n : env_threads();
}
void set_default_num_threads(int n) {
  require(n >= 1, "n: the number of threads must be >= 1");
  g_default_threads.store(n);
}

}  // namespace fastlstm::cpu
