// AVX-512 (F/VL/BW/DQ) vector traits: 16 float or 8 double units per vector, 6-row tiles.
// Included inside a kernel family's namespace by a file built with -mavx512f/vl/bw/dq (see the V interface
// in gemm-inl.h). Requires <immintrin.h>.
// (No include guard and no includes: it is textually part of the including namespace.)

struct VecF {
  using T = float;
  using R = __m512;
  static constexpr int N = 16, MR = 6;
  static constexpr bool kPairOneRow = false;  // one row: one unit block per tile (recurrence_fwd-inl.h)
  static constexpr bool kPairTwoRows = true;  // two rows: two blocks (16 of the 32 zmm registers)
  // Each cell in turn: six rows' interleaved epilogue was 0-3% slower in the kernels on AMD Zen 5.
  static constexpr int kCells = 1;
  static R load(const T* p) { return _mm512_loadu_ps(p); }
  static void store(T* p, R v) { _mm512_storeu_ps(p, v); }
  static void stream(T* p, R v) { _mm512_stream_ps(p, v); }  // p aligned to the vector
  static R set1(T x) { return _mm512_set1_ps(x); }
  static R zero() { return _mm512_setzero_ps(); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R div(R a, R b) { return _mm512_div_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R abs(R x) { return _mm512_abs_ps(x); }
  static R max_keep_nan(R lo, R x) { return _mm512_max_ps(lo, x); }  // NaN in x: x (second operand)
  static R select_ge0(R x, R a, R b) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, zero(), _CMP_GE_OQ), b, a); }
  static R select_lt(R x, R lim, R a, R b) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lim, _CMP_LT_OQ), b, a);
  }
  static R copysign(R mag, R sgn) {
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(mag), _mm512_castps_si512(sgn),
                                                         _mm512_set1_epi32(0x7fffffff), 0xe4));
  }
  static R pow2_magic(R t) {
    const __m512i i = _mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(i, 23));
  }
};

struct VecD {
  using T = double;
  using R = __m512d;
  static constexpr int N = 8, MR = 6;
  static constexpr bool kPairOneRow = false;
  static constexpr bool kPairTwoRows = true;
  static constexpr int kCells = 1;
  static R load(const T* p) { return _mm512_loadu_pd(p); }
  static void store(T* p, R v) { _mm512_storeu_pd(p, v); }
  static void stream(T* p, R v) { _mm512_stream_pd(p, v); }
  static R set1(T x) { return _mm512_set1_pd(x); }
  static R zero() { return _mm512_setzero_pd(); }
  static R add(R a, R b) { return _mm512_add_pd(a, b); }
  static R sub(R a, R b) { return _mm512_sub_pd(a, b); }
  static R mul(R a, R b) { return _mm512_mul_pd(a, b); }
  static R div(R a, R b) { return _mm512_div_pd(a, b); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static R abs(R x) { return _mm512_abs_pd(x); }
  static R max_keep_nan(R lo, R x) { return _mm512_max_pd(lo, x); }
  static R select_ge0(R x, R a, R b) { return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, zero(), _CMP_GE_OQ), b, a); }
  static R select_lt(R x, R lim, R a, R b) {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, lim, _CMP_LT_OQ), b, a);
  }
  static R copysign(R mag, R sgn) {
    return _mm512_castsi512_pd(_mm512_ternarylogic_epi64(_mm512_castpd_si512(mag), _mm512_castpd_si512(sgn),
                                                         _mm512_set1_epi64(0x7fffffffffffffffLL), 0xe4));
  }
  static R pow2_magic(R t) {
    const __m512i i = _mm512_add_epi64(_mm512_castpd_si512(t), _mm512_set1_epi64(1023));
    return _mm512_castsi512_pd(_mm512_slli_epi64(i, 52));
  }
};
