// The register-tiled products every kernel is built from, written once over the vector traits V.
// Included INSIDE a family's namespace (kernels/family-inl.h). No standard-library templates here (an inline
// template instantiated with wide-ISA flags could be merged by the linker into baseline code).
//
// V provides: T (element), R (register), N (lanes), MR (rows per tile), kCells (cells of a tile whose
// epilogues run interleaved, cells/lstm-inl.h), kPairOneRow / kPairTwoRows (a one-row / two-row tile of the
// recurrence takes two unit blocks), load, store, stream (a non-temporal store to an aligned address), set1,
// zero, add, sub, mul, div, fma(a, b, c) = a * b + c, abs,
// max_keep_nan(lo, x) (x when x is NaN), select_ge0(x, a, b) = x >= 0 ? a : b,
// select_lt(x, lim, a, b) = x < lim ? a : b, copysign(mag, sgn), and pow2_magic(t): 2^n from
// t = n + magic (n integral, within the normal exponent range; see ExpConst in activations-inl.h).
//
// SUMMATION ORDER: every product below runs one FMA chain per output element in k (or row) order, which is
// what makes results independent of tiling and thread count.

template <int K>
struct IntC {
  static constexpr int value = K;
};

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

// The accumulators' start of a product from scratch.
struct FromZero {
  template <class R>
  R operator()(int, int, R zero) const {
    return zero;
  }
};

// For column blocks b in [b0, b1): acc = init(r, b) + sum_k a[r][k] * panel_b[k][0 .. N) with
// panel_b = panels + b * panel_elems ([K][N] each), then emit(r, b, acc) for each of the MR rows. init(r, b, zero)
// gives the start of each chain (a product taken in slices of k resumes from the partial sums it stored: the
// same chain, the same bits). Four blocks share a tile where they can, so a tile keeps 4 * MR independent FMA
// chains in flight. The single-vector GEMM of projections and of backward.
template <class V, int MR, class Emit, class Init = FromZero>
inline void panel_products(int K, const typename V::T* const* a, const typename V::T* panels, std::int64_t panel_elems,
                           int b0, int b1, Emit emit, Init init = {}) {
  using R = typename V::R;
  int b = b0;
  auto run = [&](auto nblk) {
    constexpr int NB = decltype(nblk)::value;
    R acc[MR][NB];
    const typename V::T* w[NB];
    for (int j = 0; j < NB; ++j) {
      w[j] = panels + static_cast<std::int64_t>(b + j) * panel_elems;
      for (int r = 0; r < MR; ++r) acc[r][j] = init(r, b + j, V::zero());
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

// Calls f(IntC<mr>{}, m0) for a tail of 1 <= mr < MR rows starting at m0 (tile shapes are templates).
template <int MR, class F>
inline void dispatch_tail(int mr, int m0, F f) {
  if (mr <= 0) return;
  if constexpr (MR > 1)
    if (mr == 1) return f(IntC<1>{}, m0);
  if constexpr (MR > 2)
    if (mr == 2) return f(IntC<2>{}, m0);
  if constexpr (MR > 3)
    if (mr == 3) return f(IntC<3>{}, m0);
  if constexpr (MR > 4)
    if (mr == 4) return f(IntC<4>{}, m0);
  if constexpr (MR > 5)
    if (mr == 5) return f(IntC<5>{}, m0);
  if constexpr (MR > 6)
    if (mr == 6) return f(IntC<6>{}, m0);
  if constexpr (MR > 7)
    if (mr == 7) return f(IntC<7>{}, m0);
}

// Calls f(IntC<MR>{}, r0) over full tiles of MR of the n rows, then once for the tail.
template <int MR, class F>
inline void over_rows(int n, F f) {
  int r = 0;
  for (; r + MR <= n; r += MR) f(IntC<MR>{}, r);
  dispatch_tail<MR>(n - r, r, f);
}

// acc[r][g] += sum_m a(m)[r] * b(m)[g * N ..] for rows m of [m0, m1): the outer-product form of the weight
// gradients (r: MR columns of the layer input / h, g: NG vectors of the packed gate rows). a(m), b(m): where
// row m's operands start (a pointer array's entry, or base + m * stride for rows packed in a chunk).
template <class V, int MR, int NG, class ARow, class BRow>
inline void tile_outer(int m0, int m1, ARow arow, BRow brow, typename V::R (&acc)[MR][NG]) {
  using T = typename V::T;
  using R = typename V::R;
  for (int m = m0; m < m1; ++m) {
    const T* a = arow(m);
    const T* b = brow(m);
    R av[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) av[r] = V::set1(a[r]);
#pragma GCC unroll 4
    for (int g = 0; g < NG; ++g) {
      const R bv = V::load(b + g * V::N);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) acc[r][g] = V::fma(av[r], bv, acc[r][g]);
    }
  }
}
