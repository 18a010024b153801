// Backpropagation through time, written once over the vector traits V (see lstm_kernels.h, which this
// follows inside the same per-family namespace). The per-step recurrence keeps the pointwise backward next
// to the GEMM that consumes it; the weight gradients are sums over all live rows at once, each output
// element one chain in a fixed row order, so gradients are bitwise reproducible for any thread count.

template <class V>
struct Backward {
  using T = typename V::T;
  using R = typename V::R;
  static constexpr int N = V::N;
  static constexpr int G4 = 4 * N;

  const BackTask& tk;
  int nb_begin, nb_end;  // my unit blocks
  int ob_begin, ob_end;  // my blocks of h's columns (Hout)
  int hout;

  Backward(const BackTask& task, int tid, int n) : tk(task) {
    hout = tk.P > 0 ? tk.P : tk.H;
    split_range((tk.H + N - 1) / N, tid, n, &nb_begin, &nb_end);
    split_range((hout + N - 1) / N, tid, n, &ob_begin, &ob_end);
  }

  int time_of(int s) const { return tk.reverse ? s : tk.steps - 1 - s; }  // backward runs time backwards
  int alive(int t) const { return tk.active ? tk.active[t] : tk.B; }
  std::int64_t row(int t, int r) const { return static_cast<std::int64_t>(t) * tk.B + r; }
  // The forward step before time t for row r, or -1 when t was the row's first step.
  int prev_time(int t, int r) const {
    if (!tk.reverse) return t - 1;
    return (t + 1 < tk.steps && r < alive(t + 1)) ? t + 1 : -1;
  }
  const T* c_prev(int t, int r) const {
    const int tp = prev_time(t, r);
    return tp < 0 ? static_cast<const T*>(tk.c0) + r * tk.c_ld
                  : static_cast<const T*>(tk.csave) + row(tp, r) * tk.c_ld;
  }
  T* dz_row(int t, int r) const { return static_cast<T*>(tk.dz) + row(t, r) * 4 * tk.c_ld; }
  const T* gates_row(int t, int r) const { return static_cast<const T*>(tk.gates) + row(t, r) * 4 * tk.c_ld; }

  // h_t (and o * tanh(c_t)) of every live row, from the saved gates and c.
  void recompute_h() {
    const bool proj = tk.P > 0;
    for (int t = 0; t < tk.steps; ++t) {
      for (int r = 0, n = alive(t); r < n; ++r) {
        const T* g = gates_row(t, r);
        const T* c = static_cast<const T*>(tk.csave) + row(t, r) * tk.c_ld;
        T* dst = proj ? static_cast<T*>(tk.hpre_all) + row(t, r) * tk.c_ld : static_cast<T*>(tk.hall) + row(t, r) * tk.h_ld;
        for (int nb = nb_begin; nb < nb_end; ++nb)
          V::store(dst + nb * N, V::mul(V::load(g + nb * G4 + 3 * N), Act<V>::tanh(V::load(c + nb * N))));
      }
    }
    if (!proj) return;
    barrier_wait(tk.barrier);
    for (int t = 0; t < tk.steps; ++t) {
      const int n = alive(t);
      int r = 0;
      for (; r + V::MR <= n; r += V::MR) project_rows<V::MR>(t, r);
      Direction<V>::dispatch_tail(n - r, r, [&](auto mr, int r0) { this->template project_rows<decltype(mr)::value>(t, r0); });
    }
  }
  template <int MR>
  void project_rows(int t, int r0) {
    const T* a[MR];
    for (int r = 0; r < MR; ++r) a[r] = static_cast<const T*>(tk.hpre_all) + row(t, r0 + r) * tk.c_ld;
    T* hall = static_cast<T*>(tk.hall);
    panel_products<V, MR>(tk.H, a, static_cast<const T*>(tk.w_hr), static_cast<std::int64_t>(tk.H) * N, ob_begin,
                          ob_end, [&](int r, int pb, R v) { V::store(hall + row(t, r0 + r) * tk.h_ld + pb * N, v); });
  }

