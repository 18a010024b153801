// Backpropagation through time of one layer and direction, written once over the vector traits V, the cell C
// and the operand policy O of the recurrent product dh = dz W_hh (operands-inl.h), compiled once per kernel
// family. Included INSIDE a family's namespace (kernels/family-inl.h).
//
// First h_t of every live row is recomputed from the saved gates and c (and projected); then, per step from
// the last, each thread of the direction's group adds dy to dh on its columns, runs the cell's backward on
// its units (dz, the carried dc) and dh = dz W_hh on its columns, with a barrier between the phases that
// read another thread's columns. The weight and input gradients follow over the whole team (grads-inl.h).
//   BackTask's arrays as family.h states; gates, c and h0/c0 are only read (backward may run again).

template <class V, class C, class O>
struct Backward {
  using T = typename V::T;
  using R = typename V::R;
  using A = typename O::A;
  static constexpr int N = V::N;
  static constexpr int NG = C::kGates;
  static constexpr int G4 = NG * N;

  const BackTask& tk;
  int nb_begin, nb_end;  // my unit blocks
  int ob_begin, ob_end;  // my blocks of h's columns (Hout)
  int hout;
  A* scratch;  // converting policy: O::kRows rows of dz as operands

  Backward(const BackTask& task, int tid, int n, void* work) : tk(task), scratch(static_cast<A*>(work)) {
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
    return tp < 0 ? static_cast<const T*>(tk.c0) + r * tk.c_ld : static_cast<const T*>(tk.csave) + row(tp, r) * tk.c_ld;
  }
  T* dz_row(int t, int r) const { return static_cast<T*>(tk.dz) + row(t, r) * NG * tk.c_ld; }
  const T* gates_row(int t, int r) const { return static_cast<const T*>(tk.gates) + row(t, r) * NG * tk.c_ld; }

