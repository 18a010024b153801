// The benchmark's probes of a family's ISA, written once over the vector traits V: the FMA throughput and
// the read bandwidth its kernels are bounded by. Included INSIDE a family's namespace.

// Throughput probe for the benchmark's "% of FMA peak": 12 independent FMA chains per vector register
// set, long enough for the frequency to settle. Returns the FLOPs done (2 per lane per FMA).
template <class V>
double fma_probe_impl(long iterations) {
  using R = typename V::R;
  R acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = V::set1(typename V::T(i) * typename V::T(1e-3));
  const R b = V::set1(typename V::T(0.999)), c = V::set1(typename V::T(1e-4));
  for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = V::fma(acc[i], b, c);
  }
  typename V::T sink[V::N];
  R total = acc[0];
  for (int i = 1; i < 12; ++i) total = V::add(total, acc[i]);
  V::store(sink, total);
  volatile typename V::T keep = sink[0];  // the loop must not be optimised away
  (void)keep;
  return 2.0 * 12 * V::N * static_cast<double>(iterations);
}

// Read-bandwidth probe for the benchmark's B = 1 bound: `passes` sweeps over `bytes` at buf (64-byte aligned,
// a multiple of 8 vectors) with eight independent vector sums, in alternating directions: the access pattern
// of streaming W_hh, whose steps alternate their order too (recurrence_fwd-inl.h). Returns the bytes read.
template <class V>
double read_probe_impl(const void* buf, std::size_t bytes, long passes) {
  using R = typename V::R;
  using T = typename V::T;
  const T* p = static_cast<const T*>(buf);
  const std::size_t n = bytes / sizeof(T) / (8 * V::N) * (8 * V::N);
  R acc[8];
  for (int j = 0; j < 8; ++j) acc[j] = V::zero();
  for (long it = 0; it < passes; ++it) {
    for (std::size_t k = 0; k < n; k += 8 * V::N) {
      const std::size_t i = (it & 1) ? n - 8 * V::N - k : k;
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) acc[j] = V::add(acc[j], V::load(p + i + j * V::N));
    }
  }
  for (int j = 1; j < 8; ++j) acc[0] = V::add(acc[0], acc[j]);
  T sink[V::N];
  V::store(sink, acc[0]);
  volatile T keep = sink[0];
  (void)keep;
  return static_cast<double>(n) * sizeof(T) * static_cast<double>(passes);
}
