// Vector sigmoid and tanh, written once over the vector traits V and compiled once per kernel family.
// Included INSIDE a family's namespace (kernels/family-inl.h), so every symbol is private to that family.
// No standard-library templates are used here: an inline template instantiated with wide-ISA flags could
// be merged by the linker into baseline code.

template <class T>
struct ExpConst;
template <>
struct ExpConst<float> {
  static constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  static constexpr float kLo = -87.33654f;      // below: e^x is not a normal float -> 0
  static constexpr float kLog2e = 1.44269504088896341f;
  static constexpr float kLn2Hi = 0.693145751953125f;  // ln 2 split so n * kLn2Hi is exact
  static constexpr float kLn2Lo = 1.428606765330187e-06f;
  static constexpr int kDegree = 7;  // Taylor on |r| <= ln2/2: error 5e-9 relative
  static constexpr float kInvFact[8] = {1.0f, 1.0f, 0.5f, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};
};
template <>
struct ExpConst<double> {
  static constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double kLo = -708.3964185322641;
  static constexpr double kLog2e = 1.4426950408889634;
  static constexpr double kLn2Hi = 0.6931471803691238;
  static constexpr double kLn2Lo = 1.9082149292705877e-10;
  static constexpr int kDegree = 13;  // error 4e-18 relative
  static constexpr double kInvFact[14] = {
      1.0,        1.0,         0.5,          1.0 / 6,       1.0 / 24,       1.0 / 120,       1.0 / 720,
      1.0 / 5040, 1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0};
};

// Activations, bitwise identical in every family. Maximum errors against the float64 truth over the whole
// float range (asserted by tests/test_activations.py, measured: 2.7 / 2.0 ulp float32, 3 / 3 ulp float64):
// float32 sigmoid, tanh: <= 1e-7 absolute and <= 4 ulp wherever the result is a normal float;
// float64: <= 4 ulp. Results below the smallest normal flush to 0 (tanh of a denormal returns it exactly).
// NaN in, NaN out; +-inf saturate exactly to 0, 1, -1.
template <class V>
struct Act {
  using T = typename V::T;
  using R = typename V::R;
  using C = ExpConst<T>;

  // e^x = s (1 + p) for x <= 0 (and NaN): s = 2^n, p = e^r - 1 of the reduced argument r = x - n ln2 as a
  // polynomial, r + r^2 (1/2! + r/3! + ...) (accurate near 0, so e^x - 1 = s p + (s - 1) keeps its digits too).
  static inline void exp_parts(R x, R& s, R& p) {
    const R xc = V::max_keep_nan(V::set1(C::kLo), x);
    const R t = V::fma(xc, V::set1(C::kLog2e), V::set1(C::kMagic));
    const R n = V::sub(t, V::set1(C::kMagic));
    R r = V::fma(n, V::set1(-C::kLn2Hi), xc);
    r = V::fma(n, V::set1(-C::kLn2Lo), r);
    R q = V::set1(C::kInvFact[C::kDegree]);
    for (int k = C::kDegree - 1; k >= 2; --k) q = V::fma(q, r, V::set1(C::kInvFact[k]));
    p = V::fma(V::mul(r, r), q, r);
    s = V::pow2_magic(t);
  }

  // e^x for x <= 0 (and NaN); 0 where e^x is below the normal range.
  static inline R exp_neg(R x) {
    R s, p;
    exp_parts(x, s, p);
    return V::select_lt(x, V::set1(C::kLo), V::zero(), V::fma(s, p, s));
  }

  static inline R sigmoid(R x) {
    const R e = exp_neg(V::sub(V::zero(), V::abs(x)));
    const R pos = V::div(V::set1(T(1)), V::add(V::set1(T(1)), e));
    return V::select_ge0(x, pos, V::mul(e, pos));
  }

  // tanh |x| = (1 - e) / (1 + e), e = e^(-2|x|): 1 - e = -(s p + (s - 1)) keeps its digits as |x| -> 0 and
  // 1 + e as |x| grows; exactly 1 once e is below half an ulp of 1, and a denormal comes back exactly. The
  // quotient is negative; copysign gives it the sign of x.
  static inline R tanh(R x) {
    R s, p;
    exp_parts(V::mul(V::set1(T(-2)), V::abs(x)), s, p);
    const R e_minus_1 = V::fma(s, p, V::sub(s, V::set1(T(1))));
    const R one_plus_e = V::add(V::set1(T(1)), V::fma(s, p, s));
    return V::copysign(V::div(e_minus_1, one_plus_e), x);
  }
};

template <class V>
void activation_impl(int which, const void* in_, void* out_, std::size_t n) {
  using T = typename V::T;
  const T* in = static_cast<const T*>(in_);
  T* out = static_cast<T*>(out_);
  std::size_t i = 0;
  for (; i + V::N <= n; i += V::N) {
    const auto x = V::load(in + i);
    V::store(out + i, which == 0 ? Act<V>::sigmoid(x) : Act<V>::tanh(x));
  }
  if (i < n) {
    T buf[V::N] = {};
    std::memcpy(buf, in + i, (n - i) * sizeof(T));
    const auto x = V::load(buf);
    V::store(buf, which == 0 ? Act<V>::sigmoid(x) : Act<V>::tanh(x));
    std::memcpy(out + i, buf, (n - i) * sizeof(T));
  }
}
