// The executor the host orchestrations (kernels/forward.cuh, kernels/train.cuh) take, on the CPU execution
// model: each launch plan runs as emu::launch. Test-only.
#pragma once

#include "common/plan.h"
#include "common/primitives.cuh"

namespace fastlstm::emu::testing {

struct EmuExec {
  template <class Kernel, class Params>
  void operator()(const cuda::detail::LaunchPlan& pl, Kernel kernel, const Params& params) {
    launch({dim3(pl.grid.x, pl.grid.y, pl.grid.z), dim3(pl.block.x, pl.block.y, pl.block.z), pl.dynamic_smem,
            pl.cooperative},
           kernel, params);
  }
};

}  // namespace fastlstm::emu::testing
