// The fused cell kernel (kernels/cell_pointwise.cuh) executed on the CPU execution model, launched with the
// plan its launcher computes, against the cell's math in float64 (fastlstm.reference.cell's formulas).
// Shapes hit one thread, partial blocks and grid-stride loops (a tiny device: one block covers everything);
// both index widths, with and without peepholes, c updated in place, under every schedule. The
// ThreadSanitizer build runs the smallest shapes only.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "harness.h"
#include "kernels/cell_pointwise.cuh"

namespace {

namespace emu = fastlstm::emu;
namespace cd = fastlstm::cuda::detail;

double sigmoid64(double x) {
  const double e = std::exp(-std::fabs(x));
  return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

struct Shape {
  int B, H;
};

// The largest float32 error seen on these inputs is a few ulp (libm's expf / tanhf); the GPU test allows 2e-6.
constexpr double kTol = 2e-6;

template <bool kPeephole, typename Index>
void check_cell(Shape s, const cd::DeviceLimits& dev, bool in_place, std::uint64_t seed) {
  const std::size_t n = static_cast<std::size_t>(s.B) * s.H;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> z(4 * n), c_prev(n), p(3 * static_cast<std::size_t>(s.H));
  for (float& v : z) v = 3.0f * normal(rng);
  for (float& v : c_prev) v = normal(rng);
  for (float& v : p) v = normal(rng);
  // float64 reference of the same float32 inputs.
  std::vector<double> h64(n), c64(n);
  for (int b = 0; b < s.B; ++b) {
    for (int j = 0; j < s.H; ++j) {
      const std::size_t i = static_cast<std::size_t>(b) * s.H + j;
      const float* zr = z.data() + static_cast<std::size_t>(b) * 4 * s.H + j;
      double zi = zr[0], zf = zr[s.H], zg = zr[2 * s.H], zo = zr[3 * s.H];
      const double cp = c_prev[i];
      if (kPeephole) {
        zi += static_cast<double>(p[j]) * cp;
        zf += static_cast<double>(p[s.H + j]) * cp;
      }
      const double c = sigmoid64(zf) * cp + sigmoid64(zi) * std::tanh(zg);
      if (kPeephole) zo += static_cast<double>(p[2 * s.H + j]) * c;
      c64[i] = c;
      h64[i] = sigmoid64(zo) * std::tanh(c);
    }
  }
  std::vector<float> h(n, NAN), c_out(n, NAN);  // poisoned: an element never written fails the comparison
  float* c = in_place ? c_prev.data() : c_out.data();
  const float* pp = kPeephole ? p.data() : nullptr;
  const cd::LaunchPlan plan = cd::cell_forward_plan(static_cast<std::int64_t>(n), dev);
  emu::launch({dim3(plan.grid.x), dim3(plan.block.x), plan.dynamic_smem}, cd::cell_forward_f32_kernel<kPeephole, Index>,
              static_cast<Index>(n), static_cast<Index>(s.H), z.data(), c_prev.data(), pp,
              kPeephole ? pp + s.H : nullptr, kPeephole ? pp + 2 * s.H : nullptr, h.data(), c);
  std::size_t worst = 0;
  const double rc = emu::testing::tolerance_ratio(c, c64.data(), n, kTol, kTol, &worst);
  if (rc > 1.0) {
    emu::testing::fail(__FILE__, __LINE__,
                       "c differs from the float64 reference at " + std::to_string(worst) + ": " +
                           std::to_string(c[worst]) + " vs " + std::to_string(c64[worst]) +
                           " (B=" + std::to_string(s.B) + ", H=" + std::to_string(s.H) + ")");
  }
  const double rh = emu::testing::tolerance_ratio(h.data(), h64.data(), n, kTol, kTol, &worst);
  if (rh > 1.0) {
    emu::testing::fail(__FILE__, __LINE__,
                       "h differs from the float64 reference at " + std::to_string(worst) + ": " +
                           std::to_string(h[worst]) + " vs " + std::to_string(h64[worst]));
  }
}

// A device with one SM that holds one block: every shape larger than 256 elements runs the grid-stride loop.
constexpr cd::DeviceLimits kTiny{1, 256, 48 * 1024, 65536};

// Under ThreadSanitizer every emulated thread is a TSan fiber (about 0.2 ms each to create): the smallest
// shapes that still cover a partial block, two blocks and the grid-stride loop.
std::vector<Shape> shapes() {
  if (emu::detail::kTsan) return {{3, 7}, {2, 130}};
  return {{1, 1}, {3, 7}, {16, 129}, {5, 1000}};
}

template <bool kPeephole, typename Index>
void all_plans() {
  std::uint64_t seed = 1;
  for (const Shape& s : shapes()) {
    for (const cd::DeviceLimits& dev : {cd::kH200, cd::kA100, kTiny}) {
      if (emu::detail::kTsan && dev.sm_count == cd::kA100.sm_count) continue;  // same plan as H200 at these sizes
      check_cell<kPeephole, Index>(s, dev, false, seed++);
      check_cell<kPeephole, Index>(s, dev, true, seed++);
    }
  }
}

EMU_TEST(cell_pointwise_matches_float64) {
  all_plans<true, std::uint32_t>();
  all_plans<false, std::int64_t>();
  if (emu::detail::kTsan) return;
  all_plans<false, std::uint32_t>();
  all_plans<true, std::int64_t>();
}

EMU_TEST(cell_pointwise_every_schedule) {
  for (emu::Order o : {emu::Order::reverse, emu::Order::random}) {
    emu::set_schedule({o, 11});
    check_cell<true, std::uint32_t>({3, 100}, kTiny, true, 5);
    check_cell<false, std::int64_t>({2, 300}, cd::kH200, false, 6);
  }
}

EMU_TEST(cell_pointwise_plan) {
  // One wave at most (sm_count x blocks per SM), at least one block, whole blocks of kCellBlock threads.
  CHECK_EQ(cd::cell_forward_plan(1, cd::kH200).grid.x, 1u);
  CHECK_EQ(cd::cell_forward_plan(257, cd::kH200).grid.x, 2u);
  CHECK_EQ(cd::cell_forward_plan(1LL << 40, cd::kH200).grid.x, 132u * 8u);
  CHECK_EQ(cd::cell_forward_plan(1LL << 40, cd::kA100).grid.x, 108u * 8u);
  CHECK_EQ(cd::cell_forward_plan(1LL << 40, kTiny).grid.x, 1u);
  CHECK_EQ(cd::cell_forward_plan(5, cd::kA100).block.x, static_cast<unsigned>(cd::kCellBlock));
  CHECK_EQ(cd::cell_forward_plan(5, cd::kA100).dynamic_smem, std::size_t{0});
}

}  // namespace