  // dh(r) += dy(t, r) on my columns for the rows alive at t: the gradient reaching h_t in full.
  void add_dy(int t) {
    T* dh = static_cast<T*>(tk.dh);
    for (int r = 0, n = alive(t); r < n; ++r) {
      const std::int64_t urow = tk.dy_rows ? tk.dy_rows[r] : r;
      const T* dy = static_cast<const T*>(tk.dy) + t * tk.dy_st + urow * tk.dy_sb;
      for (int ob = ob_begin; ob < ob_end; ++ob) {
        const int c0 = ob * N, count = hout - c0 < N ? hout - c0 : N;
        V::store(dh + r * tk.h_ld + c0, V::add(V::load(dh + r * tk.h_ld + c0), load_partial<V>(dy + c0, count)));
        if (tk.dh_save) V::store(static_cast<T*>(tk.dh_save) + row(t, r) * tk.h_ld + c0, V::load(dh + r * tk.h_ld + c0));
      }
    }
  }

  // dpre(r) = dh(r) W_hr on my unit columns (P > 0).
  template <int MR>
  void dpre_rows(int r0) {
    const T* a[MR];
    for (int r = 0; r < MR; ++r) a[r] = static_cast<const T*>(tk.dh) + (r0 + r) * tk.h_ld;
    T* dpre = static_cast<T*>(tk.dpre);
    panel_products<V, MR>(tk.P, a, static_cast<const T*>(tk.w_hr_t), static_cast<std::int64_t>(tk.P) * N, nb_begin,
                          nb_end, [&](int r, int nb, R v) { V::store(dpre + (r0 + r) * tk.c_ld + nb * N, v); });
  }

  // The cell's backward on my units: gates -> dz, dc carried to c_{t-1}.
  void pointwise(int t) {
    const bool proj = tk.P > 0;
    const T* dhp = static_cast<const T*>(proj ? tk.dpre : tk.dh);
    const std::int64_t dhp_ld = proj ? tk.c_ld : tk.h_ld;
    const T* pp = static_cast<const T*>(tk.peep);
    const R one = V::set1(T(1));
    for (int r = 0, n = alive(t); r < n; ++r) {
      const T* g = gates_row(t, r);
      T* dz = dz_row(t, r);
      const T* cn_row = static_cast<const T*>(tk.csave) + row(t, r) * tk.c_ld;
      const T* cp_row = c_prev(t, r);
      T* dc = static_cast<T*>(tk.dc) + r * tk.c_ld;
      for (int nb = nb_begin; nb < nb_end; ++nb) {
        const int u0 = nb * N;
        const R i = V::load(g + nb * G4), f = V::load(g + nb * G4 + N), gg = V::load(g + nb * G4 + 2 * N),
                o = V::load(g + nb * G4 + 3 * N);
        const R cn = V::load(cn_row + u0), cp = V::load(cp_row + u0), dh = V::load(dhp + r * dhp_ld + u0);
        const R tc = Act<V>::tanh(cn);
        const R dzo = V::mul(V::mul(dh, tc), V::mul(o, V::sub(one, o)));
        R dcn = V::fma(V::mul(dh, o), V::sub(one, V::mul(tc, tc)), V::load(dc + u0));
        if (tk.peephole) dcn = V::fma(dzo, V::load(pp + 2 * tk.c_ld + u0), dcn);
        const R dzi = V::mul(V::mul(dcn, gg), V::mul(i, V::sub(one, i)));
        const R dzf = V::mul(V::mul(dcn, cp), V::mul(f, V::sub(one, f)));
        const R dzg = V::mul(V::mul(dcn, i), V::sub(one, V::mul(gg, gg)));
        R dcp = V::mul(dcn, f);
        if (tk.peephole) dcp = V::fma(dzf, V::load(pp + tk.c_ld + u0), V::fma(dzi, V::load(pp + u0), dcp));
        V::store(dz + nb * G4, dzi);
        V::store(dz + nb * G4 + N, dzf);
        V::store(dz + nb * G4 + 2 * N, dzg);
        V::store(dz + nb * G4 + 3 * N, dzo);
        V::store(dc + u0, dcp);
      }
    }
  }

