// The weight and input gradients of one layer, over all live rows of the sequence at once (after the
// recurrence of backward produced dz), written once over the vector traits V, the cell C and the operand
// policy O (operands-inl.h). Each output element is one chain in a fixed row order (t ascending, r
// ascending; a converting policy takes the rows in consecutive pairs), so gradients are bitwise reproducible
// for any thread count. Bias and cell-parameter gradients are fp32 / fp64 sums whatever the policy. Included
// INSIDE a family's namespace.

template <class V, class C, class O>
struct Grads {
  using T = typename V::T;
  using R = typename V::R;
  static constexpr int N = V::N;
  static constexpr int NG = C::kGates;
  static constexpr int G4 = NG * N;
  static constexpr int kRowChunk = GradTask::kRowChunk;  // rows per pass (their operands stay in L2)

  const GradTask& tk;

  // out_t[c][block's G4 gate rows] (+)= sum over the chunk's rows m of rows[m][c] * dzp[m][G4], for the MR
  // columns from c0 (a broadcast of MR neighbours per row). The chunk's operand rows and the block's dz panel
  // are packed contiguously first: the rows' own strides (I, h_ld, NG * c_ld) are often powers of two, which
  // put every row's line of a column in the same few L1 and L2 sets (T=100 B=64 H=512 on AMD Zen 3: the
  // broadcasts missed every cache).
  template <int MR>
  void cols(int c0, int mc, const T* rows, std::int64_t ld, const T* dzp, T* out, bool first) {
    R acc[MR][NG];
    for (int r = 0; r < MR; ++r)
      for (int g = 0; g < NG; ++g) acc[r][g] = first ? V::zero() : V::load(out + (c0 + r) * NG * tk.c_ld + g * N);
    tile_outer<V, MR, NG>(0, mc, [=](int m) { return rows + m * ld + c0; }, [=](int m) { return dzp + m * G4; }, acc);
    for (int r = 0; r < MR; ++r)
      for (int g = 0; g < NG; ++g) V::store(out + (c0 + r) * NG * tk.c_ld + g * N, acc[r][g]);
  }

  // Every column of a chunk's packed rows (n values each, padded_ld<T>(n) apart) against the block's dz panel.
  void all_cols(int n, int mc, const T* rows, const T* dzp, T* out, bool first) {
    const std::int64_t ld = padded_ld<T>(n);
    over_rows<V::MR>(
        n, [&](auto mr, int c0) { this->template cols<decltype(mr)::value>(c0, mc, rows, ld, dzp, out, first); });
  }

  // The row stride of a chunk's packed rows of n elements E (values, or bf16 pairs): whole vectors of 16 plus
  // one cache line, so consecutive rows start in consecutive cache sets.
  template <class E>
  static std::int64_t padded_ld(int n) {
    return (static_cast<std::int64_t>(n) + 15) / 16 * 16 + static_cast<std::int64_t>(64 / sizeof(E));
  }

  // Copies rows src[m0 .. m0 + mc) (n values each) to dst, padded_ld<T>(n) apart.
  static void pack_rows(const void* const* src, int m0, int mc, int n, T* dst) {
    const std::int64_t ld = padded_ld<T>(n);
    for (int m = 0; m < mc; ++m) std::memcpy(dst + m * ld, src[m0 + m], static_cast<std::size_t>(n) * sizeof(T));
  }

