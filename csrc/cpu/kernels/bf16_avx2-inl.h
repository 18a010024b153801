// The bf16 operand policy (operands-inl.h) for CPUs without AVX512_BF16: the bf16 family's weight format and
// numbers on AVX2 + FMA. Weights stored as bf16 pairs, activations rounded to bf16 (to nearest even, as
// pack.cpp's to_bf16) when they become operands; a pair's two products are exact in fp32 and accumulated by two
// FMAs, the odd element's first (the order the x86 manual gives vdpbf16ps). Included INSIDE the AVX2 bf16
// family's namespace after vec_avx2.h and gemm-inl.h; needs -mavx2 -mfma.
//
// Layouts as bf16-inl.h's with 8 units per vector: a panel of K values by NG gates is [ceil(K/2)][NG][8 units][2]
// bf16 (32 bytes per pair of k and gate); an operand row is ceil(K/2) words, zero past K, rounded up to 16 words.

struct Bf16Avx2Ops {
  using T = float;
  using R = __m256;
  using A = std::uint32_t;  // a bf16 pair, element k in the low half
  static constexpr bool kConvert = true;
  // Two rows: a pair's odd and even halves of a row are two operands, so three rows' tile (12 accumulators,
  // six operands, the weight vector and the mask) would spill; two run at 77 against 44 GFLOP/s (tile_rates,
  // AMD Zen 3).
  static constexpr int kRows = 2;
  static constexpr bool kTrains = true;  // gives the weight gradients' operands too

  static inline std::int64_t row_elems(int K) { return ((K + 1) / 2 + 15) / 16 * 16; }
  static inline std::size_t panel_bytes(int K, int NG) { return static_cast<std::size_t>((K + 1) / 2) * NG * 32; }

  // The first `count` floats at src (lanes past them zero).
  static inline __m256 load_first(const float* src, int count) {
    if (count >= 8) return _mm256_loadu_ps(src);
    if (count <= 0) return _mm256_setzero_ps();
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(src, _mm256_cmpgt_epi32(_mm256_set1_epi32(count), lane));
  }

  // bf16 bits of each lane in the low half of its 32-bit lane: round to nearest even, NaN a quiet NaN.
  static inline __m256i round_bf16(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i high = _mm256_srli_epi32(u, 16);
    const __m256i odd = _mm256_and_si256(high, _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd), 16);
    const __m256i quiet = _mm256_or_si256(high, _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(r, quiet, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  }

  // K floats -> row_elems(K) bf16 pairs (16 floats per pass; zero past K).
  static inline void convert(const float* src, int K, A* dst, float* scale) {
    *scale = 1.0f;
    const std::int64_t words = row_elems(K);
    for (std::int64_t w = 0; w < words; w += 8) {
      const int k = static_cast<int>(2 * w);
      const __m256i a = round_bf16(load_first(src + k, K - k)), b = round_bf16(load_first(src + k + 8, K - k - 8));
      // packus: [a0..a3 b0..b3 | a4..a7 b4..b7] in 16-bit lanes; the 64-bit units reordered to a0..a7 b0..b7.
      const __m256i pairs = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), _MM_SHUFFLE(3, 1, 2, 0));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + w), pairs);
    }
  }

  // dst[c] = the pair (a[c], b[c]) of two rows (b null: zeros), c < n, in bf16; whole vectors of 8 words are
  // written, zero past n (the row of pairs is laid out with room for them; a dz panel's vector is 8 words).
  static inline void pair_rows(const float* a, const float* b, int n, A* dst) {
    for (int c = 0; c < n; c += 8) {
      const __m256i lo = round_bf16(load_first(a + c, n - c));
      const __m256i hi = b ? round_bf16(load_first(b + c, n - c)) : _mm256_setzero_si256();
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c), _mm256_or_si256(lo, _mm256_slli_epi32(hi, 16)));
    }
  }

  // A pair's element as a float: the high half (odd element) or the low half (even element) of each word.
  static inline __m256 odd(__m256i words) {
    return _mm256_castsi256_ps(_mm256_and_si256(words, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  static inline __m256 even(__m256i words) { return _mm256_castsi256_ps(_mm256_slli_epi32(words, 16)); }

  // The weight gradients' tile: acc[r][g] += sum over row pairs q of ap[q][c0 + r] . dzp[q][g] (odd element's
  // product first).
  template <int MR, int NG>
  static inline void outer(int pairs, const A* ap, std::int64_t ld, int c0, const A* dzp, R (&acc)[MR][NG]) {
    for (int q = 0; q < pairs; ++q) {
      __m256i av[MR];
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) av[r] = _mm256_set1_epi32(static_cast<int>(ap[q * ld + c0 + r]));
#pragma GCC unroll 4
      for (int g = 0; g < NG; ++g) {
        const __m256i bv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(dzp + (q * NG + g) * 8));
        const __m256 bo = odd(bv), be = even(bv);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r)
          acc[r][g] = _mm256_fmadd_ps(even(av[r]), be, _mm256_fmadd_ps(odd(av[r]), bo, acc[r][g]));
      }
    }
  }

  // acc[r][b * NG + g] += sum over pairs p of a[r][p] . panel_b[p][g], in p order, the odd element's product
  // first. Two sweeps per pair (odd elements, then even ones) keep the tile within the 16 ymm registers.
  template <int MR, int NBLK, int NG>
  static inline void accumulate(int K, const A* const* a, const float*, const void* const* w, R (&acc)[MR][NBLK * NG]) {
    const int pairs = (K + 1) / 2;
    for (int p = 0; p < pairs; ++p) {
      auto sweep = [&](auto half) {
        __m256 av[MR];
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) av[r] = half(_mm256_set1_epi32(static_cast<int>(a[r][p])));
#pragma GCC unroll 8
        for (int b = 0; b < NBLK; ++b) {
#pragma GCC unroll 4
          for (int g = 0; g < NG; ++g) {
            const char* src = static_cast<const char*>(w[b]) + (static_cast<std::int64_t>(p) * NG + g) * 32;
            const __m256 wv = half(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
#pragma GCC unroll 8
            for (int r = 0; r < MR; ++r) acc[r][b * NG + g] = _mm256_fmadd_ps(av[r], wv, acc[r][b * NG + g]);
          }
        }
      };
      sweep([](__m256i v) { return odd(v); });
      sweep([](__m256i v) { return even(v); });
    }
  }
};
