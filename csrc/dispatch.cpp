// The sequence driver: packs weights for a kernel family, checks a call's arguments, orders rows by
// length, lays out the workspace and runs layers and directions on the thread team.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <numeric>
#include <string>
#include <vector>

#include <sys/mman.h>

#include "engine.h"
#include "fastlstm/lstm.h"
#include "threads.h"

namespace fastlstm::cpu {

// ---- memory --------------------------------------------------------------------------------------
namespace {

// Large buffers on 2 MB boundaries, offered to transparent huge pages: a training call's saved state is
// tens of MB written once, and 4 KB page faults would cost more than the writes.
constexpr std::size_t kBig = std::size_t(4) << 20, kHuge = std::size_t(2) << 20;
std::size_t capacity_of(std::size_t bytes) {
  const std::size_t align = bytes >= kBig ? kHuge : 64;
  const std::size_t rounded = (bytes + align - 1) / align * align;
  if (rounded < bytes) throw std::bad_alloc();
  return rounded;
}

// The last few big buffers freed (at most 256 MB each, 512 MB together), each kept for the next allocation
// of about its size: a training call allocates and frees a saved state and a backward workspace, and fresh
// pages cost a fault and a clear each (~4% of a training step measured at B=16, H=256; 6% of the samples
// of a bidirectional two-layer one, when only one buffer was kept and the two sizes kept evicting each other).
class BigBlockCache {
 public:
  void* take(std::size_t capacity) {
    std::lock_guard<std::mutex> lock(mu_);
    int best = -1;
    for (int i = 0; i < kSlots; ++i) {
      const std::size_t c = slot_[i].cap;
      if (slot_[i].p && c >= capacity && c - capacity <= capacity / 4 && (best < 0 || c < slot_[best].cap)) best = i;
    }
    if (best < 0) return nullptr;
    void* q = slot_[best].p;
    total_ -= slot_[best].cap;
    slot_[best] = Slot();
    return q;
  }
  void give(void* q, std::size_t capacity) {
    if (capacity > kMaxBlock) return std::free(q);
    void* evicted[kSlots] = {};
    {
      std::lock_guard<std::mutex> lock(mu_);
      // Room by age: the oldest blocks go first until this one fits in a free slot and the total.
      for (int n = 0; n < kSlots; ++n) {
        int free_slot = -1, oldest = -1;
        for (int i = 0; i < kSlots; ++i) {
          if (!slot_[i].p) free_slot = i;
          else if (oldest < 0 || slot_[i].age < slot_[oldest].age) oldest = i;
        }
        if (free_slot >= 0 && total_ + capacity <= kMaxTotal) {
          slot_[free_slot] = Slot{q, capacity, ++clock_};
          total_ += capacity;
          q = nullptr;
          break;
        }
        evicted[n] = slot_[oldest].p;
        total_ -= slot_[oldest].cap;
        slot_[oldest] = Slot();
      }
    }
    std::free(q);  // null unless it could not be kept
    for (void* e : evicted) std::free(e);
  }

 private:
  static constexpr int kSlots = 4;
  static constexpr std::size_t kMaxBlock = std::size_t(256) << 20, kMaxTotal = std::size_t(512) << 20;
  struct Slot {
    void* p = nullptr;
    std::size_t cap = 0;
    unsigned long age = 0;
  };
  std::mutex mu_;
  Slot slot_[kSlots];
  std::size_t total_ = 0;
  unsigned long clock_ = 0;
};
BigBlockCache& big_blocks() {
  static BigBlockCache* cache = new BigBlockCache();  // never destroyed: freed buffers may come late
  return *cache;
}

void release(void* p, std::size_t bytes) {
  if (p && bytes >= kBig) big_blocks().give(p, capacity_of(bytes));
  else std::free(p);
}

}  // namespace

AlignedBuffer::AlignedBuffer(std::size_t bytes, bool zero) : n_(bytes) {
  if (bytes == 0) return;
  const std::size_t capacity = capacity_of(bytes);
  if (bytes >= kBig) p_ = big_blocks().take(capacity);
  if (!p_) {
    p_ = std::aligned_alloc(bytes >= kBig ? kHuge : 64, capacity);
    if (!p_) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
    if (bytes >= kBig) madvise(p_, capacity, MADV_HUGEPAGE);
#endif
  }
  if (zero) std::memset(p_, 0, capacity);
}
AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    release(p_, n_);
    p_ = o.p_;
    n_ = o.n_;
    o.p_ = nullptr;
    o.n_ = 0;
  }
  return *this;
}
AlignedBuffer::~AlignedBuffer() { release(p_, n_); }

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

