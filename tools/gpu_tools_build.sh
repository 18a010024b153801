#!/usr/bin/env bash
# Builds the GPU tools of tools/gpu_check.sh into WORK: the semantics probe by nvcc (probe_gpu) and by the host
# compiler against the execution model (probe_emu), and gpu_cell (the cell kernel through the library's entry
# point). One script for both callers: gpu_check.sh on the GPU machine, and tools/ci_cuda.sh in CI (nvcc
# present), so the one-shot GPU run never meets a build error CI could have seen.
# Usage: tools/gpu_tools_build.sh WORK [ARCH]   (ARCH: 90 by default)
set -euo pipefail
work=${1:?usage: tools/gpu_tools_build.sh WORK [ARCH]}
arch=${2:-90}
cd "$(dirname "$0")/.."
mkdir -p "$work"
includes=(-Icuda -Icuda/include -Icsrc/include -Icuda/testing)
flags=(-std=c++20 -O2 "-gencode=arch=compute_${arch},code=sm_${arch}" "${includes[@]}")
nvcc "${flags[@]}" -x cu cuda/testing/probe/probe.cpp -o "$work/probe_gpu"
g++ -std=c++20 -O2 "${includes[@]}" cuda/testing/probe/probe.cpp -o "$work/probe_emu" -pthread
nvcc "${flags[@]}" cuda/testing/gpu/gpu_cell.cu cuda/launch/cell.cu cuda/launch/device.cu \
  cuda/inst/cell_pointwise_f32.cu -o "$work/gpu_cell"
