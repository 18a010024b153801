// The int8 operand policy (operands-inl.h) for CPUs without AVX512_VNNI: the int8 family's weight format and
// numbers on AVX2. Weights quantized at pack time as int8-inl.h's (symmetric, per output row), activations
// quantized per row the same way (the same float operations: the same q and scale), but kept signed: a product
// of four int8 pairs is |q_a| (u8) times q_w with q_a's sign (vpsignb), pairs summed exactly in int16
// (vpmaddubsw: at most 2 * 127 * 127 < 2^15) and widened to int32 (vpmaddwd). The int32 sums are the AVX512_VNNI
// family's exactly (there: sum (q_a + 128) q_w - 128 sum q_w), dequantized by the same operations, so both
// families give the same bits. Included INSIDE the AVX2 int8 family's namespace after vec_avx2.h and
// gemm-inl.h; needs -mavx2 -mfma.
//
// Layouts as int8-inl.h's with 8 units per vector: a panel of K values by NG gates is [ceil(K/4)][NG][8 units][4]
// int8, then the weight scales [NG][8] float and the corrections [NG][8] int32 (not needed here). An operand row
// is ceil(K/4) words of four int8 (zero past K), rounded up to 16 words.

struct Int8Avx2Ops {
  using T = float;
  using R = __m256;
  using A = std::uint32_t;  // four s8 activations
  static constexpr bool kConvert = true;
  // Four rows: 143 against 116 G products/s for three (tile_rates, AMD Zen 3); five gain nothing, six spill.
  static constexpr int kRows = 4;
  static constexpr bool kTrains = false;

  static inline std::int64_t row_elems(int K) { return ((K + 3) / 4 + 15) / 16 * 16; }
  static inline std::size_t panel_bytes(int K, int NG) {
    return static_cast<std::size_t>((K + 3) / 4) * NG * 32 + static_cast<std::size_t>(NG) * 8 * 8;
  }

  static inline __m256 load_first(const float* src, std::int64_t count) {
    if (count >= 8) return _mm256_loadu_ps(src);
    if (count <= 0) return _mm256_setzero_ps();
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(src, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), lane));
  }

  // K floats -> row_elems(K) words of s8 (q = round(x / scale) in [-127, 127]) and the scale (max |x| / 127); a
  // row with NaN or Inf gets a NaN scale, as in int8-inl.h.
  static inline void convert(const float* src, int K, A* dst, float* scale) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 mx = _mm256_setzero_ps();
    int bad = 0;
    for (int k = 0; k < K; k += 8) {
      const __m256 v = _mm256_andnot_ps(sign, load_first(src + k, K - k));
      bad |= _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_set1_ps(3.4028235e38f), _CMP_NLE_UQ));
      mx = _mm256_max_ps(mx, v);
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    const float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
    const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
    *scale = bad ? __builtin_nanf("") : s;
    const __m256 inv = _mm256_set1_ps(1.0f / s);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    std::int8_t* out = reinterpret_cast<std::int8_t*>(dst);
    const std::int64_t bytes = row_elems(K) * 4;
    for (std::int64_t k = 0; k < bytes; k += 16) {
      __m256i q[2];
      for (int h = 0; h < 2; ++h) {  // round to nearest even, as vcvtps2dq
        const __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(load_first(src + k + 8 * h, K - k - 8 * h), inv));
        q[h] = _mm256_min_epi32(_mm256_max_epi32(v, lo), hi);
      }
      // int32 -> int16 -> int8 (no saturation happens: |q| <= 127), lanes back in order.
      const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), _MM_SHUFFLE(3, 1, 2, 0));
      const __m128i b8 = _mm_packs_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k), b8);
    }
  }

  template <int MR, int NBLK, int NG>
  static inline void accumulate(int K, const A* const* a, const float* a_scales, const void* const* w,
                                R (&acc)[MR][NBLK * NG]) {
    const int quads = (K + 3) / 4;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i ai[MR][NBLK * NG];
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NBLK * NG; ++j) ai[r][j] = _mm256_setzero_si256();
    for (int q = 0; q < quads; ++q) {
#pragma GCC unroll 8
      for (int b = 0; b < NBLK; ++b) {
#pragma GCC unroll 4
        for (int g = 0; g < NG; ++g) {
          const char* src = static_cast<const char*>(w[b]) + (static_cast<std::int64_t>(q) * NG + g) * 32;
          const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
#pragma GCC unroll 8
          for (int r = 0; r < MR; ++r) {
            const __m256i av = _mm256_set1_epi32(static_cast<int>(a[r][q]));
            const __m256i p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(av), _mm256_sign_epi8(wv, av));
            ai[r][b * NG + g] = _mm256_add_epi32(ai[r][b * NG + g], _mm256_madd_epi16(p16, ones));
          }
        }
      }
    }
    for (int b = 0; b < NBLK; ++b) {
      const char* tail = static_cast<const char*>(w[b]) + static_cast<std::int64_t>(quads) * NG * 32;
      for (int g = 0; g < NG; ++g) {
        const __m256 sw = _mm256_loadu_ps(reinterpret_cast<const float*>(tail) + g * 8);
        for (int r = 0; r < MR; ++r) {
          const __m256 dq = _mm256_cvtepi32_ps(ai[r][b * NG + g]);
          acc[r][b * NG + g] = _mm256_fmadd_ps(dq, _mm256_mul_ps(sw, _mm256_set1_ps(a_scales[r])), acc[r][b * NG + g]);
        }
      }
    }
  }
};