// [4H, K] row-major -> [NB][K][4][U], units past H zero (the buffer is zeroed). Through tiles of U units by
// 16 columns, read and written a cache line at a time: element by element, the 4U-strided writes of one
// source row left 3/4 of L1's sets unused and ran at ~1 GB/s.
template <class T>
void pack_gates(const T* w, int H, int K, int U, T* out) {
  constexpr int kCols = 16;
  T tile[64][kCols];  // [unit][column]; U <= 64
  for (int b = 0; b * U < H; ++b) {
    const int count = std::min(U, H - b * U);
    for (int g = 0; g < 4; ++g) {
      for (int k0 = 0; k0 < K; k0 += kCols) {
        const int kc = std::min(kCols, K - k0);
        for (int u = 0; u < count; ++u) {
          const T* src = w + static_cast<std::size_t>(g * H + b * U + u) * K + k0;
          // A constant-size copy is a few vector moves; a variable-size one becomes `rep movs`, ~100 cycles
          // to start (it was 60% of the packing time).
          if (kc == kCols) std::memcpy(tile[u], src, sizeof(tile[u]));
          else std::memcpy(tile[u], src, sizeof(T) * kc);
        }
        for (int kk = 0; kk < kc; ++kk) {
          T* dst = out + ((static_cast<std::size_t>(b) * K + k0 + kk) * 4 + g) * U;
          for (int u = 0; u < count; ++u) dst[u] = tile[u][kk];
        }
      }
    }
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

// [4H, K] row-major -> [ceil(K/U)][4 * Hp][U] for backward's products with dz: the rows in the packed gate
// order [NB][4][U] of dz, the columns (K) in vectors; padding stays zero (the buffer is zeroed). Each source
// row is read once, in order, and written as U-element runs.
template <class T>
void pack_gates_t(const T* w, int H, int K, int U, T* out) {
  const std::size_t rows = static_cast<std::size_t>((H + U - 1) / U) * 4 * U;
  for (int g = 0; g < 4; ++g)
    for (int unit = 0; unit < H; ++unit) {
      const T* row = w + static_cast<std::size_t>(g * H + unit) * K;
      const std::size_t kappa = (static_cast<std::size_t>(unit / U) * 4 + g) * U + unit % U;
      for (int c0 = 0; c0 < K; c0 += U)
        std::memcpy(out + (static_cast<std::size_t>(c0 / U) * rows + kappa) * U, row + c0,
                    sizeof(T) * static_cast<std::size_t>(std::min(U, K - c0)));
    }
}

// [P, H] row-major -> [ceil(H/U)][P][U] (columns of H in vectors).
template <class T>
void pack_cols(const T* w, int P, int H, int U, T* out) {
  const int nb = (H + U - 1) / U;
  for (int b = 0; b < nb; ++b)
    for (int p = 0; p < P; ++p)
      for (int u = 0; u < U; ++u) {
        const int col = b * U + u;
        out[(static_cast<std::size_t>(b) * P + p) * U + u] = col < H ? w[static_cast<std::size_t>(p) * H + col] : T(0);
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
      if (m.training) {
        o.w_ih_t = total;
        total = round_up(add_sz(total, mul_sz(mul_sz(hp, 4), round_up(s.layer_input(k), U))), 16);
        o.w_hh_t = total;
        total = round_up(add_sz(total, mul_sz(mul_sz(hp, 4), round_up(s.out_size(), U))), 16);
        o.w_hr_t = total;
        total = round_up(add_sz(total, mul_sz(hp, P)), 16);
      }
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
      if (m.training) {
        pack_gates_t(static_cast<const T*>(raw.w_ih), H, s.layer_input(k), U, base + o.w_ih_t);
        pack_gates_t(static_cast<const T*>(raw.w_hh), H, s.out_size(), U, base + o.w_hh_t);
        if (P > 0) pack_cols(static_cast<const T*>(raw.w_hr), P, H, U, base + o.w_hr_t);
      }
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


// ---- workspace -------------------------------------------------------------------------------------
// A call's workspace is one block carved into aligned pieces. Each calling thread keeps its block for the
// next call (up to kKeepBytes), so a streaming step allocates nothing but its outputs.
constexpr std::size_t kKeepBytes = std::size_t(32) << 20;

class Workspace {
 public:
  std::size_t reserve(std::size_t bytes) {  // -> offset of a 64-byte aligned piece
    const std::size_t at = round_up(total_, 64);
    total_ = add_sz(at, bytes);
    return at;
  }
  void allocate() {
    thread_local AlignedBuffer kept;
    if (total_ <= kKeepBytes) {
      if (kept.size() < total_) kept = AlignedBuffer(std::max(total_, std::size_t(64) << 10), false);
      base_ = static_cast<char*>(kept.data());
    } else {
      own_ = AlignedBuffer(total_, false);  // every piece is written before it is read
      base_ = static_cast<char*>(own_.data());
    }
  }
  template <class U> U* at(std::size_t offset) const { return reinterpret_cast<U*>(base_ + offset); }

 private:
  std::size_t total_ = 0;
  char* base_ = nullptr;
  AlignedBuffer own_;
};

// The floating-point operations of a forward pass over `rows` (time, batch) rows: what decides how long a
// call may wait for its thread team to gather.
double call_flops(const ModelShape& s, double rows) {
  double per_row = 0;
  for (int k = 0; k < s.num_layers; ++k)
    per_row += 8.0 * s.hidden_size * (s.layer_input(k) + s.out_size()) + 2.0 * s.hidden_size * s.proj_size;
  return per_row * s.directions() * rows;
}
double sum_lengths(const std::int64_t* lengths, int B) { return std::accumulate(lengths, lengths + B, 0.0); }

// ---- one call --------------------------------------------------------------------------------------
template <class T>
struct Call {
  const ForwardArgs& a;
  const PackedModel& m;
  const KernelTable& kt;
  int L, D, H, P, Hout, B, T_, steps = 0;
  std::int32_t* perm = nullptr;    // [B] sorted row -> user row (lengths only)
  std::int32_t* active = nullptr;  // [T] rows alive at t (lengths only)
  std::int64_t h_ld = 0, c_ld = 0;
  DirTask* tasks = nullptr;        // [L * D]
  void* work[64] = {};             // per thread
  Workspace ws;
  Barrier team_barrier, group_barrier[2];
  int groups = 1;
  TrainState* save = nullptr;          // training forward: where the saved state goes
  const void* const* masks = nullptr;  // training forward: dropout masks per layer (or null)

  Call(const ForwardArgs& args, const KernelTable& table)
      : a(args), m(*args.model), kt(table), L(m.shape.num_layers), D(m.shape.directions()),
        H(m.shape.hidden_size), P(m.shape.proj_size), Hout(m.shape.out_size()), B(args.B), T_(args.T) {}

  std::int64_t len_of_sorted(int r) const { return a.lengths ? a.lengths[perm[r]] : T_; }
  int user_row(int r) const { return a.lengths ? perm[r] : r; }

  // Rows sorted by length, longest first (stable), so the rows alive at any t are a prefix.
  void order_rows() {
    steps = T_;
    if (!a.lengths) return;
    std::iota(perm, perm + B, 0);
    std::stable_sort(perm, perm + B, [&](int x, int y) { return a.lengths[x] > a.lengths[y]; });
    steps = static_cast<int>(a.lengths[perm[0]]);
    std::fill(active, active + T_, 0);
    for (int r = 0; r < B; ++r)
      for (int t = 0, n = static_cast<int>(a.lengths[perm[r]]); t < n; ++t) active[t] = r + 1;
  }

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

    // Steps per input-projection chunk: one thread's G and x rows of a chunk stay within ~512 KB.
    const int nb = (H + U - 1) / U;
    const int min_group = groups == 2 ? group_size[1] : nthreads;
    const int max_blocks = (nb + min_group - 1) / min_group;
    const std::size_t row_bytes = (static_cast<std::size_t>(max_blocks) * 4 * U + m.shape.input_size) * sizeof(T);
    const std::size_t per_step = std::max<std::size_t>(1, mul_sz(B, row_bytes));
    const int steps_max = a.lengths ? static_cast<int>(*std::max_element(a.lengths, a.lengths + B)) : T_;
    int chunk = static_cast<int>(std::min<std::size_t>(steps_max, std::max<std::size_t>(1, (512u << 10) / per_step)));
    chunk = std::max(1, std::min(chunk, 64));

    // Layout: one piece per array, then a single allocation.
    const std::size_t o_perm = ws.reserve(a.lengths ? mul_sz(B, 4) : 0);
    const std::size_t o_active = ws.reserve(a.lengths ? mul_sz(T_, 4) : 0);
    const std::size_t o_tasks = ws.reserve(mul_sz(static_cast<std::size_t>(L) * D, sizeof(DirTask)));
    const std::size_t o_state = ws.reserve(mul_sz(static_cast<std::size_t>(L) * D, round_up(per_ld, 64)));
    const std::size_t inter_bytes = mul_sz(mul_sz(mul_sz(steps_max, B), D * Hout), sizeof(T));
    std::size_t o_inter[2] = {0, 0};
    if (!save)
      for (int i = 0; i < std::min(L - 1, 2); ++i) o_inter[i] = ws.reserve(inter_bytes);
    DirTask probe;
    probe.chunk = chunk;
    probe.B = B;
    const std::size_t work_bytes = direction_workspace_bytes(probe, U, max_blocks, sizeof(T));
    std::size_t o_work[64];
    for (int i = 0; i < nthreads; ++i) o_work[i] = ws.reserve(work_bytes);
    ws.allocate();

    perm = ws.at<std::int32_t>(o_perm);
    active = ws.at<std::int32_t>(o_active);
    order_rows();
    tasks = ws.at<DirTask>(o_tasks);
    for (int i = 0; i < nthreads; ++i) work[i] = ws.at<void>(o_work[i]);
    const std::int32_t* rows = a.lengths ? perm : nullptr;
    if (save) layout_saved(steps_max);
    // Layer k's input: the user's x (layer 0 of inference), else a buffer in sorted row order.
    auto input_of = [&](int k) -> void* {
      return save ? static_cast<void*>(save->at(save->inputs[k])) : ws.at<void>(o_inter[(k - 1) & 1]);
    };
    for (int k = 0; k < L; ++k) {
      for (int d = 0; d < D; ++d) {
        char* base = ws.at<char>(o_state + static_cast<std::size_t>(k * D + d) * round_up(per_ld, 64));
        std::memset(base, 0, per_ld);
        DirTask& tk = *new (&tasks[k * D + d]) DirTask();
        tk.steps = steps;
        tk.B = B;
        tk.I = m.shape.layer_input(k);
        tk.H = H;
        tk.P = P;
        tk.reverse = d == 1;
        tk.peephole = m.shape.peephole;
        tk.active = a.lengths ? active : nullptr;
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
        // Layer inputs and outputs: the user's x and y at the ends, sorted-row buffers in between.
        const std::int64_t inter_st = static_cast<std::int64_t>(B) * D * Hout;
        if (k == 0 && !save) {
          tk.x = a.x; tk.x_st = a.x_st; tk.x_sb = a.x_sb; tk.x_rows = rows;
        } else {
          const int width = m.shape.layer_input(k);
          tk.x = input_of(k); tk.x_st = static_cast<std::int64_t>(B) * width; tk.x_sb = width; tk.x_rows = nullptr;
        }
        if (k == L - 1) {
          tk.y = static_cast<T*>(a.y) + d * Hout; tk.y_st = a.y_st; tk.y_sb = a.y_sb; tk.y_rows = rows;
        } else {
          tk.y = static_cast<T*>(input_of(k + 1)) + d * Hout; tk.y_st = inter_st; tk.y_sb = D * Hout; tk.y_rows = nullptr;
        }
        if (save) {
          const TrainState::Saved& sv = save->saved[k * D + d];
          tk.save_gates = save->at(sv.gates);
          tk.save_c = save->at(sv.c);
          std::memcpy(save->at(sv.h0), tk.h[0], mul_sz(mul_sz(B, h_ld), sizeof(T)));
          std::memcpy(save->at(sv.c0), tk.c, mul_sz(mul_sz(B, c_ld), sizeof(T)));
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
  void layout_saved(int nsteps) {
    TrainState& sv = *save;
    sv.shape = m.shape;
    sv.dtype = m.dtype;
    sv.isa = m.isa;
    sv.T = T_;
    sv.B = B;
    sv.steps = steps;
    sv.h_ld = h_ld;
    sv.c_ld = c_ld;
    if (a.lengths) {
      sv.lengths.assign(a.lengths, a.lengths + B);
      sv.perm.assign(perm, perm + B);
      sv.active.assign(active, active + T_);
    }
    std::size_t total = 0;
    auto piece = [&](std::size_t bytes) {
      const std::size_t at = round_up(total, 64);
      total = add_sz(at, bytes);
      return at;
    };
    const std::size_t rows = mul_sz(nsteps, B);
    for (int k = 0; k < L; ++k) sv.inputs.push_back(piece(mul_sz(mul_sz(rows, m.shape.layer_input(k)), sizeof(T))));
    for (int i = 0; i < L * D; ++i) {
      TrainState::Saved p;
      p.gates = piece(mul_sz(mul_sz(rows, 4 * c_ld), sizeof(T)));
      p.c = piece(mul_sz(mul_sz(rows, c_ld), sizeof(T)));
      p.h0 = piece(mul_sz(mul_sz(B, h_ld), sizeof(T)));
      p.c0 = piece(mul_sz(mul_sz(B, c_ld), sizeof(T)));
      sv.saved.push_back(p);
    }
    sv.data = AlignedBuffer(total, /*zero=*/false);  // every element read is written first
    const int I = m.shape.input_size;
    T* x0 = reinterpret_cast<T*>(sv.at(sv.inputs[0]));
    for (int t = 0; t < steps; ++t) {
      const int n = a.lengths ? active[t] : B;
      for (int r = 0; r < n; ++r)
        std::memcpy(x0 + (static_cast<std::int64_t>(t) * B + r) * I,
                    static_cast<const T*>(a.x) + t * a.x_st + static_cast<std::int64_t>(user_row(r)) * a.x_sb,
                    sizeof(T) * I);
    }
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
        run(tasks[k * D + g], gtid, gsize, work[tid]);
      } else {
        for (int d = 0; d < D; ++d) run(tasks[k * D + d], gtid, gsize, work[tid]);
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
    TeamLease lease(requested_threads);
    setup(lease.form(call_flops(m.shape, a.lengths ? sum_lengths(a.lengths, B) : static_cast<double>(T_) * B)));
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

std::unique_ptr<PackedModel> pack_model(const ModelShape& shape, DType dtype, Isa isa, const RawLayer* layers,
                                        bool training) {
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
  m->training = training;
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

std::unique_ptr<TrainState> forward_train(const ForwardArgs& args, const void* const* masks) {
  check_args(args);
  const KernelTable& kt = table_for(args.model->isa);
  auto state = std::make_unique<TrainState>();
  if (args.model->dtype == DType::kF32) {
    Call<float> call(args, kt);
    call.save = state.get();
    call.masks = masks;
    call.run(args.num_threads);
  } else {
    Call<double> call(args, kt);
    call.save = state.get();
    call.masks = masks;
    call.run(args.num_threads);
  }
  return state;
}

namespace {

// One backward call: per layer from the top, the recurrence of each direction (on its thread group), then
// the weight gradients and the layer input's gradient over the whole team.
template <class T>
struct BackCall {
  const BackwardArgs& a;
  const TrainState& st;
  const PackedModel& m;
  const KernelTable& kt;
  int L, D, H, P, Hout, B, steps, I0;
  std::int64_t h_ld, c_ld;
  Workspace ws;
  Barrier team_barrier, group_barrier[2];
  int groups = 1;
  BackTask bt[2];
  GradTask gt[2];
  DxTask dxt;

  BackCall(const BackwardArgs& args, const KernelTable& table)
      : a(args), st(*args.state), m(*args.model), kt(table), L(st.shape.num_layers), D(st.shape.directions()),
        H(st.shape.hidden_size), P(st.shape.proj_size), Hout(st.shape.out_size()), B(st.B), steps(st.steps),
        I0(st.shape.input_size), h_ld(st.h_ld), c_ld(st.c_ld) {}

  int alive(int t) const { return st.active.empty() ? B : st.active[t]; }
  int user_row(int r) const { return st.perm.empty() ? r : st.perm[r]; }
  std::int64_t len_of(int b) const { return st.lengths.empty() ? st.T : st.lengths[b]; }
  std::int64_t row(int t, int r) const { return static_cast<std::int64_t>(t) * B + r; }
  // The forward step before time t for row r in direction d, or -1 at the row's first step.
  int prev_time(int d, int t, int r) const {
    if (d == 0) return t - 1;
    return (t + 1 < steps && r < alive(t + 1)) ? t + 1 : -1;
  }

  static void team_main(void* ctx, int tid, int n) { static_cast<BackCall*>(ctx)->member(tid, n); }
  void member(int tid, int n) {
    const int f = sizeof(T) == 8;
    if (groups == 2) {
      const int g = tid < n / 2 ? 0 : 1;
      kt.run_backward[f](bt[g], g == 0 ? tid : tid - n / 2, g == 0 ? n / 2 : n - n / 2);
    } else {
      for (int d = 0; d < D; ++d) kt.run_backward[f](bt[d], tid, n);
    }
    team_barrier.wait();  // every direction's dz is complete
    for (int d = 0; d < D; ++d) kt.run_grads[f](gt[d], tid, n);
    kt.run_dx[f](dxt, tid, n);
  }

  void run(int requested) {
    TeamLease lease(requested);
    const int n = lease.form(2 * call_flops(st.shape, st.lengths.empty() ? static_cast<double>(st.T) * B
                                                                         : sum_lengths(st.lengths.data(), B)));
    groups = (D == 2 && n >= 2) ? 2 : 1;
    team_barrier.reset(n);
    group_barrier[0].reset(groups == 2 ? n / 2 : n);
    group_barrier[1].reset(n - n / 2);

    std::size_t M = 0;
    for (int t = 0; t < steps; ++t) M += alive(t);
    const std::size_t rows = mul_sz(steps, B);
    const std::size_t hb = mul_sz(mul_sz(B, h_ld), sizeof(T)), cb = mul_sz(mul_sz(B, c_ld), sizeof(T));
    std::size_t o_dh[2], o_dc[2], o_dpre[2], o_hall[2], o_hpre[2], o_dhs[2], o_ptr[2], o_gw_ih[2], o_gw_hh[2],
        o_gb[2], o_gp[2], o_gw_hr[2], o_dz[2];
    const int Imax = std::max(I0, D * Hout);
    for (int d = 0; d < D; ++d) {
      o_dh[d] = ws.reserve(hb);
      o_dc[d] = ws.reserve(cb);
      o_dpre[d] = ws.reserve(cb);
      o_hall[d] = ws.reserve(mul_sz(mul_sz(rows, h_ld), sizeof(T)));
      o_hpre[d] = ws.reserve(P > 0 ? mul_sz(mul_sz(rows, c_ld), sizeof(T)) : 0);
      o_dhs[d] = ws.reserve(P > 0 ? mul_sz(mul_sz(rows, h_ld), sizeof(T)) : 0);
      o_dz[d] = ws.reserve(mul_sz(mul_sz(rows, 4 * c_ld), sizeof(T)));
      o_ptr[d] = ws.reserve(mul_sz(mul_sz(M, 7), sizeof(void*)));
      o_gw_ih[d] = ws.reserve(mul_sz(mul_sz(Imax, 4 * c_ld), sizeof(T)));
      o_gw_hh[d] = ws.reserve(mul_sz(mul_sz(Hout, 4 * c_ld), sizeof(T)));
      o_gb[d] = ws.reserve(mul_sz(4 * c_ld, sizeof(T)));
      o_gp[d] = ws.reserve(mul_sz(3 * c_ld, sizeof(T)));
      o_gw_hr[d] = ws.reserve(mul_sz(mul_sz(H, h_ld), sizeof(T)));
    }
    const std::size_t o_dxptr = ws.reserve(mul_sz(mul_sz(M, 2), sizeof(void*)));
    const std::size_t gw_bytes = mul_sz(grad_workspace_elems(m.units), sizeof(T));
    std::size_t o_gwork[64];
    for (int i = 0; i < n; ++i) o_gwork[i] = ws.reserve(gw_bytes);
    const std::size_t o_gwork_ptrs = ws.reserve(sizeof(void*) * static_cast<std::size_t>(n));
    const std::size_t up_bytes = mul_sz(mul_sz(rows, D * Hout), sizeof(T));
    const std::size_t o_up[2] = {ws.reserve(L > 1 ? up_bytes : 0), ws.reserve(L > 2 ? up_bytes : 0)};
    ws.allocate();
    void** gwork = ws.at<void*>(o_gwork_ptrs);
    for (int i = 0; i < n; ++i) gwork[i] = ws.at<void>(o_gwork[i]);

    // dx = 0 where a sequence has ended.
    for (int b = 0; b < B; ++b)
      for (std::int64_t t = len_of(b); t < st.T; ++t)
        std::memset(static_cast<T*>(a.dx) + t * a.dx_st + b * a.dx_sb, 0, sizeof(T) * I0);

    for (int k = L - 1; k >= 0; --k) {
      const int width = st.shape.layer_input(k);
      const T* input = reinterpret_cast<const T*>(st.at(st.inputs[k]));
      for (int d = 0; d < D; ++d) {
        const int ld = k * D + d;
        const TrainState::Saved& sv = st.saved[ld];
        const PackedModel::Offsets& o = m.layers[ld];
        BackTask& b = bt[d];
        b = BackTask();
        b.steps = steps; b.B = B; b.H = H; b.P = P;
        b.reverse = d == 1;
        b.peephole = st.shape.peephole;
        b.active = st.active.empty() ? nullptr : st.active.data();
        b.gates = st.at(sv.gates);
        b.dz = ws.at<void>(o_dz[d]);
        b.csave = st.at(sv.c);
        b.c0 = st.at(sv.c0);
        b.h0 = st.at(sv.h0);
        if (k == L - 1) {
          b.dy = static_cast<const T*>(a.dy) + d * Hout; b.dy_st = a.dy_st; b.dy_sb = a.dy_sb;
          b.dy_rows = st.perm.empty() ? nullptr : st.perm.data();
        } else {
          b.dy = ws.at<T>(o_up[k & 1]) + d * Hout; b.dy_st = static_cast<std::int64_t>(B) * D * Hout;
          b.dy_sb = D * Hout; b.dy_rows = nullptr;
        }
        T* dh = ws.at<T>(o_dh[d]);
        T* dc = ws.at<T>(o_dc[d]);
        std::memset(dh, 0, hb);
        std::memset(dc, 0, cb);
        for (int r = 0; r < B; ++r) {
          const std::size_t src = static_cast<std::size_t>(ld) * B + user_row(r);
          if (a.dh_n) std::memcpy(dh + r * h_ld, static_cast<const T*>(a.dh_n) + src * Hout, sizeof(T) * Hout);
          if (a.dc_n) std::memcpy(dc + r * c_ld, static_cast<const T*>(a.dc_n) + src * H, sizeof(T) * H);
        }
        b.dh = dh; b.dc = dc; b.dpre = ws.at<void>(o_dpre[d]);
        b.hall = ws.at<void>(o_hall[d]);
        b.hpre_all = P > 0 ? ws.at<void>(o_hpre[d]) : nullptr;
        b.dh_save = P > 0 ? ws.at<void>(o_dhs[d]) : nullptr;
        b.w_hh_t = m.at(o.w_hh_t); b.w_hr = m.at(o.w_hr); b.w_hr_t = m.at(o.w_hr_t); b.peep = m.at(o.peep);
        b.h_ld = h_ld; b.c_ld = c_ld;
        b.barrier = &group_barrier[groups == 2 ? d : 0];

        // Row lists of the weight gradients: every live (t, r), t ascending then r.
        const void** p = ws.at<const void*>(o_ptr[d]);
        const void **dz_r = p, **x_r = p + M, **hp_r = p + 2 * M, **cp_r = p + 3 * M, **c_r = p + 4 * M,
                   **dh_r = p + 5 * M, **hpre_r = p + 6 * M;
        std::size_t i = 0;
        for (int t = 0; t < steps; ++t) {
          for (int r = 0; r < alive(t); ++r, ++i) {
            const int tp = prev_time(d, t, r);
            dz_r[i] = ws.at<T>(o_dz[d]) + row(t, r) * 4 * c_ld;
            x_r[i] = input + row(t, r) * width;
            hp_r[i] = tp < 0 ? static_cast<const void*>(st.at(sv.h0) + r * h_ld * sizeof(T))
                             : static_cast<const void*>(ws.at<T>(o_hall[d]) + row(tp, r) * h_ld);
            cp_r[i] = tp < 0 ? st.at(sv.c0) + r * c_ld * sizeof(T) : st.at(sv.c) + row(tp, r) * c_ld * sizeof(T);
            c_r[i] = st.at(sv.c) + row(t, r) * c_ld * sizeof(T);
            dh_r[i] = P > 0 ? ws.at<T>(o_dhs[d]) + row(t, r) * h_ld : nullptr;
            hpre_r[i] = P > 0 ? ws.at<T>(o_hpre[d]) + row(t, r) * c_ld : nullptr;
          }
        }
        GradTask& g = gt[d];
        g = GradTask();
        g.M = static_cast<int>(M); g.I = width; g.H = H; g.P = P; g.peephole = st.shape.peephole;
        g.dz_rows = dz_r; g.x_rows = x_r; g.hprev_rows = hp_r; g.cprev_rows = cp_r; g.c_rows = c_r;
        g.dh_rows = dh_r; g.hpre_rows = hpre_r;
        g.gw_ih_t = ws.at<void>(o_gw_ih[d]); g.gw_hh_t = ws.at<void>(o_gw_hh[d]); g.gb = ws.at<void>(o_gb[d]);
        g.gp = ws.at<void>(o_gp[d]); g.gw_hr_t = ws.at<void>(o_gw_hr[d]);
        g.h_ld = h_ld; g.c_ld = c_ld;
        g.work = gwork;
      }
      // The layer input's gradient: the user's dx, or the upstream gradient of layer k - 1 (times its mask).
      void** dx_r = ws.at<void*>(o_dxptr);
      const void** mk_r = ws.at<const void*>(o_dxptr) + M;
      const bool masked = k > 0 && a.masks && a.masks[k - 1];
      std::size_t i = 0;
      for (int t = 0; t < steps; ++t) {
        for (int r = 0; r < alive(t); ++r, ++i) {
          if (k == 0) {
            dx_r[i] = static_cast<T*>(a.dx) + t * a.dx_st + static_cast<std::int64_t>(user_row(r)) * a.dx_sb;
          } else {
            dx_r[i] = ws.at<T>(o_up[(k - 1) & 1]) + row(t, r) * width;
          }
          if (masked)
            mk_r[i] = static_cast<const T*>(a.masks[k - 1]) + (static_cast<std::int64_t>(t) * st.B + user_row(r)) * width;
        }
      }
      dxt = DxTask();
      dxt.M = static_cast<int>(M); dxt.I = width; dxt.D = D; dxt.K = 4 * c_ld;
      for (int d = 0; d < D; ++d) {
        dxt.dz_rows[d] = ws.at<const void*>(o_ptr[d]);
        dxt.w_ih_t[d] = m.at(m.layers[k * D + d].w_ih_t);
      }
      dxt.dx_rows = dx_r;
      dxt.mask_rows = masked ? mk_r : nullptr;

      lease.run(&BackCall::team_main, this);

      for (int d = 0; d < D; ++d) unpack(k, d, ws.at<T>(o_dh[d]), ws.at<T>(o_dc[d]), gt[d]);
    }
  }

  // dst[gate * H + j][c] = src[c][packed row of (gate, j)] for c < width: a packed, transposed weight
  // gradient [width][4 * c_ld] back to torch's (4H, width). Source rows are 4 * c_ld apart (a power of two
  // times 16 bytes: straight column reads would fight over a few cache sets), so it goes through tiles of
  // one unit block by 64 columns, read and written a cache line at a time.
  void unpack_transposed(const T* src, int width, T* dst) const {
    constexpr int kCols = 64;
    const int U = m.units;
    T tile[kCols][64];  // [column][unit]; U <= 64
    for (int gate = 0; gate < 4; ++gate) {
      for (int j0 = 0; j0 < H; j0 += U) {
        const int count = std::min(U, H - j0);
        const T* s = src + static_cast<std::int64_t>((j0 / U) * 4 + gate) * U;
        for (int c0 = 0; c0 < width; c0 += kCols) {
          const int cw = std::min(kCols, width - c0);
          for (int c = 0; c < cw; ++c) std::memcpy(tile[c], s + static_cast<std::int64_t>(c0 + c) * 4 * c_ld, sizeof(T) * count);
          for (int u = 0; u < count; ++u) {
            T* row = dst + static_cast<std::int64_t>(gate * H + j0 + u) * width + c0;
            for (int c = 0; c < cw; ++c) row[c] = tile[c][u];
          }
        }
      }
    }
  }

  // dh0, dc0 to the user's rows; the packed, transposed gradients to the user's layouts.
  void unpack(int k, int d, const T* dh, const T* dc, const GradTask& g) {
    const int ld = k * D + d, U = m.units, width = st.shape.layer_input(k);
    for (int r = 0; r < B; ++r) {
      const std::size_t dst = static_cast<std::size_t>(ld) * B + user_row(r);
      std::memcpy(static_cast<T*>(a.dh0) + dst * Hout, dh + r * h_ld, sizeof(T) * Hout);
      std::memcpy(static_cast<T*>(a.dc0) + dst * H, dc + r * c_ld, sizeof(T) * H);
    }
    const GradPointers& out = a.grads[ld];
    const T* gw_ih = static_cast<const T*>(g.gw_ih_t);
    const T* gw_hh = static_cast<const T*>(g.gw_hh_t);
    const T* gb = static_cast<const T*>(g.gb);
    unpack_transposed(gw_ih, width, static_cast<T*>(out.w_ih));
    unpack_transposed(gw_hh, Hout, static_cast<T*>(out.w_hh));
    for (int gate = 0; gate < 4; ++gate) {
      for (int j = 0; j < H; ++j) {
        const std::int64_t pr = static_cast<std::int64_t>((j / U) * 4 + gate) * U + j % U, ur = gate * H + j;
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

void backward(const BackwardArgs& args) {
  require(args.model && args.state, "backward: no saved state");
  const PackedModel& m = *args.model;
  const TrainState& st = *args.state;
  require(m.training, "backward: the weights were not packed for training");
  require(m.isa == st.isa && m.dtype == st.dtype, "backward: weights and saved state differ in isa or dtype");
  require(args.dy && args.dx && args.dh0 && args.dc0 && args.grads, "backward: null pointer");
  const KernelTable& kt = table_for(m.isa);
  if (m.dtype == DType::kF32) {
    BackCall<float> call(args, kt);
    call.run(args.num_threads);
  } else {
    BackCall<double> call(args, kt);
    call.run(args.num_threads);
  }
}

void activation(Isa isa, DType dtype, int which, const void* in, void* out, std::size_t n) {
  require(which == 0 || which == 1, "which: 0 (sigmoid) or 1 (tanh)");
  require(isa_supported(isa), std::string("isa: ") + isa_name(isa) + " is not supported on this CPU");
  table_for(isa).activation[dtype == DType::kF64](which, in, out, n);
}

namespace {
// Runs P::member on the lease, doubling probe.count until one run lasts `seconds`; -> the members' work
// (probe.done[tid]: FLOPs, bytes) per second. The first run is a warm-up.
template <class P>
double timed_rate(TeamLease& lease, P& probe, double seconds) {
  lease.run(&P::member, &probe);
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    lease.run(&P::member, &probe);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt >= seconds || probe.count > (1L << 40)) {
      double total = 0;
      for (int i = 0; i < lease.size(); ++i) total += probe.done[i];
      return total / dt;
    }
    probe.count *= 2;
  }
}
}  // namespace

double fma_peak_gflops(Isa isa, int num_threads, double seconds) {
  require(isa_supported(isa), std::string("isa: ") + isa_name(isa) + " is not supported on this CPU");
  struct Probe {
    const KernelTable* kt;
    long count;  // iterations of the FMA loop
    double done[64];
    static void member(void* ctx, int tid, int) {
      auto* p = static_cast<Probe*>(ctx);
      p->done[tid] = p->kt->fma_probe(p->count);
    }
  } probe{&table_for(isa), 1 << 20, {}};
  TeamLease lease(num_threads);
  return timed_rate(lease, probe, seconds) / 1e9;
}

double read_bandwidth_gbs(Isa isa, int num_threads, std::size_t bytes_per_thread, double seconds) {
  require(isa_supported(isa), std::string("isa: ") + isa_name(isa) + " is not supported on this CPU");
  require(bytes_per_thread >= 4096 && bytes_per_thread <= (std::size_t(1) << 32),
          "bytes_per_thread: expected 4 KiB .. 4 GiB");
  TeamLease lease(num_threads);
  std::vector<AlignedBuffer> bufs;
  for (int i = 0; i < lease.size(); ++i) bufs.emplace_back(bytes_per_thread, /*zero=*/false);
  struct Probe {
    const KernelTable* kt;
    std::vector<AlignedBuffer>* bufs;
    long count;  // sweeps over the buffer
    double done[64];
    static void member(void* ctx, int tid, int) {
      auto* p = static_cast<Probe*>(ctx);
      const AlignedBuffer& b = (*p->bufs)[tid];
      p->done[tid] = p->kt->read_probe(b.data(), b.size(), p->count);
    }
    static void touch(void* ctx, int tid, int) {  // each thread's buffer first written by that thread
      auto* p = static_cast<Probe*>(ctx);
      std::memset((*p->bufs)[tid].data(), 1, (*p->bufs)[tid].size());
    }
  } probe{&table_for(isa), &bufs, std::max(1L, static_cast<long>((std::size_t(8) << 20) / bytes_per_thread)), {}};
  lease.run(&Probe::touch, &probe);  // and from then on the buffer sits in the cache level it fits
  return timed_rate(lease, probe, seconds) / 1e9;
}

double step_exchange_us(int num_threads, std::size_t bytes, int steps) {
  require(bytes >= 4 && bytes <= (std::size_t(1) << 24), "bytes: expected 4 B .. 16 MiB");
  require(steps >= 1, "steps: expected >= 1");
  TeamLease lease(num_threads);
  AlignedBuffer buf(2 * bytes);
  struct Probe {
    std::uint32_t* state[2];  // integers: the reads are vector loads, not a chain of float adds
    std::size_t n;
    int steps;
    Barrier barrier;
    std::uint32_t sink[64];
    static void member(void* ctx, int tid, int nthreads) {
      auto* p = static_cast<Probe*>(ctx);
      const std::size_t b0 = p->n * tid / nthreads, b1 = p->n * (tid + 1) / nthreads;
      std::uint32_t acc = 0;
      for (int s = 0; s < p->steps; ++s) {
        const std::uint32_t* cur = p->state[s & 1];
        for (std::size_t i = 0; i < p->n; ++i) acc ^= cur[i];
        std::uint32_t* next = p->state[(s + 1) & 1];
        for (std::size_t i = b0; i < b1; ++i) next[i] = acc;
        p->barrier.wait();
      }
      p->sink[tid] = acc;
    }
  };
  auto* words = static_cast<std::uint32_t*>(buf.data());
  Probe probe{{words, words + bytes / 4}, bytes / 4, steps, {}, {}};
  probe.barrier.reset(lease.form(TeamLease::kWholeTeam));
  lease.run(&Probe::member, &probe);  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  lease.run(&Probe::member, &probe);
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / steps;
}

int default_num_threads() {
  const int n = g_default_threads.load();
  static const int from_env = env_threads();  // read once: getenv on every call showed in a streaming step
  return n > 0 ? n : from_env;
}
void set_default_num_threads(int n) {
  require(n >= 1, "n: the number of threads must be >= 1");
  g_default_threads.store(n);
}

}  // namespace fastlstm::cpu
