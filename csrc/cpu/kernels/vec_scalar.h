// Portable "vector" traits: one unit per vector, the same algorithm and summation order as the SIMD families,
// so the scalar family is both the fallback on any CPU and a check of the blocking logic at N = 1.
// Included inside a kernel family's namespace. Requires <cmath>, <cstdint>, <cstring>.
// (No include guard and no includes: it is textually part of the including namespace.)

template <class TT, class UInt, int kMantBits, int kBias>
struct VecScalar {
  using T = TT;
  using R = TT;
  static constexpr int N = 1, MR = 4;
  static constexpr bool kPairOneRow = true;
  static constexpr bool kPairTwoRows = true;
  static constexpr int kCells = 1;
  static R load(const T* p) { return *p; }
  static void store(T* p, R v) { *p = v; }
  static void stream(T* p, R v) { *p = v; }
  static R set1(T x) { return x; }
  static R zero() { return T(0); }
  static R add(R a, R b) { return a + b; }
  static R sub(R a, R b) { return a - b; }
  static R mul(R a, R b) { return a * b; }
  static R div(R a, R b) { return a / b; }
  static R fma(R a, R b, R c) { return std::fma(a, b, c); }
  static R abs(R x) { return std::fabs(x); }
  static R max_keep_nan(R lo, R x) { return x < lo ? lo : x; }
  static R select_ge0(R x, R a, R b) { return x >= T(0) ? a : b; }
  static R select_lt(R x, R lim, R a, R b) { return x < lim ? a : b; }
  static R copysign(R mag, R sgn) { return std::copysign(mag, sgn); }
  static R pow2_magic(R t) {
    UInt u;
    std::memcpy(&u, &t, sizeof u);
    u = (u + kBias) << kMantBits;
    std::memcpy(&t, &u, sizeof u);
    return t;
  }
};
using VecF = VecScalar<float, std::uint32_t, 23, 127>;
using VecD = VecScalar<double, std::uint64_t, 52, 1023>;
