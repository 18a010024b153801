// The weight and input gradients of one layer, over all live rows of the sequence at once (after the
// recurrence of backward produced dz), written once over the vector traits V and the cell C. Each output
// element is one chain in a fixed row order (t ascending, r ascending), so gradients are bitwise
// reproducible for any thread count. Included INSIDE a family's namespace.

template <class V, class C>
struct Grads {
  using T = typename V::T;
  using R = typename V::R;
  static constexpr int N = V::N;
  static constexpr int NG = C::kGates;
  static constexpr int G4 = NG * N;
  static constexpr int kRowChunk = GradTask::kRowChunk;  // rows per pass (the dz panel: 128 KB float, in L2)

  const GradTask& tk;

  // out_t[c][block's G4 gate rows] (+)= sum over the chunk's rows m of rows[m0 + m][c] * dzp[m][G4], for the
  // MR columns from c0: each input row read where it lies (a broadcast of MR neighbours), the block's dz
  // panel packed contiguously (rows of dz are NG * c_ld apart: a power of two that would crowd a few L1 sets).
  template <int MR>
  void cols(int c0, int m0, int mc, const void* const* rows, const void* const* dzp_rows, T* out, bool first) {
    R acc[MR][NG];
    for (int r = 0; r < MR; ++r)
      for (int g = 0; g < NG; ++g) acc[r][g] = first ? V::zero() : V::load(out + (c0 + r) * NG * tk.c_ld + g * N);
    tile_outer<V, MR, NG>(0, mc, rows + m0, c0, dzp_rows, 0, acc);
    for (int r = 0; r < MR; ++r)
      for (int g = 0; g < NG; ++g) V::store(out + (c0 + r) * NG * tk.c_ld + g * N, acc[r][g]);
  }

  void all_cols(int ncols, int m0, int mc, const void* const* rows, const void* const* dzp_rows, T* out, bool first) {
    over_rows<V>(ncols, [&](auto mr, int c0) {
      this->template cols<decltype(mr)::value>(c0, m0, mc, rows, dzp_rows, out, first);
    });
  }

  void run(int tid, int nthreads) {
    const int hout = tk.P > 0 ? tk.P : tk.H;
    int nb_begin, nb_end;
    split_range((tk.H + N - 1) / N, tid, nthreads, &nb_begin, &nb_end);
    T* dzp = static_cast<T*>(tk.work[tid]);  // [kRowChunk][G4]
    const void* dzp_rows[kRowChunk];
    for (int m = 0; m < kRowChunk; ++m) dzp_rows[m] = dzp + static_cast<std::int64_t>(m) * G4;
    for (int m0 = 0; m0 < tk.M; m0 += kRowChunk) {
      const int mc = tk.M - m0 < kRowChunk ? tk.M - m0 : kRowChunk;
      for (int nb = nb_begin; nb < nb_end; ++nb) {
        for (int m = 0; m < mc; ++m) {
          const T* src = static_cast<const T*>(tk.dz_rows[m0 + m]) + nb * G4;
          for (int g = 0; g < NG; ++g) V::store(dzp + m * G4 + g * N, V::load(src + g * N));
        }
        all_cols(tk.I, m0, mc, tk.x_rows, dzp_rows, static_cast<T*>(tk.gw_ih_t) + nb * G4, m0 == 0);
        all_cols(hout, m0, mc, tk.hprev_rows, dzp_rows, static_cast<T*>(tk.gw_hh_t) + nb * G4, m0 == 0);
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

  template <int MR>
  void hr_cols(int c0, int pb) {
    R acc[MR][1];
    for (int r = 0; r < MR; ++r) acc[r][0] = V::zero();
    tile_outer<V, MR, 1>(0, tk.M, tk.hpre_rows, c0, tk.dh_rows, static_cast<std::int64_t>(pb) * N, acc);
    for (int r = 0; r < MR; ++r) V::store(static_cast<T*>(tk.gw_hr_t) + (c0 + r) * tk.h_ld + pb * N, acc[r][0]);
  }
  void hr_cols_dispatch(int mr, int c0, int pb) {
    if (mr == V::MR) return hr_cols<V::MR>(c0, pb);
    dispatch_tail<V>(mr, c0, [&](auto m, int c) { this->template hr_cols<decltype(m)::value>(c, pb); });
  }
};

template <class V, class C>
void run_grads_impl(const GradTask& task, int tid, int nthreads) {
  Grads<V, C> g{task};
  g.run(tid, nthreads);
}

// dx(m) = (sum_d dz_d(m) W_ih_d) * mask(m), my column blocks of I (any cell: dz rows are K = gates * c_ld wide).
template <class V>
struct Dx {
  using T = typename V::T;
  using R = typename V::R;
  static constexpr int N = V::N;
  const DxTask& tk;

  template <int MR, int NBLK>
  void rows(int m0, int ib) {
    R acc[MR][NBLK];
    for (int r = 0; r < MR; ++r)
      for (int b = 0; b < NBLK; ++b) acc[r][b] = V::zero();
    for (int d = 0; d < tk.D; ++d) {
      const T* a[MR];
      for (int r = 0; r < MR; ++r) a[r] = static_cast<const T*>(tk.dz_rows[d][m0 + r]);
      const T* w[NBLK];
      for (int b = 0; b < NBLK; ++b)
        w[b] = static_cast<const T*>(tk.w_ih_t[d]) + static_cast<std::int64_t>(ib + b) * tk.K * N;
      tile<V, MR, NBLK, 1>(static_cast<int>(tk.K), a, w, acc);
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
    int ib = ib_begin;
    for (; ib + 4 <= ib_end; ib += 4) rows<MR, 4>(m0, ib);
    for (; ib < ib_end; ++ib) rows<MR, 1>(m0, ib);
  }

  void run(int tid, int nthreads) {
    int ib_begin, ib_end;
    split_range((tk.I + N - 1) / N, tid, nthreads, &ib_begin, &ib_end);
    over_rows<V>(tk.M, [&](auto mr, int m0) { this->template rows_all<decltype(mr)::value>(m0, ib_begin, ib_end); });
  }
};

template <class V>
void run_dx_impl(const DxTask& task, int tid, int nthreads) {
  Dx<V> dx{task};
  dx.run(tid, nthreads);
}