  void run(int tid, int nthreads) {
    const int hout = tk.P > 0 ? tk.P : tk.H;
    int nb_begin, nb_end;
    split_range((tk.H + N - 1) / N, tid, nthreads, &nb_begin, &nb_end);
    if constexpr (O::kConvert) {
      weights_in_pairs(nb_begin, nb_end, hout, tid);
    } else {
      // Scratch: the dz panel [kRowChunk][G4], then the chunk's x and h_{t-1} rows, padded_ld apart.
      T* dzp = static_cast<T*>(tk.work[tid]);
      T* xp = dzp + kRowChunk * G4;
      T* hp = xp + kRowChunk * padded_ld<T>(tk.I);
      for (int m0 = 0; m0 < tk.M; m0 += kRowChunk) {
        const int mc = tk.M - m0 < kRowChunk ? tk.M - m0 : kRowChunk;
        pack_rows(tk.x_rows, m0, mc, tk.I, xp);
        pack_rows(tk.hprev_rows, m0, mc, hout, hp);
        for (int nb = nb_begin; nb < nb_end; ++nb) {
          for (int m = 0; m < mc; ++m) {
            const T* src = static_cast<const T*>(tk.dz_rows[m0 + m]) + nb * G4;
            for (int g = 0; g < NG; ++g) V::store(dzp + m * G4 + g * N, V::load(src + g * N));
          }
          all_cols(tk.I, mc, xp, dzp, static_cast<T*>(tk.gw_ih_t) + nb * G4, m0 == 0);
          all_cols(hout, mc, hp, dzp, static_cast<T*>(tk.gw_hh_t) + nb * G4, m0 == 0);
        }
      }
    }
    for (int nb = nb_begin; nb < nb_end; ++nb) {
      // Bias and cell parameters: plain sums over the rows, in the same order.
      R db[NG], dp[C::kParams];
      for (int g = 0; g < NG; ++g) db[g] = V::zero();
      for (int g = 0; g < C::kParams; ++g) dp[g] = V::zero();
      const int u0 = nb * N;
      for (int m = 0; m < tk.M; ++m) {
        const T* dz = static_cast<const T*>(tk.dz_rows[m]) + nb * G4;
        for (int g = 0; g < NG; ++g) db[g] = V::add(db[g], V::load(dz + g * N));
        if (tk.peephole)
          C::param_grads(dp, dz, V::load(static_cast<const T*>(tk.cprev_rows[m]) + u0),
                         V::load(static_cast<const T*>(tk.c_rows[m]) + u0));
      }
      for (int g = 0; g < NG; ++g) V::store(static_cast<T*>(tk.gb) + nb * G4 + g * N, db[g]);
      if (tk.peephole)
        for (int g = 0; g < C::kParams; ++g) V::store(static_cast<T*>(tk.gp) + g * tk.c_ld + u0, dp[g]);
    }
    if (tk.P > 0) {  // dW_hr^T [H][h_ld] = sum_m hpre[m]^T dh[m], my blocks of P
      int pb_begin, pb_end;
      split_range((tk.P + N - 1) / N, tid, nthreads, &pb_begin, &pb_end);
      for (int pb = pb_begin; pb < pb_end; ++pb) {
        for (int c = 0; c < tk.H; c += V::MR) {
          const int mr = tk.H - c < V::MR ? tk.H - c : V::MR;
          hr_cols_dispatch(mr, c, pb);
        }
      }
    }
  }

  // A converting policy's weight gradients: per chunk of rows, each thread packs the chunk's layer inputs and
  // h_{t-1} as pairs of consecutive rows per column (its own copy: a conversion per value against the block
  // products of all its units), and per block the dz panel as pairs of rows; O::outer multiplies them.
  //   scratch: dz pairs [kRowChunk / 2][G4], x pairs [kRowChunk / 2][pair_ld(I)], h pairs [..][pair_ld(hout)]
  static std::int64_t pair_ld(int n) { return padded_ld<typename O::A>(n); }

  void weights_in_pairs(int nb_begin, int nb_end, int hout, int tid) {
    using A = typename O::A;
    constexpr int kPairs = kRowChunk / 2;
    A* dzp = static_cast<A*>(tk.work[tid]);
    A* xp = dzp + kPairs * G4;
    A* hp = xp + kPairs * pair_ld(tk.I);
    auto row = [](const void* const* rows, int m, int end) {
      return m < end ? static_cast<const T*>(rows[m]) : static_cast<const T*>(nullptr);
    };
    for (int m0 = 0; m0 < tk.M; m0 += kRowChunk) {
      const int end = tk.M < m0 + kRowChunk ? tk.M : m0 + kRowChunk, pairs = (end - m0 + 1) / 2;
      for (int q = 0; q < pairs; ++q) {
        const int m = m0 + 2 * q;
        O::pair_rows(row(tk.x_rows, m, end), row(tk.x_rows, m + 1, end), tk.I, xp + q * pair_ld(tk.I));
        O::pair_rows(row(tk.hprev_rows, m, end), row(tk.hprev_rows, m + 1, end), hout, hp + q * pair_ld(hout));
      }
      for (int nb = nb_begin; nb < nb_end; ++nb) {
        for (int q = 0; q < pairs; ++q) {
          const int m = m0 + 2 * q;
          const T* a = row(tk.dz_rows, m, end) + nb * G4;
          const T* b = m + 1 < end ? row(tk.dz_rows, m + 1, end) + nb * G4 : nullptr;
          for (int g = 0; g < NG; ++g)
            O::pair_rows(a + g * N, b ? b + g * N : nullptr, N, dzp + (static_cast<std::int64_t>(q) * NG + g) * N);
        }
        pair_cols(tk.I, pairs, xp, pair_ld(tk.I), dzp, static_cast<T*>(tk.gw_ih_t) + nb * G4, m0 == 0);
        pair_cols(hout, pairs, hp, pair_ld(hout), dzp, static_cast<T*>(tk.gw_hh_t) + nb * G4, m0 == 0);
      }
    }
  }

