// The CPU kernels' register tiles alone: the products per second of each operand policy's accumulate (the
// recurrence's and input projection's GEMM tile) over weights that stay in L2, for each tile height, against
// the ISA's FMA loop, on one core. The measurement behind each policy's tile height (kRows: operands-inl.h,
// bf16-inl.h, int8-inl.h) and the vector traits' kPairOneRow. One ISA per binary; tools/tile_rates.sh builds
// and runs the ones this CPU has.
#include <immintrin.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace fam {
#if defined(__AVX512F__)
#include "vec_avx512.h"
#else
#include "vec_avx2.h"
#endif
#include "gemm-inl.h"
#include "operands-inl.h"
#include "probes-inl.h"
#if defined(__AVX512F__)
#if defined(__AVX512BF16__)
#include "bf16-inl.h"
using Bf16 = Bf16Ops;
#endif
#if defined(__AVX512VNNI__)
#include "int8-inl.h"
using Int8 = Int8Ops;
#endif
#else
#include "bf16_avx2-inl.h"
#include "int8_avx2-inl.h"
using Bf16 = Bf16Avx2Ops;
using Int8 = Int8Avx2Ops;
#endif
}  // namespace fam

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kGates = 4, kBlocks = 8, kRows = 60;
// The sum's length, 8 blocks of it by 4 gates being the weights (L2-sized): not a compile-time constant, as
// in the kernels (a known trip count is unrolled differently).
volatile int g_k = 512;

// Products (2 FLOPs each, int8 ones counted alike) per second of O's tile of MR rows by NBLK unit blocks, the
// best of 20 passes of every full tile of kRows rows over every block.
template <class O, int MR, int NBLK>
double rate() {
  using V = fam::VecF;
  const int kK = g_k;
  const std::size_t panel = O::panel_bytes(kK, kGates);
  const std::int64_t row = O::row_elems(kK);
  // Bytes of 0x3c: float 0.0115, bf16 0.0115, int8 60: no denormal, no overflow.
  std::vector<char> wbuf(panel * kBlocks + 64, 0x3c);  // packed weights are 64-byte aligned, as the engine's
  char* w = wbuf.data() + (64 - reinterpret_cast<std::uintptr_t>(wbuf.data()) % 64) % 64;
  std::vector<typename O::A> x(static_cast<std::size_t>(row) * kRows);
  std::memset(x.data(), 0x3c, x.size() * sizeof(typename O::A));
  std::vector<float> scales(kRows, 1.0f), out(static_cast<std::size_t>(kRows) * kBlocks * kGates * V::N);
  double best = 1e30;
  for (int pass = 0; pass < 20; ++pass) {
    const auto t0 = Clock::now();
    for (int r0 = 0; r0 + MR <= kRows; r0 += MR) {
      const typename O::A* a[MR];
      for (int r = 0; r < MR; ++r) a[r] = x.data() + (r0 + r) * row;
      for (int b = 0; b + NBLK <= kBlocks; b += NBLK) {
        typename V::R acc[MR][NBLK * kGates];
        const void* wp[NBLK];
        for (int j = 0; j < NBLK; ++j) wp[j] = w + (b + j) * panel;
        for (auto& rr : acc)
          for (auto& v : rr) v = V::zero();
        O::template accumulate<MR, NBLK, kGates>(kK, a, scales.data() + r0, wp, acc);
        for (int r = 0; r < MR; ++r)  // as the kernels' epilogues do: each output to its own place
          for (int j = 0; j < NBLK * kGates; ++j)
            V::store(out.data() + ((static_cast<std::size_t>(r0 + r) * kBlocks + b) * kGates + j) * V::N, acc[r][j]);
      }
    }
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    best = dt < best ? dt : best;
  }
  return 2.0 * (kRows / MR * MR) * kK * kBlocks * kGates * V::N / best;
}

double fma_loop() {
  const auto t0 = Clock::now();
  const double flops = fam::fma_probe_impl<fam::VecF>(100000000);
  return flops / std::chrono::duration<double>(Clock::now() - t0).count();
}

// peak: the FMA loop times the products per instruction where the policy's instruction is native, else 0
// (an emulation: rates only).
template <class O>
void report(const char* name, double peak) {
  std::printf("%-5s (the policy's tile: %d rows)%s\n", name, O::kRows, peak > 0 ? "" : " emulated");
  auto line = [&](const char* shape, double r) {
    if (peak > 0)
      std::printf("  %-22s %7.0f G/s %4.0f%%\n", shape, r / 1e9, 100 * r / peak);
    else
      std::printf("  %-22s %7.0f G/s\n", shape, r / 1e9);
  };
  line("6 rows x 1 block", rate<O, 6, 1>());
  line("5 rows x 1 block", rate<O, 5, 1>());
  line("4 rows x 1 block", rate<O, 4, 1>());
  line("3 rows x 1 block", rate<O, 3, 1>());
  line("2 rows x 1 block", rate<O, 2, 1>());
  line("2 rows x 2 blocks", rate<O, 2, 2>());
  line("1 row x 1 block", rate<O, 1, 1>());
  line("1 row x 2 blocks", rate<O, 1, 2>());
}

}  // namespace

int main() {
  const int kK = g_k;
  const double fma = fma_loop();
  std::printf("%s, one core: FMA loop %.0f GFLOP/s; weights %d KB (fp32) in L2, K = %d\n",
#if defined(__AVX512F__)
              "AVX-512",
#else
              "AVX2",
#endif
              fma / 1e9, static_cast<int>(fam::NativeOps<fam::VecF>::panel_bytes(kK, kGates) * kBlocks / 1024), kK);
  report<fam::NativeOps<fam::VecF>>("fp32", fma);
#if !defined(__AVX512F__)
  report<fam::Bf16>("bf16", 0);  // AVX2 emulations
  report<fam::Int8>("int8", 0);
#else
#if defined(__AVX512BF16__)
  report<fam::Bf16>("bf16", 2 * fma);  // vdpbf16ps: two products per lane and instruction
#endif
#if defined(__AVX512VNNI__)
  report<fam::Int8>("int8", 4 * fma);  // vpdpbusd: four
#endif
#endif
  return 0;
}
