// The CPU kernels, written once over a vector-traits type V and compiled once per kernel family.
// Included by lstm_kernels_<isa>.cpp INSIDE namespace fastlstm::cpu::<isa>, after that file defined
// VecF / VecD (V::T element, V::R register, V::N lanes, and the operations used below), so every symbol
// here is private to one family. No standard-library templates are used here: an inline template
// instantiated with wide-ISA flags could be merged by the linker into baseline code.
//
// V provides: load, store, stream (a non-temporal store to an aligned address), set1, zero, add, sub, mul, div, fma(a, b, c) = a * b + c, abs,
// max_keep_nan(lo, x) (x when x is NaN), select_ge0(x, a, b) = x >= 0 ? a : b,
// select_lt(x, lim, a, b) = x < lim ? a : b, copysign(mag, sgn), and pow2_magic(t): 2^n from
// t = n + magic (n integral, within the normal exponent range; see ExpConst).

template <int K> struct IntC { static constexpr int value = K; };

template <class T> struct ExpConst;
template <> struct ExpConst<float> {
  static constexpr float kMagic = 12582912.0f;        // 1.5 * 2^23: adding it rounds to an integer
  static constexpr float kLo = -87.33654f;            // below: e^x is not a normal float -> 0
  static constexpr float kLog2e = 1.44269504088896341f;
  static constexpr float kLn2Hi = 0.693145751953125f;  // ln 2 split so n * kLn2Hi is exact
  static constexpr float kLn2Lo = 1.428606765330187e-06f;
  static constexpr int kDegree = 7;                    // Taylor on |r| <= ln2/2: error 5e-9 relative
  static constexpr float kTanhSmall = 0.625f;          // below: odd polynomial (no cancellation)
  static constexpr int kTanhDegree = 5;
  static constexpr float kTanhQ[11] = {-0.3333328520633291f, 0.13331512272872487f, -0.05374462286253033f,
                                       0.02065300359455625f, -0.005718820811281407f};
};
template <> struct ExpConst<double> {
  static constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double kLo = -708.3964185322641;
  static constexpr double kLog2e = 1.4426950408889634;
  static constexpr double kLn2Hi = 0.6931471803691238;
  static constexpr double kLn2Lo = 1.9082149292705877e-10;
  static constexpr int kDegree = 13;                    // error 4e-18 relative
  static constexpr double kTanhSmall = 0.625;
  static constexpr int kTanhDegree = 11;
  static constexpr double kTanhQ[11] = {
      -0.3333333333333285, 0.13333333333260344, -0.053968253933418246, 0.021869487679703703,
      -0.008863222800289557, 0.003592005605828454, -0.0014550477927683615, 0.0005866118152935458,
      -0.00022915630009969718, 7.780320822386798e-05, -1.6385253430807315e-05};
};

