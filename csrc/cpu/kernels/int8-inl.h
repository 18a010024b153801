// The int8 operand policy (operands-inl.h) on AVX512_VNNI: weights quantized at pack time (symmetric, one scale
// per output row: per gate and unit), activations quantized per row when they become operands (dynamic: the
// row's largest magnitude maps to 127, no calibration), products of four int8 pairs per lane and instruction
// accumulated exactly in int32 by vpdpbusd, then dequantized into the fp32 accumulators. Included INSIDE the
// int8 family's namespace after vec_avx512.h and gemm-inl.h; needs -mavx512vnni.
//
// vpdpbusd multiplies unsigned bytes by signed bytes, so an activation q in [-127, 127] is stored as q + 128 and
// the sum is corrected by 128 * (the row's sum of weights), computed at pack time:
//   z += s_a * s_w * (sum_k (q_a + 128) q_w  -  128 sum_k q_w)
// Layouts: four consecutive k of a unit are one 32-bit word (k in the lowest byte). A panel of K values by NG
// gates is [ceil(K/4)][NG][16 units][4] int8, then the weight scales [NG][16] float and the corrections
// [NG][16] int32. An operand row is ceil(K/4) words, 128 (q = 0) past K, rounded up to 16 words.

struct Int8Ops {
  using T = float;
  using R = __m512;
  using A = std::uint32_t;  // four u8 activations
  static constexpr bool kConvert = true;
  // Four rows: six rows' 24 int32 accumulators, 6 broadcasts and a weight vector leave no register free and
  // the compiler keeps an accumulator in memory, whose store-load joins its chain (Zen 5, one core, 512 KB of
  // weights in L2, K = 512: six rows 825 GOP/s, five 1097, four 1101, of ~1130).
  static constexpr int kRows = 4;
  static constexpr bool kTrains = false;  // gives the weight gradients' operands too

  static inline std::int64_t row_elems(int K) { return ((K + 3) / 4 + 15) / 16 * 16; }
  static inline std::size_t panel_bytes(int K, int NG) {
    return static_cast<std::size_t>((K + 3) / 4) * NG * 64 + static_cast<std::size_t>(NG) * 16 * 8;
  }

  // K floats -> row_elems(K) words of u8 (q + 128, q = round(x / scale)) and the scale (max |x| / 127).
  static inline void convert(const float* src, int K, A* dst, float* scale) {
    __m512 mx = _mm512_setzero_ps();
    __mmask16 bad = 0;  // lanes that saw NaN or Inf (vmaxps drops a NaN operand)
    for (int k = 0; k < K; k += 16) {
      const __mmask16 m = K - k >= 16 ? __mmask16(0xffff) : __mmask16((1u << (K - k)) - 1);
      const __m512 v = _mm512_abs_ps(_mm512_maskz_loadu_ps(m, src + k));
      bad |= _mm512_cmp_ps_mask(v, _mm512_set1_ps(3.4028235e38f), _CMP_NLE_UQ);
      mx = _mm512_max_ps(mx, v);
    }
    const float amax = _mm512_reduce_max_ps(mx);
    const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
    // A row with NaN or Inf gets a NaN scale: its products become NaN, as the float math would propagate them.
    *scale = bad ? __builtin_nanf("") : s;
    const __m512 inv = _mm512_set1_ps(1.0f / s);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), bias = _mm512_set1_epi32(128);
    std::uint8_t* out = reinterpret_cast<std::uint8_t*>(dst);
    const std::int64_t bytes = row_elems(K) * 4;
    for (std::int64_t k = 0; k < bytes; k += 16) {
      const __mmask16 m = K - k >= 16 ? __mmask16(0xffff) : K > k ? __mmask16((1u << (K - k)) - 1) : __mmask16(0);
      __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, src + k), inv));  // round to even
      q = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi), bias);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k), _mm512_cvtepi32_epi8(q));
    }
  }

  template <int MR, int NBLK, int NG>
  static inline void accumulate(int K, const A* const* a, const float* a_scales, const void* const* w,
                                R (&acc)[MR][NBLK * NG]) {
    const int quads = (K + 3) / 4;
    __m512i ai[MR][NBLK * NG];
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NBLK * NG; ++j) ai[r][j] = _mm512_setzero_si512();
    for (int q = 0; q < quads; ++q) {
      __m512i av[MR];
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) av[r] = _mm512_set1_epi32(static_cast<int>(a[r][q]));
#pragma GCC unroll 8
      for (int b = 0; b < NBLK; ++b) {
#pragma GCC unroll 4
        for (int g = 0; g < NG; ++g) {
          const char* src = static_cast<const char*>(w[b]) + (static_cast<std::int64_t>(q) * NG + g) * 64;
          const __m512i wv = _mm512_loadu_si512(src);
#pragma GCC unroll 8
          for (int r = 0; r < MR; ++r) ai[r][b * NG + g] = _mm512_dpbusd_epi32(ai[r][b * NG + g], av[r], wv);
        }
      }
    }
    for (int b = 0; b < NBLK; ++b) {
      const char* tail = static_cast<const char*>(w[b]) + static_cast<std::int64_t>(quads) * NG * 64;
      for (int g = 0; g < NG; ++g) {
        const __m512 sw = _mm512_loadu_ps(reinterpret_cast<const float*>(tail) + g * 16);
        const __m512i comp = _mm512_loadu_si512(tail + NG * 64 + g * 64);
        for (int r = 0; r < MR; ++r) {
          const __m512 dq = _mm512_cvtepi32_ps(_mm512_sub_epi32(ai[r][b * NG + g], comp));
          acc[r][b * NG + g] = _mm512_fmadd_ps(dq, _mm512_mul_ps(sw, _mm512_set1_ps(a_scales[r])), acc[r][b * NG + g]);
        }
      }
    }
  }
};
