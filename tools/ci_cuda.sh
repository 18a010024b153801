#!/usr/bin/env bash
# CI stage (called by .ci/run): the CUDA kernels executed on the CPU, and the static checks of the CUDA build.
#   1. cuda/testing built twice with the host compiler against the execution model (cuda/testing/emu): plain,
#      and with ThreadSanitizer; emu_tests runs every kernel against its float64 reference, the model's own
#      tests and the planted bugs, each build catching them its own way (docs/cuda.md).
#   2. The semantics probe on the model (the GPU half runs in tools/gpu_check.sh); the engine, its bindings and
#      the package end to end on the model (tools/cuda_model_tests.sh: tests/test_cuda.py on a FASTLSTM_CUDA=EMU
#      build).
#   3. tools/cuda_static_check.py when nvcc is present: warnings and spills as errors, resources against
#      the plans' budgets, SASS asserts (cuobjdump and nvdisasm from their pip packages); and the GPU tools of
#      tools/gpu_check.sh built by the same script the GPU run uses (tools/gpu_tools_build.sh).
# Needs cmake and a C++20 compiler (ninja when present); run inside the CI virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
start=$SECONDS
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)

echo "-- execution model: build (plain, and ThreadSanitizer)"
cmake -S cuda/testing -B "$work/emu" "${generator[@]}" > "$work/configure.log"
cmake -S cuda/testing -B "$work/emu-tsan" "${generator[@]}" -DEMU_SANITIZE=thread >> "$work/configure.log"
cmake --build "$work/emu" > "$work/build.log" || { cat "$work/build.log"; exit 1; }
cmake --build "$work/emu-tsan" >> "$work/build.log" || { cat "$work/build.log"; exit 1; }
echo "   built in $((SECONDS - start)) s"

echo "-- kernels and the model's tests on the execution model (plain build, deterministic schedules)"
"$work/emu/emu_tests"
echo "-- the semantics probe on the execution model"
"$work/emu/emu_probe"
echo "-- the same under ThreadSanitizer (the race checker; smallest shapes)"
"$work/emu-tsan/emu_tests"
echo "-- the engine, its bindings and the Python package on the execution model (FASTLSTM_CUDA=EMU build)"
tools/cuda_model_tests.sh

echo "-- static checks of the CUDA build"
if command -v nvcc > /dev/null; then
  python -m pip install --quiet "nvidia-cuda-cuobjdump>=13,<14" "nvidia-cuda-nvdisasm>=13,<14"
  "$work/emu/emu_budgets" > "$work/budgets.json"
  python tools/cuda_static_check.py --budgets "$work/budgets.json" --work "$work/static"
  echo "-- the GPU tools of tools/gpu_check.sh, built as the GPU run builds them"
  tools/gpu_tools_build.sh "$work/gpu_tools"
else
  echo "nvcc not found: static checks skipped"
fi
echo "-- CUDA stage passed in $((SECONDS - start)) s"
