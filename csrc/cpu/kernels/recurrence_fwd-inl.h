// The forward recurrence of one layer and direction, written once over the vector traits V, the cell C
// (cells/) and the operand policy O (operands-inl.h), compiled once per kernel family. Included INSIDE a
// family's namespace (kernels/family-inl.h).
//
// Per chunk of steps, each thread projects the inputs of its own unit blocks (G = bias + x W_ih^T, no
// barrier needed); per step, it runs z = G + h_{t-1} W_hh^T on its blocks with the cell's update fused in
// the epilogue (register tiles of MR rows by gate-interleaved panels, so the gates of a unit share a tile),
// then projects (P > 0) and meets its group at one barrier. With a converting policy each thread converts
// the x rows of a chunk and, at each step, the rows of h_{t-1} into operands of its own (a few vector
// instructions per row against the row's products over its blocks; no shared copy, no extra barrier).
//   DirTask's arrays as family.h states; h[s & 1] is read and h[(s + 1) & 1] written at step s.

// The per-thread workspace of Direction (64-byte aligned pieces): G [max_blocks][chunk * B][gates * N] of T,
// chunk * B row pointers, and with a converting policy the operands of a chunk's x rows and of B rows of h
// with a scale each.
template <class V, class O>
inline std::size_t direction_workspace(int chunk, int B, int max_blocks, int gates, int I, int hout) {
  const std::size_t rows = static_cast<std::size_t>(chunk) * B;
  auto up = [](std::size_t n) { return (n + 63) / 64 * 64; };
  std::size_t n = up(rows * max_blocks * gates * V::N * sizeof(typename V::T)) + up(rows * sizeof(void*));
  if (O::kConvert) {
    n += up(rows * O::row_elems(I) * sizeof(typename O::A)) + up(rows * sizeof(float));
    n += up(static_cast<std::size_t>(B) * O::row_elems(hout) * sizeof(typename O::A)) + up(B * sizeof(float));
  }
  return n;
}

template <class V, class C, class O>
struct Direction {
  using T = typename V::T;
  using R = typename V::R;
  using A = typename O::A;
  static constexpr int N = V::N;
  static constexpr int NG = C::kGates;
  static constexpr int G4 = NG * N;  // one unit block's gate vectors

  const DirTask& tk;
  int tid, nthreads;
  int nb_begin, nb_end;  // my unit blocks
  int pb_begin, pb_end;  // my projection blocks
  T* g;                  // [my blocks][chunk * B][G4]
  const A** rows;        // [chunk * B] operand rows of a chunk's inputs
  A* xq = nullptr;       // converting policy: [chunk * B][row_elems(I)] operands of x, scales xs
  float* xs = nullptr;
  A* hq = nullptr;  // converting policy: [B][row_elems(hout)] operands of h_{t-1}, scales hs
  float* hs = nullptr;
  std::int64_t g_ld;  // chunk * B * G4: one block's slice of g
  int hout;
  int step_group;  // unit blocks per pass of the row tiles in a step
  int proj_group;  // the same for the input projection's W_ih panels

  Direction(const DirTask& task, int tid_, int n, void* ws) : tk(task), tid(tid_), nthreads(n) {
    const int nb = (tk.H + N - 1) / N, pb = (tk.P + N - 1) / N;
    split_range(nb, tid, n, &nb_begin, &nb_end);
    split_range(pb, tid, n, &pb_begin, &pb_end);
    hout = tk.P > 0 ? tk.P : tk.H;
    step_group = group_of(O::panel_bytes(hout, NG));
    proj_group = group_of(O::panel_bytes(tk.I, NG));
    const std::int64_t rows_n = static_cast<std::int64_t>(tk.chunk) * tk.B;
    auto up = [](std::int64_t bytes) { return (bytes + 63) / 64 * 64; };
    g_ld = rows_n * G4;
    char* p = static_cast<char*>(ws);
    g = reinterpret_cast<T*>(p);
    p += up((nb_end - nb_begin) * g_ld * static_cast<std::int64_t>(sizeof(T)));
    rows = reinterpret_cast<const A**>(p);
    p += up(rows_n * static_cast<std::int64_t>(sizeof(void*)));
    if (O::kConvert) {
      xq = reinterpret_cast<A*>(p);
      p += up(rows_n * O::row_elems(tk.I) * static_cast<std::int64_t>(sizeof(A)));
      xs = reinterpret_cast<float*>(p);
      p += up(rows_n * static_cast<std::int64_t>(sizeof(float)));
      hq = reinterpret_cast<A*>(p);
      p += up(tk.B * O::row_elems(hout) * static_cast<std::int64_t>(sizeof(A)));
      hs = reinterpret_cast<float*>(p);
    }
  }