// Activations, bitwise identical in every family. Maximum errors against the float64 truth over the whole
// float range (asserted by tests/test_activations.py, measured: 2.6 / 1.5 ulp float32, 3 / 2 ulp float64):
// float32 sigmoid, tanh: <= 1e-7 absolute and <= 4 ulp wherever the result is a normal float;
// float64: <= 4 ulp. Results below the smallest normal flush to 0 (tanh of a denormal returns it exactly).
// NaN in, NaN out; +-inf saturate exactly to 0, 1, -1.
template <class V> struct Act {
  using T = typename V::T;
  using R = typename V::R;
  using C = ExpConst<T>;

  // e^x for x <= 0 (and NaN).
  static inline R exp_neg(R x) {
    const R xc = V::max_keep_nan(V::set1(C::kLo), x);
    const R t = V::add(V::mul(xc, V::set1(C::kLog2e)), V::set1(C::kMagic));
    const R n = V::sub(t, V::set1(C::kMagic));
    R r = V::fma(n, V::set1(-C::kLn2Hi), xc);
    r = V::fma(n, V::set1(-C::kLn2Lo), r);
    // Taylor series of e^r in Horner form: 1 + r(1 + r/2(1 + r/3(...))).
    R p = V::set1(T(1));
    for (int k = C::kDegree; k >= 1; --k) p = V::fma(V::mul(r, V::set1(T(1) / T(k))), p, V::set1(T(1)));
    const R e = V::mul(p, V::pow2_magic(t));
    return V::select_lt(x, V::set1(C::kLo), V::zero(), e);
  }

  static inline R sigmoid(R x) {
    const R e = exp_neg(V::sub(V::zero(), V::abs(x)));
    const R pos = V::div(V::set1(T(1)), V::add(V::set1(T(1)), e));
    return V::select_ge0(x, pos, V::mul(e, pos));
  }

  static inline R tanh(R x) {
    const R a = V::abs(x);
    const R s = V::mul(a, a);
    R q = V::set1(C::kTanhQ[C::kTanhDegree - 1]);
    for (int k = C::kTanhDegree - 2; k >= 0; --k) q = V::fma(q, s, V::set1(C::kTanhQ[k]));
    const R small = V::fma(V::mul(a, s), q, a);
    const R e = exp_neg(V::mul(V::set1(T(-2)), a));
    const R large = V::div(V::sub(V::set1(T(1)), e), V::add(V::set1(T(1)), e));
    return V::copysign(V::select_lt(a, V::set1(C::kTanhSmall), small, large), x);
  }
};

template <class V>
void activation_impl(int which, const void* in_, void* out_, std::size_t n) {
  using T = typename V::T;
  const T* in = static_cast<const T*>(in_);
  T* out = static_cast<T*>(out_);
  std::size_t i = 0;
  for (; i + V::N <= n; i += V::N) {
    const auto x = V::load(in + i);
    V::store(out + i, which == 0 ? Act<V>::sigmoid(x) : Act<V>::tanh(x));
  }
  if (i < n) {
    T buf[V::N] = {};
    std::memcpy(buf, in + i, (n - i) * sizeof(T));
    const auto x = V::load(buf);
    V::store(buf, which == 0 ? Act<V>::sigmoid(x) : Act<V>::tanh(x));
    std::memcpy(out + i, buf, (n - i) * sizeof(T));
  }
}

// acc[r][b * NG + g] += sum_k a[r][k] * w[b][k * NG * N + g * N .. + N], k = 0 .. K-1 in order.
// MR rows of A (any addresses), NBLK panels of NG vectors per k. The one FMA chain per element, in k
// order, is what makes results independent of tiling and thread count.
template <class V, int MR, int NBLK, int NG>
inline void tile(int K, const typename V::T* const* a, const typename V::T* const* w,
                 typename V::R (&acc)[MR][NBLK * NG]) {
  using R = typename V::R;
  constexpr int N = V::N;
  for (int k = 0; k < K; ++k) {
    R av[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) av[r] = V::set1(a[r][k]);
#pragma GCC unroll 8
    for (int b = 0; b < NBLK; ++b) {
#pragma GCC unroll 4
      for (int g = 0; g < NG; ++g) {
        const R wv = V::load(w[b] + (static_cast<std::int64_t>(k) * NG + g) * N);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) acc[r][b * NG + g] = V::fma(av[r], wv, acc[r][b * NG + g]);
      }
    }
  }
}