  // h_t (and o * tanh(c_t)) of every live row, from the saved gates and c.
  void recompute_h() {
    const bool proj = tk.P > 0;
    for (int t = 0; t < tk.steps; ++t) {
      for (int r = 0, n = alive(t); r < n; ++r) {
        const T* g = gates_row(t, r);
        const T* c = static_cast<const T*>(tk.csave) + row(t, r) * tk.c_ld;
        T* dst =
            proj ? static_cast<T*>(tk.hpre_all) + row(t, r) * tk.c_ld : static_cast<T*>(tk.hall) + row(t, r) * tk.h_ld;
        for (int nb = nb_begin; nb < nb_end; ++nb) V::store(dst + nb * N, C::output(g + nb * G4, V::load(c + nb * N)));
      }
    }
    if (!proj) return;
    barrier_wait(tk.barrier);
    for (int t = 0; t < tk.steps; ++t) {
      over_rows<V::MR>(alive(t), [&](auto mr, int r0) { this->template project_rows<decltype(mr)::value>(t, r0); });
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
        if (tk.dh_save)
          V::store(static_cast<T*>(tk.dh_save) + row(t, r) * tk.h_ld + c0, V::load(dh + r * tk.h_ld + c0));
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
    for (int r = 0, n = alive(t); r < n; ++r) {
      const T* g = gates_row(t, r);
      T* dz = dz_row(t, r);
      const T* cn_row = static_cast<const T*>(tk.csave) + row(t, r) * tk.c_ld;
      const T* cp_row = c_prev(t, r);
      T* dc = static_cast<T*>(tk.dc) + r * tk.c_ld;
      for (int nb = nb_begin; nb < nb_end; ++nb) {
        const int u0 = nb * N;
        R dcv = V::load(dc + u0);
        C::backward(g + nb * G4, V::load(cn_row + u0), V::load(cp_row + u0), V::load(dhp + r * dhp_ld + u0), dcv,
                    pp + u0, tk.c_ld, tk.peephole, dz + nb * G4);
        V::store(dc + u0, dcv);
      }
    }
  }

  // dh(r) = dz_t(r) W_hh on my columns: the gradient reaching h_{t-1}.
  template <int MR>
  void dh_rows(int t, int r0) {
    const int K = static_cast<int>(NG * tk.c_ld);
    const A* a[MR];
    float scales[MR];
    for (int r = 0; r < MR; ++r) {
      if constexpr (O::kConvert) {
        A* dst = scratch + r * O::row_elems(K);
        O::convert(dz_row(t, r0 + r), K, dst, scales + r);
        a[r] = dst;
      } else {
        a[r] = dz_row(t, r0 + r);
      }
    }
    T* dh = static_cast<T*>(tk.dh);
    products<V, O, MR>(K, a, scales, tk.w_hh_t, O::panel_bytes(K, 1), ob_begin, ob_end,
                       [&](int r, int ob, R v) { V::store(dh + (r0 + r) * tk.h_ld + ob * N, v); });
  }

  // The native policy's dh = dz_t W_hh when my W_hh^T outgrows L2 (tk.k_slice > 0), blocked for the caches: my
  // columns in groups of four panels (one tile's width) and k in slices whose panels stay in L2 while every row
  // tile of the step passes over them (one pass per row tile would stream my W_hh^T from L3 once per MR rows).
  // Between slices the partial sums wait in dh (my columns only), so each element is still one FMA chain in k
  // order: the same bits as one pass.
  template <int MR>
  void dh_slice(int t, int r0, int k0, int kn, int b0, int b1) {
    const int K = static_cast<int>(NG * tk.c_ld);
    const T* a[MR];
    for (int r = 0; r < MR; ++r) a[r] = dz_row(t, r0 + r) + k0;
    T* dh = static_cast<T*>(tk.dh) + r0 * tk.h_ld;
    panel_products<V, MR>(
        kn, a, static_cast<const T*>(tk.w_hh_t) + static_cast<std::int64_t>(k0) * N, static_cast<std::int64_t>(K) * N,
        b0, b1, [&](int r, int ob, R v) { V::store(dh + r * tk.h_ld + ob * N, v); },
        [&](int r, int ob, R zero) { return k0 == 0 ? zero : V::load(dh + r * tk.h_ld + ob * N); });
  }
  void dh_blocked(int t, int n) {
    const int K = static_cast<int>(NG * tk.c_ld);
    const int kc = tk.k_slice;
    for (int k0 = 0; k0 < K; k0 += kc) {
      const int kn = K - k0 < kc ? K - k0 : kc;
      for (int b0 = ob_begin; b0 < ob_end; b0 += 4) {
        const int b1 = ob_end - b0 < 4 ? ob_end : b0 + 4;
        over_rows<V::MR>(n,
                         [&](auto mr, int r0) { this->template dh_slice<decltype(mr)::value>(t, r0, k0, kn, b0, b1); });
      }
    }
  }

  void run() {
    recompute_h();
    barrier_wait(tk.barrier);  // hall complete
    for (int s = 0; s < tk.steps; ++s) {
      const int t = time_of(s), n = alive(t);
      add_dy(t);
      if (tk.P > 0) {
        barrier_wait(tk.barrier);  // dh complete on every column
        over_rows<V::MR>(n, [&](auto mr, int r0) { this->template dpre_rows<decltype(mr)::value>(r0); });
      }
      pointwise(t);
      barrier_wait(tk.barrier);  // dz_t complete on every unit
      if constexpr (!O::kConvert) {
        if (tk.k_slice > 0) {
          dh_blocked(t, n);
          continue;
        }
      }
      over_rows<O::kRows>(n, [&](auto mr, int r0) { this->template dh_rows<decltype(mr)::value>(t, r0); });
    }
    barrier_wait(tk.barrier);
  }
};

template <class V, class C, class O>
void run_backward_impl(const BackTask& task, int tid, int nthreads, void* scratch) {
  Backward<V, C, O> bw(task, tid, nthreads, scratch);
  bw.run();
}
