// The LSTM cell as a policy of the recurrences: what a step does with one unit vector's pre-activations
// (the epilogue of the step's GEMM, in registers), its backward, and the gradients of its own parameters.
// recurrence_fwd-inl.h, recurrence_bwd-inl.h and grads-inl.h are written over a cell C with this interface;
// another cell (a layer-norm LSTM, say) is another file with the same members, added to kernels/family-inl.h.
// Included INSIDE a family's namespace, after activations-inl.h.
//
//   z = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh                  (the recurrence computes this)
//   peephole:  z_i += p_i * c_{t-1};  z_f += p_f * c_{t-1}
//   i = sigmoid(z_i); f = sigmoid(z_f); g = tanh(z_g)
//   c_t = f * c_{t-1} + i * g
//   peephole:  z_o += p_o * c_t
//   o = sigmoid(z_o);  h_t = o * tanh(c_t)                         (the recurrence projects h_t when P > 0)

template <class V>
struct LstmCell {
  using T = typename V::T;
  using R = typename V::R;
  static constexpr int N = V::N;
  static constexpr int kGates = 4;   // pre-activation vectors per unit block, packed [i, f, g, o]
  static constexpr int kParams = 3;  // per-unit parameters, stored [kParams][ld]: p_i, p_f, p_o

  // M unit vectors' cells (of a register tile's rows and blocks). z[k]: the pre-activations in, the
  // post-activation gates out (what backward needs); c[k]: c_{t-1} in, c_t out; h[k]: h_t = o * tanh(c_t) out.
  // p[k]: the cell parameters at cell k's unit vector (rows ld apart), read only with peepholes. Each stage
  // runs over the M cells before the next one starts, so their independent chains (an activation is a
  // dependent chain of some fifteen operations and a division) interleave in the instruction stream instead
  // of waiting on the out-of-order window; every cell gets the same operations, so the same bits.
  template <int M>
  static inline void forward(R (*z)[kGates], R* c, R* h, const T* const* p, std::int64_t ld, bool peephole) {
    if (peephole) {
      for (int r = 0; r < M; ++r) {
        z[r][0] = V::fma(V::load(p[r]), c[r], z[r][0]);
        z[r][1] = V::fma(V::load(p[r] + ld), c[r], z[r][1]);
      }
    }
    for (int r = 0; r < M; ++r) z[r][0] = Act<V>::sigmoid(z[r][0]);  // i
    for (int r = 0; r < M; ++r) z[r][1] = Act<V>::sigmoid(z[r][1]);  // f
    for (int r = 0; r < M; ++r) z[r][2] = Act<V>::tanh(z[r][2]);     // g
    for (int r = 0; r < M; ++r) c[r] = V::fma(z[r][1], c[r], V::mul(z[r][0], z[r][2]));
    if (peephole)
      for (int r = 0; r < M; ++r) z[r][3] = V::fma(V::load(p[r] + 2 * ld), c[r], z[r][3]);
    for (int r = 0; r < M; ++r) z[r][3] = Act<V>::sigmoid(z[r][3]);  // o
    for (int r = 0; r < M; ++r) h[r] = V::mul(z[r][3], Act<V>::tanh(c[r]));
  }

  // h_t again from the saved gates of a unit block ([kGates][N]) and c_t: backward recomputes it.
  static inline R output(const T* gates, R c) { return V::mul(V::load(gates + 3 * N), Act<V>::tanh(c)); }

  // The backward of one unit vector of one row. gates: the saved post-activation gates of the unit block;
  // cn = c_t, cp = c_{t-1}; dh = dL/dh_t (before the projection); dc: dL/dc_t carried from step t+1 in,
  // dL/dc_{t-1} out. Writes dz = dL/dz ([kGates][N], the packed gate order).
  static inline void backward(const T* gates, R cn, R cp, R dh, R& dc, const T* p, std::int64_t ld, bool peephole,
                              T* dz) {
    const R one = V::set1(T(1));
    const R i = V::load(gates), f = V::load(gates + N), gg = V::load(gates + 2 * N), o = V::load(gates + 3 * N);
    const R tc = Act<V>::tanh(cn);
    const R dzo = V::mul(V::mul(dh, tc), V::mul(o, V::sub(one, o)));
    R dcn = V::fma(V::mul(dh, o), V::sub(one, V::mul(tc, tc)), dc);
    if (peephole) dcn = V::fma(dzo, V::load(p + 2 * ld), dcn);
    const R dzi = V::mul(V::mul(dcn, gg), V::mul(i, V::sub(one, i)));
    const R dzf = V::mul(V::mul(dcn, cp), V::mul(f, V::sub(one, f)));
    const R dzg = V::mul(V::mul(dcn, i), V::sub(one, V::mul(gg, gg)));
    R dcp = V::mul(dcn, f);
    if (peephole) dcp = V::fma(dzf, V::load(p + ld), V::fma(dzi, V::load(p), dcp));
    V::store(dz, dzi);
    V::store(dz + N, dzf);
    V::store(dz + 2 * N, dzg);
    V::store(dz + 3 * N, dzo);
    dc = dcp;
  }

  // Adds one row's contribution to the gradients of the cell parameters (peepholes only): dz of the unit
  // block, cp = c_{t-1}, cn = c_t.
  static inline void param_grads(R (&dp)[kParams], const T* dz, R cp, R cn) {
    dp[0] = V::fma(V::load(dz), cp, dp[0]);
    dp[1] = V::fma(V::load(dz + N), cp, dp[1]);
    dp[2] = V::fma(V::load(dz + 3 * N), cn, dp[2]);
  }
};