  void pair_cols(int ncols, int pairs, const typename O::A* ap, std::int64_t ld, const typename O::A* dzp, T* out,
                 bool first) {
    over_rows<O::kRows>(ncols, [&](auto mr, int c0) {
      constexpr int MR = decltype(mr)::value;
      R acc[MR][NG];
      for (int r = 0; r < MR; ++r)
        for (int g = 0; g < NG; ++g) acc[r][g] = first ? V::zero() : V::load(out + (c0 + r) * NG * tk.c_ld + g * N);
      O::template outer<MR, NG>(pairs, ap, ld, c0, dzp, acc);
      for (int r = 0; r < MR; ++r)
        for (int g = 0; g < NG; ++g) V::store(out + (c0 + r) * NG * tk.c_ld + g * N, acc[r][g]);
    });
  }

  template <int MR>
  void hr_cols(int c0, int pb) {
    R acc[MR][1];
    for (int r = 0; r < MR; ++r) acc[r][0] = V::zero();
    tile_outer<V, MR, 1>(
        0, tk.M, [&](int m) { return static_cast<const T*>(tk.hpre_rows[m]) + c0; },
        [&](int m) { return static_cast<const T*>(tk.dh_rows[m]) + static_cast<std::int64_t>(pb) * N; }, acc);
    for (int r = 0; r < MR; ++r) V::store(static_cast<T*>(tk.gw_hr_t) + (c0 + r) * tk.h_ld + pb * N, acc[r][0]);
  }
  void hr_cols_dispatch(int mr, int c0, int pb) {
    if (mr == V::MR) return hr_cols<V::MR>(c0, pb);
    dispatch_tail<V::MR>(mr, c0, [&](auto m, int c) { this->template hr_cols<decltype(m)::value>(c, pb); });
  }
};

template <class V, class C, class O>
void run_grads_impl(const GradTask& task, int tid, int nthreads) {
  Grads<V, C, O> g{task};
  g.run(tid, nthreads);
}

// dx(m) = (sum_d dz_d(m) W_ih_d) * mask(m), my column blocks of I (any cell: dz rows are K = gates * c_ld wide),
// with the operands of policy O (a converting policy converts each thread's MR rows of dz once).
template <class V, class O>
struct Dx {
  using T = typename V::T;
  using R = typename V::R;
  using A = typename O::A;
  static constexpr int N = V::N;
  const DxTask& tk;
  A* scratch;  // converting policy: [2][MR][row_elems(K)]

  template <int MR, int NBLK>
  void rows(const A* const (&a)[2][MR], const float (&scales)[2][MR], int m0, int ib) {
    R acc[MR][NBLK];
    for (int r = 0; r < MR; ++r)
      for (int b = 0; b < NBLK; ++b) acc[r][b] = V::zero();
    for (int d = 0; d < tk.D; ++d) {
      const void* w[NBLK];
      for (int b = 0; b < NBLK; ++b)
        w[b] = static_cast<const char*>(tk.w_ih_t[d]) +
               static_cast<std::int64_t>(ib + b) * O::panel_bytes(static_cast<int>(tk.K), 1);
      O::template accumulate<MR, NBLK, 1>(static_cast<int>(tk.K), a[d], scales[d], w, acc);
    }
    for (int b = 0; b < NBLK; ++b) {
      const int c0 = (ib + b) * N, count = tk.I - c0 < N ? tk.I - c0 : N;
      for (int r = 0; r < MR; ++r) {
        R v = acc[r][b];
        if (tk.mask_rows) {
          v = V::mul(v, load_partial<V>(static_cast<const T*>(tk.mask_rows[m0 + r]) + c0, count));
        }
        store_partial<V>(static_cast<T*>(tk.dx_rows[m0 + r]) + c0, v, count);
      }
    }
  }

  template <int MR>
  void rows_all(int m0, int ib_begin, int ib_end) {
    const A* a[2][MR];
    float scales[2][MR];
    for (int d = 0; d < tk.D; ++d)
      for (int r = 0; r < MR; ++r) {
        const T* src = static_cast<const T*>(tk.dz_rows[d][m0 + r]);
        if constexpr (O::kConvert) {
          A* dst = scratch + (d * MR + r) * O::row_elems(static_cast<int>(tk.K));
          O::convert(src, static_cast<int>(tk.K), dst, &scales[d][r]);
          a[d][r] = dst;
        } else {
          a[d][r] = src;
        }
      }
    int ib = ib_begin;
    for (; ib + 4 <= ib_end; ib += 4) rows<MR, 4>(a, scales, m0, ib);
    for (; ib < ib_end; ++ib) rows<MR, 1>(a, scales, m0, ib);
  }

