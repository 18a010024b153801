// AVX2 + FMA vector traits: 8 float or 4 double units per vector, 3-row tiles (12 accumulators, 3 broadcasts
// and one weight vector fill the 16 ymm registers). Included inside a kernel family's namespace by a file
// built with -mavx2 -mfma. Requires <immintrin.h>.
// (No include guard and no includes: it is textually part of the including namespace.)

struct VecF {
  using T = float;
  using R = __m256;
  static constexpr int N = 8, MR = 3;
  static constexpr bool kPairOneRow = true;  // one row: two unit blocks per tile (recurrence_fwd-inl.h)
  // Two rows: one block per tile. Two blocks' 16 accumulators leave no ymm register for the operands (tools/
  // tile_rates.sh on AMD Zen 3: fp32 68 G/s with one block, 52 with two; bf16 74 and 53).
  static constexpr bool kPairTwoRows = false;
  // Up to three cells of a tile run their epilogues interleaved (cells/lstm-inl.h): T=20 H=128 B=64, one thread on
  // AMD Zen 3, 2.77-2.80 -> 2.58-2.63 ms (the best of 30 calls, three alternating runs).
  static constexpr int kCells = 3;
  static R load(const T* p) { return _mm256_loadu_ps(p); }
  static void store(T* p, R v) { _mm256_storeu_ps(p, v); }
  static void stream(T* p, R v) { _mm256_stream_ps(p, v); }  // p aligned to the vector
  static R set1(T x) { return _mm256_set1_ps(x); }
  static R zero() { return _mm256_setzero_ps(); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R div(R a, R b) { return _mm256_div_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R abs(R x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
  static R max_keep_nan(R lo, R x) { return _mm256_max_ps(lo, x); }  // NaN in x: x (second operand)
  static R select_ge0(R x, R a, R b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, zero(), _CMP_GE_OQ)); }
  static R select_lt(R x, R lim, R a, R b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, lim, _CMP_LT_OQ)); }
  static R copysign(R mag, R sgn) {
    const R m = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(m, mag), _mm256_and_ps(m, sgn));
  }
  static R pow2_magic(R t) {
    const __m256i i = _mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(i, 23));
  }
};

struct VecD {
  using T = double;
  using R = __m256d;
  static constexpr int N = 4, MR = 3;
  static constexpr bool kPairOneRow = true;
  static constexpr bool kPairTwoRows = false;
  static constexpr int kCells = 3;
  static R load(const T* p) { return _mm256_loadu_pd(p); }
  static void store(T* p, R v) { _mm256_storeu_pd(p, v); }
  static void stream(T* p, R v) { _mm256_stream_pd(p, v); }
  static R set1(T x) { return _mm256_set1_pd(x); }
  static R zero() { return _mm256_setzero_pd(); }
  static R add(R a, R b) { return _mm256_add_pd(a, b); }
  static R sub(R a, R b) { return _mm256_sub_pd(a, b); }
  static R mul(R a, R b) { return _mm256_mul_pd(a, b); }
  static R div(R a, R b) { return _mm256_div_pd(a, b); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  static R abs(R x) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), x); }
  static R max_keep_nan(R lo, R x) { return _mm256_max_pd(lo, x); }
  static R select_ge0(R x, R a, R b) { return _mm256_blendv_pd(b, a, _mm256_cmp_pd(x, zero(), _CMP_GE_OQ)); }
  static R select_lt(R x, R lim, R a, R b) { return _mm256_blendv_pd(b, a, _mm256_cmp_pd(x, lim, _CMP_LT_OQ)); }
  static R copysign(R mag, R sgn) {
    const R m = _mm256_set1_pd(-0.0);
    return _mm256_or_pd(_mm256_andnot_pd(m, mag), _mm256_and_pd(m, sgn));
  }
  static R pow2_magic(R t) {
    const __m256i i = _mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(1023));
    return _mm256_castsi256_pd(_mm256_slli_epi64(i, 52));
  }
};