// For column blocks b in [b0, b1): acc = sum_k a[r][k] * panel_b[k][0 .. N) with panel_b = panels + b * panel_elems
// ([K][N] each), then emit(r, b, acc) for each of the MR rows. Four blocks share a tile where they can, so a
// tile keeps 4 * MR independent FMA chains in flight. The single-vector GEMM of projections and of backward.
template <class V, int MR, class Emit>
inline void panel_products(int K, const typename V::T* const* a, const typename V::T* panels, std::int64_t panel_elems,
                           int b0, int b1, Emit emit) {
  using R = typename V::R;
  int b = b0;
  auto run = [&](auto nblk) {
    constexpr int NB = decltype(nblk)::value;
    R acc[MR][NB];
    const typename V::T* w[NB];
    for (int j = 0; j < NB; ++j) {
      w[j] = panels + static_cast<std::int64_t>(b + j) * panel_elems;
      for (int r = 0; r < MR; ++r) acc[r][j] = V::zero();
    }
    tile<V, MR, NB, 1>(K, a, w, acc);
    for (int j = 0; j < NB; ++j)
      for (int r = 0; r < MR; ++r) emit(r, b + j, acc[r][j]);
    b += NB;
  };
  while (b + 4 <= b1) run(IntC<4>{});
  while (b < b1) run(IntC<1>{});
}

// The first `count` (<= N) elements at src in a vector, lanes past them zero. (A full vector is one load:
// a variable-size memcpy is a libc call, ~30 ns, on paths run once per row and block.)
template <class V>
inline typename V::R load_partial(const typename V::T* src, int count) {
  if (count == V::N) return V::load(src);
  typename V::T buf[V::N] = {};
  std::memcpy(buf, src, static_cast<std::size_t>(count) * sizeof(typename V::T));
  return V::load(buf);
}

// Copies the first `count` (<= N) lanes of v to dst.
template <class V>
inline void store_partial(typename V::T* dst, typename V::R v, int count) {
  if (count == V::N) {
    V::store(dst, v);
  } else {
    typename V::T buf[V::N];
    V::store(buf, v);
    std::memcpy(dst, buf, static_cast<std::size_t>(count) * sizeof(typename V::T));
  }
}

template <class V>
struct Direction {
  using T = typename V::T;
  using R = typename V::R;
  static constexpr int N = V::N;
  static constexpr int G4 = 4 * N;  // one unit block's four gate vectors

  const DirTask& tk;
  int tid, nthreads;
  int nb_begin, nb_end;  // my unit blocks
  int pb_begin, pb_end;  // my projection blocks
  T* g;                  // [my blocks][chunk * B][4N]
  const T** rows;        // [chunk * B]
  std::int64_t g_ld;     // chunk * B * 4N: one block's slice of g
  int hout;

  Direction(const DirTask& task, int tid_, int n, void* ws) : tk(task), tid(tid_), nthreads(n) {
    const int nb = (tk.H + N - 1) / N, pb = (tk.P + N - 1) / N;
    split_range(nb, tid, n, &nb_begin, &nb_end);
    split_range(pb, tid, n, &pb_begin, &pb_end);
    g_ld = static_cast<std::int64_t>(tk.chunk) * tk.B * G4;
    g = static_cast<T*>(ws);
    rows = reinterpret_cast<const T**>(g + (nb_end - nb_begin) * g_ld);
    hout = tk.P > 0 ? tk.P : tk.H;
  }

  int time_of(int s) const { return tk.reverse ? tk.steps - 1 - s : s; }
  int alive(int t) const { return tk.active ? tk.active[t] : tk.B; }
  const T* x_row(int t, int r) const {
    const std::int64_t row = tk.x_rows ? tk.x_rows[r] : r;
    return static_cast<const T*>(tk.x) + t * tk.x_st + row * tk.x_sb;
  }
  T* y_row(int t, int r) const {
    const std::int64_t row = tk.y_rows ? tk.y_rows[r] : r;
    return static_cast<T*>(tk.y) + t * tk.y_st + row * tk.y_sb;
  }
  // The y value written: h, or h * mask under training dropout (lanes past Hout are never stored).
  R masked(R h, int t, int r, int col) const {
    if (!tk.mask) return h;
    const std::int64_t mrow = tk.m_rows ? tk.m_rows[r] : r;
    const T* m = static_cast<const T*>(tk.mask) + t * tk.m_st + mrow * tk.m_sb + col;
    return V::mul(h, load_partial<V>(m, hout - col < N ? hout - col : N));
  }
  const T* w_ih_panel(int nb) const { return static_cast<const T*>(tk.w_ih) + static_cast<std::int64_t>(nb) * tk.I * G4; }
  const T* w_hh_panel(int nb) const { return static_cast<const T*>(tk.w_hh) + static_cast<std::int64_t>(nb) * hout * G4; }