  // dh(r) = dz_t(r) W_hh on my columns: the gradient reaching h_{t-1}.
  template <int MR>
  void dh_rows(int t, int r0) {
    const T* a[MR];
    for (int r = 0; r < MR; ++r) a[r] = dz_row(t, r0 + r);
    const std::int64_t K = 4 * tk.c_ld;
    T* dh = static_cast<T*>(tk.dh);
    panel_products<V, MR>(static_cast<int>(K), a, static_cast<const T*>(tk.w_hh_t), K * N, ob_begin, ob_end,
                          [&](int r, int ob, R v) { V::store(dh + (r0 + r) * tk.h_ld + ob * N, v); });
  }

  template <class F>
  void over_rows(int n, F f) {
    int r = 0;
    for (; r + V::MR <= n; r += V::MR) f(IntC<V::MR>{}, r);
    Direction<V>::dispatch_tail(n - r, r, f);
  }

  void run() {
    recompute_h();
    barrier_wait(tk.barrier);  // hall complete
    for (int s = 0; s < tk.steps; ++s) {
      const int t = time_of(s), n = alive(t);
      add_dy(t);
      if (tk.P > 0) {
        barrier_wait(tk.barrier);  // dh complete on every column
        over_rows(n, [&](auto mr, int r0) { this->template dpre_rows<decltype(mr)::value>(r0); });
      }
      pointwise(t);
      barrier_wait(tk.barrier);  // dz_t complete on every unit
      over_rows(n, [&](auto mr, int r0) { this->template dh_rows<decltype(mr)::value>(t, r0); });
    }
    barrier_wait(tk.barrier);
  }
};

template <class V>
void run_backward_impl(const BackTask& task, int tid, int nthreads) {
  Backward<V> bw(task, tid, nthreads);
  bw.run();
}

