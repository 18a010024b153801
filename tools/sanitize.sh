#!/usr/bin/env bash
# Builds the extension with AddressSanitizer + UndefinedBehaviorSanitizer and runs the test suite on it (the
# runtimes LD_PRELOADed into python). Usage: tools/sanitize.sh [pytest args]; needs the test extras.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
mapfile -t isa_args < <("$root/tools/host_isa_args.sh")
cmake -S "$root" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFASTLSTM_CUDA=OFF \
  -DFASTLSTM_SANITIZE=address,undefined -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" \
  -DPython_EXECUTABLE="$(command -v python)" "${isa_args[@]}" > "$work/configure.log"
cmake --build "$work/build" > "$work/build.log"
mkdir -p "$work/pkg"
cp -r "$root/python/fastlstm" "$work/pkg/"
rm -f "$work/pkg/fastlstm/"_core*.so
cp "$work/build/"_core*.so "$work/pkg/fastlstm/"
# The tests with the repository files some of them read (the README's code blocks, the docs, the goals).
cp -r "$root/tests" "$root/benchmarks" "$root/docs" "$root/README.md" "$work/"
cd "$work/tests"
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The suite but test_memory.py, whose peak-RSS bounds do not hold under ASan's shadow memory and quarantine,
# and the files whose time goes to subprocesses and compilers rather than to the engine (the benchmark command,
# the examples, the README's blocks, torch.compile's code generation: their engine calls are those of the
# other files). allocator_may_return_null: an allocation too large to make returns null (MemoryError), as it
# does without ASan, instead of aborting the process.
if [ $# -eq 0 ]; then
  set -- --ignore=test_memory.py --ignore=test_bench.py --ignore=test_examples.py --ignore=test_docs.py \
    --ignore=test_torch_compile.py
fi
PYTHONPATH="$work/pkg" python -m pytest -q -rs -W error -p no:cacheprovider "$@"