  // G[my block][m] = bias + x(m) W_ih^T for the m = 0 .. M-1 rows of steps s0 .. s1-1 (alive rows only).
  template <int MR, int NBLK>
  void project_tile(int nb_local, int m0) {
    R acc[MR][NBLK * 4];
    const T* w[NBLK];
    for (int b = 0; b < NBLK; ++b) {
      const int nb = nb_begin + nb_local + b;
      const T* bias = static_cast<const T*>(tk.bias) + static_cast<std::int64_t>(nb) * G4;
      for (int gi = 0; gi < 4; ++gi) {
        const R bv = V::load(bias + gi * N);
        for (int r = 0; r < MR; ++r) acc[r][b * 4 + gi] = bv;
      }
      w[b] = w_ih_panel(nb);
    }
    tile<V, MR, NBLK, 4>(tk.I, rows + m0, w, acc);
    for (int b = 0; b < NBLK; ++b) {
      T* dst = g + (nb_local + b) * g_ld + static_cast<std::int64_t>(m0) * G4;
      for (int r = 0; r < MR; ++r)
        for (int gi = 0; gi < 4; ++gi) V::store(dst + r * G4 + gi * N, acc[r][b * 4 + gi]);
    }
  }

  template <int MR>
  void project_rows(int m0) {
    const int nbl = nb_end - nb_begin;
    int l = 0;
    if (MR <= 2) {  // few rows: two blocks at a time keep eight FMA chains in flight
      for (; l + 2 <= nbl; l += 2) project_tile<MR, 2>(l, m0);
    }
    for (; l < nbl; ++l) project_tile<MR, 1>(l, m0);
  }

  void project_chunk(int s0, int s1) {
    int M = 0;
    for (int s = s0; s < s1; ++s) {
      const int t = time_of(s);
      for (int r = 0, n = alive(t); r < n; ++r) rows[M++] = x_row(t, r);
    }
    int m = 0;
    for (; m + V::MR <= M; m += V::MR) project_rows<V::MR>(m);
    dispatch_tail(M - m, m, [this](auto mr, int m0) { this->template project_rows<decltype(mr)::value>(m0); });
  }

  // Calls f(integral_constant<mr>, m0) for a tail of 1 <= mr < V::MR rows.
  template <class F>
  static void dispatch_tail(int mr, int m0, F f) {
    if (mr <= 0) return;
    if constexpr (V::MR > 1) if (mr == 1) return f(IntC<1>{}, m0);
    if constexpr (V::MR > 2) if (mr == 2) return f(IntC<2>{}, m0);
    if constexpr (V::MR > 3) if (mr == 3) return f(IntC<3>{}, m0);
    if constexpr (V::MR > 4) if (mr == 4) return f(IntC<4>{}, m0);
    if constexpr (V::MR > 5) if (mr == 5) return f(IntC<5>{}, m0);
    if constexpr (V::MR > 6) if (mr == 6) return f(IntC<6>{}, m0);
    if constexpr (V::MR > 7) if (mr == 7) return f(IntC<7>{}, m0);
  }

