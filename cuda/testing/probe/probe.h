// The probe's host side: runs every probe kernel through a Backend (the GPU, or the execution model), checks
// each result against expectations computed here from the PTX ISA's formulas and a float64 reference, and
// records the raw results (for the hardware-vs-model diff of tools/gpu_check.sh). Compiled by nvcc and by
// the host compiler alike.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "probe/probe_kernels.cuh"

namespace fastlstm::probe {

struct Result {
  explicit Result(std::string n) : name(std::move(n)) {}
  std::string name;
  bool ok = true;
  std::string detail;            // the first mismatch
  std::vector<std::string> raw;  // "index value" lines for the diff
};

inline void expect(Result& r, bool good, const std::string& what) {
  if (!good && r.ok) r.detail = what;
  r.ok = r.ok && good;
}

inline std::string hex(std::uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "%08x", v);
  return b;
}

// ---- mma -------------------------------------------------------------------------------------------------
enum class Mma { bf16, f16, tf32 };

inline double decode(Mma k, std::uint32_t v) {
  if (k == Mma::bf16) return prim::bf16_float(static_cast<std::uint16_t>(v));
  if (k == Mma::f16) return prim::f16_float(static_cast<std::uint16_t>(v));
  return prim::bits_float(v & 0xffffe000u);  // the model's reading of a tf32 operand: low 13 bits ignored
}

// data: "int" small integers (every sum exact: any layout error is an exact mismatch), "random" normal
// values (a tolerance of the float32 accumulation), "unrounded" tf32 operands with bits below tf32's
// precision (tells truncation from rounding in the hardware).
template <class Backend>
Result run_mma(Backend& be, Mma kind, const char* data, std::uint64_t seed) {
  const int K = kind == Mma::tf32 ? 8 : 16;
  Result r(std::string("mma_") + (kind == Mma::bf16 ? "bf16" : kind == Mma::f16 ? "f16" : "tf32") + "_" + data);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> small(-8, 8);
  const std::string d(data);
  auto value = [&] {
    if (d == "int") return static_cast<float>(small(rng));
    if (d == "unrounded") return prim::bits_float(0x3f800000u | 0xc00u);  // 1 + 0.75 * 2^-10
    return normal(rng);
  };
  std::vector<std::uint32_t> A(16 * K), B(K * 8);
  std::vector<float> C(128), D(128, NAN);
  auto encode = [&](float x) -> std::uint32_t {
    if (kind == Mma::bf16) return prim::bf16_bits(x);
    if (kind == Mma::f16) return prim::f16_bits(x);
    return d == "unrounded" ? prim::float_bits(x) : prim::tf32_bits(x);
  };
  for (auto& a : A) a = encode(value());
  for (auto& b : B) b = encode(value());
  for (auto& c : C) c = d == "unrounded" ? 0.0f : value();
  float* dD = be.template alloc<float>(128);
  float* dC = be.template alloc<float>(128);
  be.to_device(dC, C);
  if (kind == Mma::tf32) {
    std::uint32_t* dA = be.template alloc<std::uint32_t>(A.size());
    std::uint32_t* dB = be.template alloc<std::uint32_t>(B.size());
    be.to_device(dA, A);
    be.to_device(dB, B);
    be.launch(1, 32, 0, false, mma_tf32_kernel, dA, dB, dC, dD);
  } else {
    std::vector<std::uint16_t> A16(A.begin(), A.end()), B16(B.begin(), B.end());
    std::uint16_t* dA = be.template alloc<std::uint16_t>(A16.size());
    std::uint16_t* dB = be.template alloc<std::uint16_t>(B16.size());
    be.to_device(dA, A16);
    be.to_device(dB, B16);
    if (kind == Mma::bf16) {
      be.launch(1, 32, 0, false, mma_k16_kernel<true>, dA, dB, dC, dD);
    } else {
      be.launch(1, 32, 0, false, mma_k16_kernel<false>, dA, dB, dC, dD);
    }
  }
  D = be.to_host(dD, 128);
  for (int m = 0; m < 16; ++m) {
    for (int n = 0; n < 8; ++n) {
      double ref = C[m * 8 + n], mag = std::fabs(ref);
      for (int k = 0; k < K; ++k) {
        const double p = decode(kind, A[m * K + k]) * decode(kind, B[k * 8 + n]);
        ref += p;
        mag += std::fabs(p);
      }
      const float got = D[m * 8 + n];
      const double tol = d == "int" ? 0.0 : 4e-7 * K * mag;  // float32 accumulation in some order
      expect(r, std::fabs(got - ref) <= tol,
             "D[" + std::to_string(m) + "][" + std::to_string(n) + "] = " + std::to_string(got) + ", want " +
                 std::to_string(ref));
      r.raw.push_back(std::to_string(m * 8 + n) + " " + hex(prim::float_bits(got)));
    }
  }
  return r;
}