// acc[r][g] += sum_m a[m][r] * b[m][g * N ..] for rows m of [m0, m1): the outer-product form of the weight
// gradients (r: MR columns of the layer input / h, g: NG vectors of the packed gate rows).
template <class V, int MR, int NG>
inline void tile_outer(int m0, int m1, const void* const* arows, int a0, const void* const* brows, std::int64_t b0,
                       typename V::R (&acc)[MR][NG]) {
  using T = typename V::T;
  using R = typename V::R;
  for (int m = m0; m < m1; ++m) {
    const T* a = static_cast<const T*>(arows[m]) + a0;
    const T* b = static_cast<const T*>(brows[m]) + b0;
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

template <class V>
struct Grads {
  using T = typename V::T;
  using R = typename V::R;
  static constexpr int N = V::N;
  static constexpr int G4 = 4 * N;
  static constexpr int kRowChunk = GradTask::kRowChunk;  // rows per pass (the dz panel: 128 KB float, in L2)

  const GradTask& tk;

  // out_t[c][block's 4N gate rows] (+)= sum over the chunk's rows m of rows[m0 + m][c] * dzp[m][4N], for the
  // MR columns from c0: each input row read where it lies (a broadcast of MR neighbours), the block's dz
  // panel packed contiguously (rows of dz are 4 * c_ld apart: a power of two that would crowd a few L1 sets).
  template <int MR>
  void cols(int c0, int m0, int mc, const void* const* rows, const void* const* dzp_rows, T* out, bool first) {
    R acc[MR][4];
    for (int r = 0; r < MR; ++r)
      for (int g = 0; g < 4; ++g) acc[r][g] = first ? V::zero() : V::load(out + (c0 + r) * 4 * tk.c_ld + g * N);
    tile_outer<V, MR, 4>(0, mc, rows + m0, c0, dzp_rows, 0, acc);
    for (int r = 0; r < MR; ++r)
      for (int g = 0; g < 4; ++g) V::store(out + (c0 + r) * 4 * tk.c_ld + g * N, acc[r][g]);
  }

  void all_cols(int ncols, int m0, int mc, const void* const* rows, const void* const* dzp_rows, T* out, bool first) {
    int c = 0;
    for (; c + V::MR <= ncols; c += V::MR) cols<V::MR>(c, m0, mc, rows, dzp_rows, out, first);
    Direction<V>::dispatch_tail(ncols - c, c, [&](auto mr, int c0) {
      this->template cols<decltype(mr)::value>(c0, m0, mc, rows, dzp_rows, out, first);
    });
  }

  void run(int tid, int nthreads) {
    const int hout = tk.P > 0 ? tk.P : tk.H;
    int nb_begin, nb_end;
    split_range((tk.H + N - 1) / N, tid, nthreads, &nb_begin, &nb_end);
    T* dzp = static_cast<T*>(tk.work[tid]);  // [kRowChunk][4N]
    const void* dzp_rows[kRowChunk];
    for (int m = 0; m < kRowChunk; ++m) dzp_rows[m] = dzp + static_cast<std::int64_t>(m) * G4;
    for (int m0 = 0; m0 < tk.M; m0 += kRowChunk) {
      const int mc = tk.M - m0 < kRowChunk ? tk.M - m0 : kRowChunk;
      for (int nb = nb_begin; nb < nb_end; ++nb) {
        for (int m = 0; m < mc; ++m) {
          const T* src = static_cast<const T*>(tk.dz_rows[m0 + m]) + nb * G4;
          for (int g = 0; g < 4; ++g) V::store(dzp + m * G4 + g * N, V::load(src + g * N));
        }
        all_cols(tk.I, m0, mc, tk.x_rows, dzp_rows, static_cast<T*>(tk.gw_ih_t) + nb * G4, m0 == 0);
        all_cols(hout, m0, mc, tk.hprev_rows, dzp_rows, static_cast<T*>(tk.gw_hh_t) + nb * G4, m0 == 0);
      }
    }
    for (int nb = nb_begin; nb < nb_end; ++nb) {
      // Bias and peepholes: plain sums over the rows, in the same order.
      R db[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
      R dp[3] = {V::zero(), V::zero(), V::zero()};
      const int u0 = nb * N;
      for (int m = 0; m < tk.M; ++m) {
        const T* dz = static_cast<const T*>(tk.dz_rows[m]) + nb * G4;
        for (int g = 0; g < 4; ++g) db[g] = V::add(db[g], V::load(dz + g * N));
        if (tk.peephole) {
          const R cp = V::load(static_cast<const T*>(tk.cprev_rows[m]) + u0);
          dp[0] = V::fma(V::load(dz), cp, dp[0]);
          dp[1] = V::fma(V::load(dz + N), cp, dp[1]);
          dp[2] = V::fma(V::load(dz + 3 * N), V::load(static_cast<const T*>(tk.c_rows[m]) + u0), dp[2]);
        }
      }
      for (int g = 0; g < 4; ++g) V::store(static_cast<T*>(tk.gb) + nb * G4 + g * N, db[g]);
      if (tk.peephole)
        for (int g = 0; g < 3; ++g) V::store(static_cast<T*>(tk.gp) + g * tk.c_ld + u0, dp[g]);
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
    Direction<V>::dispatch_tail(mr, c0, [&](auto m, int c) { this->template hr_cols<decltype(m)::value>(c, pb); });
  }
};

template <class V>
void run_grads_impl(const GradTask& task, int tid, int nthreads) {
  Grads<V> g{task};
  g.run(tid, nthreads);
}

// dx(m) = (sum_d dz_d(m) W_ih_d) * mask(m), my column blocks of I.
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
      for (int b = 0; b < NBLK; ++b) w[b] = static_cast<const T*>(tk.w_ih_t[d]) + static_cast<std::int64_t>(ib + b) * tk.K * N;
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
    int m = 0;
    for (; m + V::MR <= tk.M; m += V::MR) rows_all<V::MR>(m, ib_begin, ib_end);
    Direction<V>::dispatch_tail(tk.M - m, m, [&](auto mr, int m0) {
      this->template rows_all<decltype(mr)::value>(m0, ib_begin, ib_end);
    });
  }
};

template <class V>
void run_dx_impl(const DxTask& task, int tid, int nthreads) {
  Dx<V> dx{task};
  dx.run(tid, nthreads);
}