  // Unit blocks per group: as many panels of `panel` bytes as tk.group_bytes holds (at least one), or all.
  int group_of(std::size_t panel) const {
    if (tk.group_bytes <= 0) return nb_end - nb_begin + 1;
    const std::int64_t n = tk.group_bytes / static_cast<std::int64_t>(panel);
    return n > 0 ? static_cast<int>(n) : 1;
  }

  // Calls pass(l0, l1) over my local unit blocks in groups of `group`, last group first with `down`.
  template <class F>
  void over_groups(int group, bool down, F pass) const {
    const int nbl = nb_end - nb_begin, ngroups = (nbl + group - 1) / group;
    for (int j = 0; j < ngroups; ++j) {
      const int l0 = (down ? ngroups - 1 - j : j) * group;
      pass(l0, l0 + group < nbl ? l0 + group : nbl);
    }
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
  const void* w_ih_panel(int nb) const {
    return static_cast<const char*>(tk.w_ih) + static_cast<std::int64_t>(nb) * O::panel_bytes(tk.I, NG);
  }
  const void* w_hh_panel(int nb) const {
    return static_cast<const char*>(tk.w_hh) + static_cast<std::int64_t>(nb) * O::panel_bytes(hout, NG);
  }

  // G[my block][m] = bias + x(m) W_ih^T for the m = 0 .. M-1 rows of steps s0 .. s1-1 (alive rows only).
  // The tiles are kept out of line (here and step_tile): inlined into run(), GCC 12 could hoist the cell's
  // constant vectors above a tile's loop, whose accumulators, broadcasts and weight vector fill the 16 ymm
  // registers of AVX2, and spill accumulators inside it (T=50 B=256 H=1024 on AMD Zen 3: 2/3 of the time in a
  // spilling step tile after an unrelated change to run()).
  template <int MR, int NBLK>
  __attribute__((noinline)) void project_tile(int nb_local, int m0) {
    R acc[MR][NBLK * NG];
    const void* w[NBLK];
    for (int b = 0; b < NBLK; ++b) {
      const int nb = nb_begin + nb_local + b;
      const T* bias = static_cast<const T*>(tk.bias) + static_cast<std::int64_t>(nb) * G4;
      for (int gi = 0; gi < NG; ++gi) {
        const R bv = V::load(bias + gi * N);
        for (int r = 0; r < MR; ++r) acc[r][b * NG + gi] = bv;
      }
      w[b] = w_ih_panel(nb);
    }
    O::template accumulate<MR, NBLK, NG>(tk.I, rows + m0, xs ? xs + m0 : nullptr, w, acc);
    for (int b = 0; b < NBLK; ++b) {
      T* dst = g + (nb_local + b) * g_ld + static_cast<std::int64_t>(m0) * G4;
      for (int r = 0; r < MR; ++r)
        for (int gi = 0; gi < NG; ++gi) V::store(dst + r * G4 + gi * N, acc[r][b * NG + gi]);
    }
  }

  // Calls tile(IntC<nblk>{}, l) over my local unit blocks [l0, l1) in tiles of nblk blocks: two at a time
  // with two rows where the registers hold them (V::kPairTwoRows), and with one where the ISA gains from it
  // (V::kPairOneRow), else one; first to last or, with `down`, last to first. One row is bound by the
  // weights' stream: on Zen 5 two panels at once slowed the AVX-512 kernels (T=100 B=1 H=128 172 -> 160 us
  // without, H=512 2.04 -> 1.84 ms, int8 H=512 470 -> 436 us) and sped up the AVX2 ones (H=128 164 -> 140
  // us, H=256 594 -> 525 us); B=2 gains 4% from them. The blocks are independent, so the order changes no
  // result. The step alternates it: each step then starts on the W_hh panels the previous one read last,
  // still in cache when a thread's share outgrows its L2 (a cyclic pass over such a share misses on every
  // line under LRU replacement; T=100 B=1 H=512 on Zen 5: 1.2x).
  template <int MR, class F>
  static void over_blocks(int l0, int l1, bool down, F tile) {
    constexpr bool kPairs = (MR == 2 && V::kPairTwoRows) || (MR == 1 && V::kPairOneRow);
    if (!down) {
      int l = l0;
      if (kPairs)
        for (; l + 2 <= l1; l += 2) tile(IntC<2>{}, l);
      for (; l < l1; ++l) tile(IntC<1>{}, l);
    } else {
      int l = l1;
      if (kPairs)
        for (; l - 2 >= l0; l -= 2) tile(IntC<2>{}, l - 2);
      for (; l > l0; --l) tile(IntC<1>{}, l - 1);
    }
  }

  template <int MR>
  void project_rows(int l0, int l1, bool down, int m0) {
    over_blocks<MR>(l0, l1, down,
                    [&](auto nblk, int l) { this->template project_tile<MR, decltype(nblk)::value>(l, m0); });
  }

  // The block order of step s's passes (over_blocks): alternating from step to step, from the call's first.
  bool down_at(int s) const { return ((s & 1) != 0) != tk.first_down; }

  // G for the steps s0 .. s1-1, its W_ih pass in the order of step s0's (a one-step call then alternates
  // both of its passes from call to call).
  void project_chunk(int s0, int s1) {
    int M = 0;
    for (int s = s0; s < s1; ++s) {
      const int t = time_of(s);
      for (int r = 0, n = alive(t); r < n; ++r, ++M) {
        if (O::kConvert) {
          A* dst = xq + M * O::row_elems(tk.I);
          O::convert(x_row(t, r), tk.I, dst, xs + M);
          rows[M] = dst;
        } else {
          rows[M] = reinterpret_cast<const A*>(x_row(t, r));
        }
      }
    }
    // My W_ih panels in L2-sized groups, each passed by every row tile (as the step's W_hh panels): one
    // pass of all of them per tile of rows read a share that outgrows L2 from L3 once per tile (B = 256,
    // H = 1024: 8 MB per tile and thread, the projection at half the step's rate on AMD Zen 3).
    const bool down = down_at(s0);
    over_groups(proj_group, down, [&](int l0, int l1) {
      over_rows<O::kRows>(M,
                          [&](auto mr, int m0) { this->template project_rows<decltype(mr)::value>(l0, l1, down, m0); });
    });
  }

  // One tile of the recurrent step: z = G + h_prev W_hh^T, then the cell update in registers.
  template <int MR, int NBLK>
  __attribute__((noinline)) void step_tile(int nb_local, int r0, int mg0, int t, const T* hprev, T* hnext) {
    R acc[MR][NBLK * NG];
    const void* w[NBLK];
    const A* a[MR];
    for (int r = 0; r < MR; ++r)
      a[r] = O::kConvert ? hq + (r0 + r) * O::row_elems(hout) : reinterpret_cast<const A*>(hprev + (r0 + r) * tk.h_ld);
    for (int b = 0; b < NBLK; ++b) {
      const T* gsrc = g + (nb_local + b) * g_ld + static_cast<std::int64_t>(mg0 + r0) * G4;
      for (int r = 0; r < MR; ++r)
        for (int gi = 0; gi < NG; ++gi) acc[r][b * NG + gi] = V::load(gsrc + r * G4 + gi * N);
      w[b] = w_hh_panel(nb_begin + nb_local + b);
    }
    O::template accumulate<MR, NBLK, NG>(hout, a, hs ? hs + r0 : nullptr, w, acc);
    const bool proj = tk.P > 0;
    T* hdst = proj ? static_cast<T*>(tk.hpre) : hnext;
    const std::int64_t hdst_ld = proj ? tk.c_ld : tk.h_ld;
    // The tile's cells (block-major: cell k = b * MR + r), CR at a time with their epilogues interleaved
    // (V::kCells: all of them where that many fit, else a block's rows, else one by one).
    constexpr int NC = NBLK * MR;
    constexpr int CR = NC <= V::kCells ? NC : (MR <= V::kCells ? MR : 1);
    for (int k0 = 0; k0 < NC; k0 += CR) {
      R z[CR][NG], c[CR], hv[CR];
      const T* pk[CR];
      for (int j = 0; j < CR; ++j) {
        const int b = (k0 + j) / MR, r = (k0 + j) % MR, u0 = (nb_begin + nb_local + b) * N;
        for (int gi = 0; gi < NG; ++gi) z[j][gi] = acc[r][b * NG + gi];
        c[j] = V::load(static_cast<T*>(tk.c) + (r0 + r) * tk.c_ld + u0);
        pk[j] = static_cast<const T*>(tk.peep) + u0;
      }
      C::template forward<CR>(z, c, hv, pk, tk.c_ld, tk.peephole);
      for (int j = 0; j < CR; ++j) {
        const int b = (k0 + j) / MR, r = (k0 + j) % MR, u0 = (nb_begin + nb_local + b) * N;
        const int count = tk.H - u0 < N ? tk.H - u0 : N;
        V::store(static_cast<T*>(tk.c) + (r0 + r) * tk.c_ld + u0, c[j]);
        V::store(hdst + (r0 + r) * hdst_ld + u0, hv[j]);
        if (tk.save_gates) {  // training: what backward needs, in the packed gate order
          const std::int64_t row = static_cast<std::int64_t>(t) * tk.B + r0 + r;
          T* sg = static_cast<T*>(tk.save_gates) + row * NG * tk.c_ld + (nb_begin + nb_local + b) * G4;
          // Written once, read back only by backward: stream them past the caches that hold W_hh.
          for (int gi = 0; gi < NG; ++gi) V::stream(sg + gi * N, z[j][gi]);
          V::stream(static_cast<T*>(tk.save_c) + row * tk.c_ld + u0, c[j]);
        }
        if (!proj) store_partial<V>(y_row(t, r0 + r) + u0, masked(hv[j], t, r0 + r, u0), count);
      }
    }
  }

  // The tiles of rows r0 .. r0+MR-1 over my local unit blocks [l0, l1).
  template <int MR>
  void step_rows(int l0, int l1, bool down, int r0, int mg0, int t, const T* hprev, T* hnext) {
    over_blocks<MR>(l0, l1, down, [&](auto nblk, int l) {
      this->template step_tile<MR, decltype(nblk)::value>(l, r0, mg0, t, hprev, hnext);
    });
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
        const bool down = down_at(s);
        // This step's operands of h_{t-1}: every row, whole (each thread its own copy).
        if (O::kConvert)
          for (int r = 0; r < n; ++r) O::convert(hprev + r * tk.h_ld, hout, hq + r * O::row_elems(hout), hs + r);
        // My blocks in groups whose W_hh panels stay in L2 while every row tile passes over them: with all my
        // panels in one group a thread re-reads its share of W_hh once per tile of rows, from L3 once that
        // share outgrows L2 (B = 16, H = 512: three passes over 2 MB per step and thread).
        over_groups(step_group, down, [&](int l0, int l1) {
          over_rows<O::kRows>(n, [&](auto mr, int r0) {
            this->template step_rows<decltype(mr)::value>(l0, l1, down, r0, mg0, t, hprev, hnext);
          });
        });
        if (tk.P > 0) {
          barrier_wait(tk.barrier);  // hpre complete
          over_rows<V::MR>(n, [&](auto mr, int r0) { this->template proj_rows<decltype(mr)::value>(r0, t, hnext); });
        }
        // h_next complete; everyone is done reading h_prev (and hpre). After the last step the caller's
        // join (or its barrier before the next layer) is that point: a second one would only cost a round trip.
        if (s + 1 < tk.steps) barrier_wait(tk.barrier);
        mg0 += n;
      }
    }
  }
};

template <class V, class C, class O>
void run_direction_impl(const DirTask& task, int tid, int nthreads, void* workspace) {
  Direction<V, C, O> dir(task, tid, nthreads, workspace);
  dir.run();
}
