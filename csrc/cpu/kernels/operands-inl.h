// How the forward recurrence feeds its products: the operand policy O of Direction (recurrence_fwd-inl.h).
// Included INSIDE a family's namespace, after gemm-inl.h. A policy says how a weight panel is laid out, how an
// activation row (x for the input projection, h_{t-1} for the step) becomes operands, and how a register tile
// accumulates their products into the fp32/fp64 accumulators of the cell:
//
//   using A                           the element type of an operand row
//   kRows                             rows per register tile (the accumulators and operands it keeps in
//                                     registers without a spill: the tile shape is the policy's)
//   kConvert                          rows are converted into A first (false: the rows are used where they lie)
//   row_elems(K)                      A elements of a converted row of K values (a multiple of 16: whole
//                                     vectors may be written past K, as zeros)
//   panel_bytes(K, NG)                bytes of one unit block's panel of K values by NG gates
//   convert(src, K, dst, scale)       one row of K compute-type values -> dst, and its dequantization scale
//   accumulate<MR, NBLK, NG>(K, a, scales, w, acc)
//                                     acc[r][b * NG + g] += the products of row r with panel b's gate g over k
//   training policies also give the weight gradients' operands (pairs of rows along the sum: bf16-inl.h)
//
// The native policy (operands in the compute type) is the fp32 / fp64 families' own GEMM tile, with its fixed
// k order. Low-precision policies (bf16-inl.h, int8-inl.h) keep the accumulators, the cell math and the state
// in fp32: only the products' operands are narrowed.

template <class V>
struct NativeOps {
  using T = typename V::T;
  using R = typename V::R;
  using A = T;
  static constexpr bool kConvert = false;
  static constexpr int kRows = V::MR;
  static constexpr bool kTrains = true;  // gives the weight gradients' operands too

  static inline std::int64_t row_elems(int K) { return K; }
  static inline std::size_t panel_bytes(int K, int NG) { return static_cast<std::size_t>(K) * NG * V::N * sizeof(T); }
  static inline void convert(const T*, int, A*, float*) {}

  template <int MR, int NBLK, int NG>
  static inline void accumulate(int K, const A* const* a, const float*, const void* const* w, R (&acc)[MR][NBLK * NG]) {
    const T* wt[NBLK];
    for (int b = 0; b < NBLK; ++b) wt[b] = static_cast<const T*>(w[b]);
    tile<V, MR, NBLK, NG>(K, a, wt, acc);
  }
};

// For column blocks b in [b0, b1): acc = the MR operand rows times panel b (O's panels of K values by one
// vector, panel_bytes apart), then emit(r, b, acc) for each row. Four blocks share a tile where they can, so
// a tile keeps 4 * MR independent chains in flight. The single-vector GEMM of backward (dh = dz W_hh, and
// dx = dz W_ih); with the native policy it is panel_products.
template <class V, class O, int MR, class Emit>
inline void products(int K, const typename O::A* const* a, const float* scales, const void* panels,
                     std::size_t panel_bytes, int b0, int b1, Emit emit) {
  using R = typename V::R;
  int b = b0;
  auto run = [&](auto nblk) {
    constexpr int NB = decltype(nblk)::value;
    R acc[MR][NB];
    const void* w[NB];
    for (int j = 0; j < NB; ++j) {
      w[j] = static_cast<const char*>(panels) + static_cast<std::int64_t>(b + j) * panel_bytes;
      for (int r = 0; r < MR; ++r) acc[r][j] = V::zero();
    }
    O::template accumulate<MR, NB, 1>(K, a, scales, w, acc);
    for (int j = 0; j < NB; ++j)
      for (int r = 0; r < MR; ++r) emit(r, b + j, acc[r][j]);
    b += NB;
  };
  while (b + 4 <= b1) run(IntC<4>{});
  while (b < b1) run(IntC<1>{});
}