  // One tile of the recurrent step: z = G + h_prev W_hh^T, then the cell update in registers.
  template <int MR, int NBLK>
  void step_tile(int nb_local, int r0, int mg0, int t, const T* hprev, T* hnext) {
    R acc[MR][NBLK * 4];
    const T* w[NBLK];
    const T* a[MR];
    for (int r = 0; r < MR; ++r) a[r] = hprev + (r0 + r) * tk.h_ld;
    for (int b = 0; b < NBLK; ++b) {
      const T* gsrc = g + (nb_local + b) * g_ld + static_cast<std::int64_t>(mg0 + r0) * G4;
      for (int r = 0; r < MR; ++r)
        for (int gi = 0; gi < 4; ++gi) acc[r][b * 4 + gi] = V::load(gsrc + r * G4 + gi * N);
      w[b] = w_hh_panel(nb_begin + nb_local + b);
    }
    tile<V, MR, NBLK, 4>(hout, a, w, acc);
    const bool proj = tk.P > 0;
    T* hdst = proj ? static_cast<T*>(tk.hpre) : hnext;
    const std::int64_t hdst_ld = proj ? tk.c_ld : tk.h_ld;
    const std::int64_t cp_ld = static_cast<std::int64_t>(((tk.H + N - 1) / N) * N);
    for (int b = 0; b < NBLK; ++b) {
      const int u0 = (nb_begin + nb_local + b) * N;
      const int count = tk.H - u0 < N ? tk.H - u0 : N;
      for (int r = 0; r < MR; ++r) {
        T* crow = static_cast<T*>(tk.c) + (r0 + r) * tk.c_ld + u0;
        R zi = acc[r][b * 4 + 0], zf = acc[r][b * 4 + 1], zg = acc[r][b * 4 + 2], zo = acc[r][b * 4 + 3];
        const R cp = V::load(crow);
        const T* pp = static_cast<const T*>(tk.peep);
        if (tk.peephole) {
          zi = V::fma(V::load(pp + u0), cp, zi);
          zf = V::fma(V::load(pp + cp_ld + u0), cp, zf);
        }
        const R ia = Act<V>::sigmoid(zi), fa = Act<V>::sigmoid(zf), ga = Act<V>::tanh(zg);
        const R cn = V::fma(fa, cp, V::mul(ia, ga));
        V::store(crow, cn);
        if (tk.peephole) zo = V::fma(V::load(pp + 2 * cp_ld + u0), cn, zo);
        const R oa = Act<V>::sigmoid(zo);
        const R hv = V::mul(oa, Act<V>::tanh(cn));
        V::store(hdst + (r0 + r) * hdst_ld + u0, hv);
        if (tk.save_gates) {  // training: what backward needs, in the packed gate order
          const std::int64_t row = static_cast<std::int64_t>(t) * tk.B + r0 + r;
          T* sg = static_cast<T*>(tk.save_gates) + row * 4 * tk.c_ld + (nb_begin + nb_local + b) * G4;
          // Written once, read back only by backward: stream them past the caches that hold W_hh.
          V::stream(sg, ia);
          V::stream(sg + N, fa);
          V::stream(sg + 2 * N, ga);
          V::stream(sg + 3 * N, oa);
          V::stream(static_cast<T*>(tk.save_c) + row * tk.c_ld + u0, cn);
        }
        if (!proj) store_partial<V>(y_row(t, r0 + r) + u0, masked(hv, t, r0 + r, u0), count);
      }
    }
  }

  template <int MR>
  void step_rows(int r0, int mg0, int t, const T* hprev, T* hnext) {
    const int nbl = nb_end - nb_begin;
    int l = 0;
    if (MR <= 2) {
      for (; l + 2 <= nbl; l += 2) step_tile<MR, 2>(l, r0, mg0, t, hprev, hnext);
    }
    for (; l < nbl; ++l) step_tile<MR, 1>(l, r0, mg0, t, hprev, hnext);
  }

  // h_next[r][p] = hpre[r] W_hr^T for my projection blocks.
  template <int MR>
  void proj_rows(int r0, int t, T* hnext) {
    const T* a[MR];
    for (int r = 0; r < MR; ++r) a[r] = static_cast<const T*>(tk.hpre) + (r0 + r) * tk.c_ld;
    panel_products<V, MR>(tk.H, a, static_cast<const T*>(tk.w_hr), static_cast<std::int64_t>(tk.H) * N, pb_begin,
                          pb_end, [&](int r, int pb, R v) {
                            const int p0 = pb * N, count = tk.P - p0 < N ? tk.P - p0 : N;
                            V::store(hnext + (r0 + r) * tk.h_ld + p0, v);
                            store_partial<V>(y_row(t, r0 + r) + p0, masked(v, t, r0 + r, p0), count);
                          });
  }

