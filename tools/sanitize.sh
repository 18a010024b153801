#!/usr/bin/env bash
# Builds the extension with AddressSanitizer + UndefinedBehaviorSanitizer and runs the engine's test suite on
# it (the runtimes LD_PRELOADed into python). Usage: tools/sanitize.sh [pytest args]; needs the test extras.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
cmake -S "$root" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFASTLSTM_CUDA=OFF \
  -DFASTLSTM_SANITIZE=address,undefined -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" \
  -DPython_EXECUTABLE="$(command -v python)" > "$work/configure.log"
cmake --build "$work/build" > "$work/build.log"
mkdir -p "$work/pkg"
cp -r "$root/python/fastlstm" "$work/pkg/"
rm -f "$work/pkg/fastlstm/"_core*.so
cp "$work/build/"_core*.so "$work/pkg/fastlstm/"
cp -r "$root/tests" "$work/tests"
cd "$work/tests"
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [ $# -eq 0 ]; then set -- test_engine.py test_train.py test_api.py test_activations.py test_torch.py; fi
PYTHONPATH="$work/pkg" python -m pytest -q -W error -p no:cacheprovider "$@"
