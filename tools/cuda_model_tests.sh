#!/usr/bin/env bash
# The CUDA engine end to end without a GPU: the extension built with FASTLSTM_CUDA=EMU (the engine's sources
# compiled by the host compiler against the CPU execution model and its CUDA runtime,
# cuda/testing/runtime/cuda_runtime.h), then tests/test_cuda.py on it: the bindings (numpy staging and DLPack
# device arrays, tests/model_arrays.py), the engine's checks, plans and workspaces, and the Python package,
# inference and training in every precision against float64 and the numpy path's bits; and the GPU check's
# sanitizer smoke. The large cases and the torch tests are a GPU's (tools/gpu_check.sh). Usage: tools/cuda_model_tests.sh [pytest args]; needs
# the test extras, cmake and a C++20 compiler.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
mapfile -t isa_args < <("$root/tools/host_isa_args.sh")
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
cmake -S "$root" -B "$work/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DFASTLSTM_CUDA=EMU \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v python)" \
  "${isa_args[@]}" > "$work/configure.log"
cmake --build "$work/build" > "$work/build.log" || { cat "$work/build.log"; exit 1; }
mkdir -p "$work/pkg"
cp -r "$root/python/fastlstm" "$work/pkg/"
rm -f "$work/pkg/fastlstm/"_core*.so
cp "$work/build/"_core*.so "$work/pkg/fastlstm/"
cp -r "$root/tests" "$work/"
cd "$work/tests"
export PYTHONPATH="$work/pkg"
# The device the tests see must be the model's (else they would skip as "no CUDA device").
python -c "from fastlstm import _core; d = _core.cuda_devices(); print(d); \
assert d and d[0]['name'] == 'the CPU execution model', 'not the FASTLSTM_CUDA=EMU build'"
python -m pytest -q -rs -p no:cacheprovider test_cuda.py "$@"
# tools/gpu_check.sh's compute-sanitizer smoke, so the one GPU run does not meet a bug in it first.
python "$root/tools/gpu_forward_smoke.py"
