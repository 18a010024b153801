// The bf16 operand policy (operands-inl.h) on AVX512_BF16: weights stored as bf16, activations rounded to bf16
// (round to nearest even) when they become operands, products accumulated in fp32 by vdpbf16ps, which adds two
// products per lane and instruction (twice an fp32 FMA's multiply-adds, from half the weight bytes). Included
// INSIDE the bf16 family's namespace after vec_avx512.h and gemm-inl.h; needs -mavx512bf16.
//
// Layouts: a bf16 pair (elements k, k+1; k even) is one 32-bit word, element k in the low half, as vdpbf16ps
// reads it. A panel of K values by NG gates is [ceil(K/2)][NG][16 units][2] bf16: 64 bytes per pair of k and
// gate, like one fp32 vector per k. An operand row is ceil(K/2) words, zero past K, rounded up to 16 words.

struct Bf16Ops {
  using T = float;
  using R = __m512;
  using A = std::uint32_t;  // a bf16 pair
  static constexpr bool kConvert = true;
  static constexpr int kRows = VecF::MR;  // six: at the bf16 peak on Zen 5 (552-564 of ~566 GFLOP/s a core)
  static constexpr bool kTrains = true;   // gives the weight gradients' operands too

  static inline std::int64_t row_elems(int K) { return ((K + 1) / 2 + 15) / 16 * 16; }
  static inline std::size_t panel_bytes(int K, int NG) { return static_cast<std::size_t>((K + 1) / 2) * NG * 64; }

  // K floats -> row_elems(K) bf16 pairs (32 floats per instruction; the tail's lanes are zero).
  static inline void convert(const float* src, int K, A* dst, float* scale) {
    *scale = 1.0f;
    for (int k = 0; k < K; k += 32) {
      const int left = K - k;
      const __mmask16 lo = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
      const __mmask16 hi = left >= 32 ? __mmask16(0xffff) : left > 16 ? __mmask16((1u << (left - 16)) - 1) : 0;
      const __m512 a = _mm512_maskz_loadu_ps(lo, src + k), b = _mm512_maskz_loadu_ps(hi, src + k + 16);
      _mm512_storeu_si512(dst + k / 2, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a)));
    }  // ceil(K / 32) stores of 16 words: the whole row
  }

  // dst[c] = the pair (a[c], b[c]) of two rows (b null: zeros), c < n, in bf16; whole vectors of 16 words are
  // written (the row of pairs is laid out with room for them).
  static inline void pair_rows(const float* a, const float* b, int n, A* dst) {
    for (int c = 0; c < n; c += 16) {
      const __mmask16 m = n - c >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - c)) - 1);
      const __m256i a16 = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, a + c)));
      __m256i b16 = _mm256_setzero_si256();
      if (b) b16 = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, b + c)));
      const __m512i lo = _mm512_cvtepu16_epi32(a16), hi = _mm512_slli_epi32(_mm512_cvtepu16_epi32(b16), 16);
      _mm512_storeu_si512(dst + c, _mm512_or_si512(lo, hi));
    }
  }

  // The weight gradients' tile: acc[r][g] += sum over row pairs q of ap[q][c0 + r] . dzp[q][g] (a pair of rows'
  // values of column c0 + r, times the same pair of rows' dz vector g).
  template <int MR, int NG>
  static inline void outer(int pairs, const A* ap, std::int64_t ld, int c0, const A* dzp, R (&acc)[MR][NG]) {
    for (int q = 0; q < pairs; ++q) {
      __m512bh av[MR];
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r)
        av[r] = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(ap[q * ld + c0 + r])));
#pragma GCC unroll 4
      for (int g = 0; g < NG; ++g) {
        const A* src = dzp + (static_cast<std::int64_t>(q) * NG + g) * 16;
        const __m512bh bv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(src));
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) acc[r][g] = _mm512_dpbf16_ps(acc[r][g], av[r], bv);
      }
    }
  }

  // acc[r][b * NG + g] += sum over pairs p of a[r][p] . panel_b[p][g] (two products per lane, in p order).
  template <int MR, int NBLK, int NG>
  static inline void accumulate(int K, const A* const* a, const float*, const void* const* w, R (&acc)[MR][NBLK * NG]) {
    const int pairs = (K + 1) / 2;
    for (int p = 0; p < pairs; ++p) {
      __m512bh av[MR];
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) av[r] = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(a[r][p])));
#pragma GCC unroll 8
      for (int b = 0; b < NBLK; ++b) {
#pragma GCC unroll 4
        for (int g = 0; g < NG; ++g) {
          const char* src = static_cast<const char*>(w[b]) + (static_cast<std::int64_t>(p) * NG + g) * 64;
          const __m512bh wv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(src));
#pragma GCC unroll 8
          for (int r = 0; r < MR; ++r) acc[r][b * NG + g] = _mm512_dpbf16_ps(acc[r][b * NG + g], av[r], wv);
        }
      }
    }
  }
};