// ---- ldmatrix --------------------------------------------------------------------------------------------
template <class Backend>
Result run_ldmatrix(Backend& be) {
  Result r("ldmatrix");
  std::vector<std::uint16_t> M(256);
  for (int i = 0; i < 256; ++i) M[i] = static_cast<std::uint16_t>(0x1000 + i);  // matrix i/64, row, col
  std::uint16_t* dM = be.template alloc<std::uint16_t>(256);
  std::uint32_t* dOut = be.template alloc<std::uint32_t>(32 * 12);
  be.to_device(dM, M);
  be.launch(1, 32, 512, false, ldmatrix_kernel, dM, dOut);
  const std::vector<std::uint32_t> out = be.to_host(dOut, 32 * 12);
  auto el = [&](unsigned m, unsigned row, unsigned col) -> std::uint32_t { return M[(8 * m + row) * 8 + col]; };
  for (unsigned L = 0; L < 32; ++L) {
    const unsigned g = L / 4, t = L % 4;
    auto plain = [&](unsigned m) { return el(m, g, 2 * t) | (el(m, g, 2 * t + 1) << 16); };
    auto trans = [&](unsigned m) { return el(m, 2 * t, g) | (el(m, 2 * t + 1, g) << 16); };
    const std::uint32_t want[12] = {plain(0), plain(1), plain(2), plain(3), trans(0), trans(1),
                                    trans(2), trans(3), plain(0), plain(1), plain(0), trans(1)};
    for (unsigned k = 0; k < 12; ++k) {
      const std::uint32_t got = out[L * 12 + k];
      expect(
          r, got == want[k],
          "lane " + std::to_string(L) + " register " + std::to_string(k) + ": " + hex(got) + ", want " + hex(want[k]));
      r.raw.push_back(std::to_string(L * 12 + k) + " " + hex(got));
    }
  }
  return r;
}

// ---- Shuffles and votes ------------------------------------------------------------------------------------
// Source lanes by the CUDA Programming Guide's rules (see test_model.cpp for the full sweep).
inline int guide_idx(int lane, int src, int w) { return lane / w * w + src % w; }
inline int guide_up(int lane, int d, int w) { return lane % w >= d ? lane - d : lane; }
inline int guide_down(int lane, int d, int w) { return lane % w + d < w ? lane + d : lane; }
inline int guide_xor(int lane, int m, int w) { return (lane ^ m) >= lane / w * w + w ? lane : (lane ^ m); }

template <class Backend>
Result run_shuffles(Backend& be) {
  Result r("shuffles_votes");
  int* dOut = be.template alloc<int>(kShuffleCases * 32);
  be.launch(1, 32, 0, false, shuffle_kernel, dOut);
  const std::vector<int> out = be.to_host(dOut, kShuffleCases * 32);
  unsigned ballot9 = 0, ballot10 = 0;
  for (int l = 0; l < 32; ++l) {
    ballot9 |= static_cast<unsigned>((l * 7) % 5 < 2) << l;
    if (l < 16) ballot10 |= static_cast<unsigned>(l % 3 == 0) << l;
  }
  for (int l = 0; l < 32; ++l) {
    const int want[kShuffleCases] = {100 + guide_idx(l, (l * 5 + 3) % 37 % 32, 32),
                                     100 + guide_idx(l, (l + 3) % 32, 8),
                                     100 + guide_up(l, 3, 32),
                                     100 + guide_up(l, 2, 4),
                                     100 + guide_down(l, 5, 32),
                                     100 + guide_down(l, 3, 16),
                                     100 + guide_xor(l, 9, 32),
                                     100 + guide_xor(l, 16, 16),
                                     100 + (l ^ 4),
                                     static_cast<int>(ballot9),
                                     l < 16 ? static_cast<int>(ballot10) : 1,
                                     10416};
    for (int c = 0; c < kShuffleCases; ++c) {
      const int got = out[c * 32 + l];
      expect(r, got == want[c],
             "case " + std::to_string(c) + " lane " + std::to_string(l) + ": " + std::to_string(got) + ", want " +
                 std::to_string(want[c]));
      r.raw.push_back(std::to_string(c * 32 + l) + " " + std::to_string(got));
    }
  }
  return r;
}

// ---- Grid sync -----------------------------------------------------------------------------------------------
template <class Backend>
Result run_grid_sync(Backend& be, unsigned blocks, int steps) {
  Result r("grid_sync");
  unsigned* dCounter = be.template alloc<unsigned>(2);
  be.to_device(dCounter, std::vector<unsigned>{0, 0});
  be.launch(blocks, 128, 0, true, grid_sync_kernel, dCounter, dCounter + 1, steps);
  const std::vector<unsigned> c = be.to_host(dCounter, 2);
  expect(r, c[0] == blocks * static_cast<unsigned>(steps) && c[1] == 0,
         "counter " + std::to_string(c[0]) + " (want " + std::to_string(blocks * steps) + "), " + std::to_string(c[1]) +
             " blocks saw a stale counter");
  r.raw.push_back("0 " + std::to_string(c[0]));
  r.raw.push_back("1 " + std::to_string(c[1]));
  return r;
}

template <class Backend>
std::vector<Result> run_all(Backend& be, unsigned grid_blocks) {
  std::vector<Result> rs;
  std::uint64_t seed = 1;
  for (Mma k : {Mma::bf16, Mma::f16, Mma::tf32}) {
    rs.push_back(run_mma(be, k, "int", seed++));
    rs.push_back(run_mma(be, k, "random", seed++));
  }
  rs.push_back(run_mma(be, Mma::tf32, "unrounded", seed++));
  rs.push_back(run_ldmatrix(be));
  rs.push_back(run_shuffles(be));
  rs.push_back(run_grid_sync(be, grid_blocks, 3));
  return rs;
}

}  // namespace fastlstm::probe