  // The native policy when my columns of W_ih^T outgrow L2 (tk.k_slice > 0): rows in chunks of m_slice, then per
  // direction k in slices whose panels stay in L2 while the chunk's row tiles pass over them, columns in groups
  // of four panels. Partial sums wait in dx, so each element is still one FMA chain in the order of rows<>
  // (direction 0 over k, then direction 1): the same bits; the mask is applied with the last slice.
  template <int MR>
  void slice(int m0, int d, int k0, int kn, int b0, int b1, bool first, bool last) {
    const T* a[MR];
    for (int r = 0; r < MR; ++r) a[r] = static_cast<const T*>(tk.dz_rows[d][m0 + r]) + k0;
    const auto out = [&](int r, int b, int* count) {
      const int c0 = b * N;
      *count = tk.I - c0 < N ? tk.I - c0 : N;
      return static_cast<T*>(tk.dx_rows[m0 + r]) + c0;
    };
    panel_products<V, MR>(
        kn, a, static_cast<const T*>(tk.w_ih_t[d]) + static_cast<std::int64_t>(k0) * N, tk.K * N, b0, b1,
        [&](int r, int b, R v) {
          int count;
          T* dst = out(r, b, &count);
          if (last && tk.mask_rows)
            v = V::mul(v, load_partial<V>(static_cast<const T*>(tk.mask_rows[m0 + r]) + b * N, count));
          store_partial<V>(dst, v, count);
        },
        [&](int r, int b, R zero) {
          int count;
          const T* src = out(r, b, &count);
          return first ? zero : load_partial<V>(src, count);
        });
  }

  void blocked(int ib_begin, int ib_end) {
    const int K = static_cast<int>(tk.K), kc = tk.k_slice, mc = (tk.m_slice > V::MR ? tk.m_slice / V::MR : 1) * V::MR;
    for (int m0 = 0; m0 < tk.M; m0 += mc) {
      const int mn = tk.M - m0 < mc ? tk.M - m0 : mc;
      for (int d = 0; d < tk.D; ++d) {
        for (int k0 = 0; k0 < K; k0 += kc) {
          const int kn = K - k0 < kc ? K - k0 : kc;
          const bool first = d == 0 && k0 == 0, last = d == tk.D - 1 && k0 + kn == K;
          for (int b0 = ib_begin; b0 < ib_end; b0 += 4) {
            const int b1 = ib_end - b0 < 4 ? ib_end : b0 + 4;
            over_rows<V::MR>(mn, [&](auto mr, int r0) {
              this->template slice<decltype(mr)::value>(m0 + r0, d, k0, kn, b0, b1, first, last);
            });
          }
        }
      }
    }
  }

  void run(int tid, int nthreads) {
    int ib_begin, ib_end;
    split_range((tk.I + N - 1) / N, tid, nthreads, &ib_begin, &ib_end);
    if constexpr (!O::kConvert) {
      if (tk.k_slice > 0) return blocked(ib_begin, ib_end);
    }
    over_rows<V::MR>(tk.M,
                     [&](auto mr, int m0) { this->template rows_all<decltype(mr)::value>(m0, ib_begin, ib_end); });
  }
};

template <class V, class O>
void run_dx_impl(const DxTask& task, int tid, int nthreads, void* scratch) {
  Dx<V, O> dx{task, static_cast<typename O::A*>(scratch)};
  dx.run(tid, nthreads);
}

// The per-thread scratch of training (run_backward, run_grads, run_dx use it one after the other): the native
// dz panel of the weight gradients, or a converting policy's operands.
template <class V, class C, class O>
std::size_t training_workspace_impl(int B, int widest_input, int hout, std::int64_t c_ld) {
  (void)B;
  constexpr int G4 = C::kGates * V::N;
  const std::size_t chunk = GradTask::kRowChunk;
  using G = Grads<V, C, O>;
  using T = typename V::T;
  if (!O::kConvert)
    return chunk * (G4 + G::template padded_ld<T>(widest_input) + G::template padded_ld<T>(hout)) * sizeof(T);
  const std::size_t K = static_cast<std::size_t>(C::kGates * c_ld), word = sizeof(typename O::A);
  const std::size_t grads = chunk / 2 * (G4 + G::pair_ld(widest_input) + G::pair_ld(hout)) * word;
  const std::size_t rows = 2 * O::kRows * static_cast<std::size_t>(O::row_elems(static_cast<int>(K))) * word;
  return grads > rows ? grads : rows;
}