  void run() {
    T* hbuf[2] = {static_cast<T*>(tk.h[0]), static_cast<T*>(tk.h[1])};
    for (int s0 = 0; s0 < tk.steps; s0 += tk.chunk) {
      const int s1 = s0 + tk.chunk < tk.steps ? s0 + tk.chunk : tk.steps;
      project_chunk(s0, s1);  // my blocks only: no barrier needed before using it
      int mg0 = 0;            // first G row of step s
      for (int s = s0; s < s1; ++s) {
        const int t = time_of(s), n = alive(t);
        const T* hprev = hbuf[s & 1];
        T* hnext = hbuf[(s + 1) & 1];
        int r = 0;
        for (; r + V::MR <= n; r += V::MR) step_rows<V::MR>(r, mg0, t, hprev, hnext);
        dispatch_tail(n - r, r, [&](auto mr, int r0) { this->template step_rows<decltype(mr)::value>(r0, mg0, t, hprev, hnext); });
        if (tk.P > 0) {
          barrier_wait(tk.barrier);  // hpre complete
          r = 0;
          for (; r + V::MR <= n; r += V::MR) proj_rows<V::MR>(r, t, hnext);
          dispatch_tail(n - r, r, [&](auto mr, int r0) { this->template proj_rows<decltype(mr)::value>(r0, t, hnext); });
        }
        barrier_wait(tk.barrier);  // h_next complete; everyone is done reading h_prev (and hpre)
        mg0 += n;
      }
    }
  }
};

template <class V>
void run_direction_impl(const DirTask& task, int tid, int nthreads, void* workspace) {
  Direction<V> dir(task, tid, nthreads, workspace);
  dir.run();
}

// Throughput probe for the benchmark's "% of FMA peak": 12 independent FMA chains per vector register
// set, long enough for the frequency to settle. Returns the FLOPs done (2 per lane per FMA).
template <class V>
double fma_probe_impl(long iterations) {
  using R = typename V::R;
  R acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = V::set1(typename V::T(i) * typename V::T(1e-3));
  const R b = V::set1(typename V::T(0.999)), c = V::set1(typename V::T(1e-4));
  for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = V::fma(acc[i], b, c);
  }
  typename V::T sink[V::N];
  R total = acc[0];
  for (int i = 1; i < 12; ++i) total = V::add(total, acc[i]);
  V::store(sink, total);
  volatile typename V::T keep = sink[0];  // the loop must not be optimised away
  (void)keep;
  return 2.0 * 12 * V::N * static_cast<double>(iterations);
}

// Read-bandwidth probe for the benchmark's B = 1 bound: `passes` sweeps over `bytes` at buf (64-byte aligned,
// a multiple of 8 vectors) with eight independent vector sums, the access pattern of streaming W_hh.
// Returns the bytes read.
template <class V>
double read_probe_impl(const void* buf, std::size_t bytes, long passes) {
  using R = typename V::R;
  using T = typename V::T;
  const T* p = static_cast<const T*>(buf);
  const std::size_t n = bytes / sizeof(T) / (8 * V::N) * (8 * V::N);
  R acc[8];
  for (int j = 0; j < 8; ++j) acc[j] = V::zero();
  for (long it = 0; it < passes; ++it) {
    for (std::size_t i = 0; i < n; i += 8 * V::N) {
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) acc[j] = V::add(acc[j], V::load(p + i + j * V::N));
    }
  }
  for (int j = 1; j < 8; ++j) acc[0] = V::add(acc[0], acc[j]);
  T sink[V::N];
  V::store(sink, acc[0]);
  volatile T keep = sink[0];
  (void)keep;
  return static_cast<double>(n) * sizeof(T) * static_cast<double>(passes);
}
