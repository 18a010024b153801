// What the tests of the host orchestrations (kernels/forward.cuh, kernels/train.cuh) share: the executor that
// runs their launch plans on the CPU execution model, the small test devices, the user's row layout of a
// case, and the comparison with float64 that names the element. Test-only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/plan.h"
#include "common/primitives.cuh"
#include "harness.h"
#include "lstm_model.h"

namespace fastlstm::emu::testing {

struct EmuExec {
  template <class Kernel, class Params>
  void operator()(const cuda::detail::LaunchPlan& pl, Kernel kernel, const Params& params) {
    launch({dim3(pl.grid.x, pl.grid.y, pl.grid.z), dim3(pl.block.x, pl.block.y, pl.block.z), pl.dynamic_smem,
            pl.cooperative},
           kernel, params);
  }
};

// Small devices, so that blocks own several units and the last owns fewer: 4 SMs with room for the weights,
// and 3 SMs whose shared memory holds the sums only (weights read from global memory every step).
inline constexpr cuda::detail::DeviceLimits kSmall{4, 2048, 48 * 1024, 65536};
inline constexpr cuda::detail::DeviceLimits kNoRoom{3, 2048, 2048, 65536};

inline ModelShape shape(int I, int H, int L = 1, bool bi = false, int P = 0, bool peep = false, bool bias = true) {
  return {.input_size = I,
          .hidden_size = H,
          .num_layers = L,
          .proj_size = P,
          .bidirectional = bi,
          .bias = bias,
          .peephole = peep};
}

// Row (t, b) of an array in the case's user layout ([T, B, width], or [B, T, width] with batch_first) starts
// at t * st + b * sb.
struct RowStrides {
  std::int64_t st, sb;
};
inline RowStrides user_layout(const LstmCase& c, int width) {
  return c.batch_first ? RowStrides{width, static_cast<std::int64_t>(c.T) * width}
                       : RowStrides{static_cast<std::int64_t>(c.B) * width, width};
}

// The T x B rows of K values at src (row strides `at`) as [T][B][K].
template <class Out = float>
std::vector<Out> gather_rows(const float* src, int T, int B, int K, RowStrides at) {
  std::vector<Out> out(static_cast<std::size_t>(T) * B * K);
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b)
      for (int k = 0; k < K; ++k) out[(static_cast<std::size_t>(t) * B + b) * K + k] = src[t * at.st + b * at.sb + k];
  return out;
}

// Fails the test where got differs from want by more than tol (relative and absolute), naming the element.
inline void expect_close(const std::string& name, const std::vector<float>& got, const std::vector<double>& want,
                         double tol, const std::string& what) {
  CHECK_EQ(got.size(), want.size());
  std::size_t worst = 0;
  if (tolerance_ratio(got.data(), want.data(), got.size(), tol, tol, &worst) > 1.0) {
    fail(__FILE__, __LINE__,
         name + " differs at " + std::to_string(worst) + ": " + std::to_string(got[worst]) + " vs " +
             std::to_string(want[worst]) + " (" + what + ")");
  }
}

}  // namespace fastlstm::emu::testing
