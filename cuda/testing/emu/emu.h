// The CPU execution model of CUDA kernels (test-only; never compiled into the library or the wheel).
// Kernel sources include cuda/common/primitives.cuh, which includes this header under a host compiler; a test
// then runs a kernel with fastlstm::emu::launch({grid, block, dynamic_smem, cooperative, cluster}, kernel,
// args...). What it covers, how to run it and its limits: docs/cuda.md.
#pragma once

#include "emu/keywords.h"
// keywords.h first: the rest uses dim3 and the qualifiers.
#include "emu/builtins.h"
#include "emu/fiber.h"
#include "emu/runtime.h"
#include "emu/scheduler.h"
