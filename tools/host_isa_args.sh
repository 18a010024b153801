#!/usr/bin/env bash
# Prints the CMake arguments of a test build for this machine's CPU: -DFASTLSTM_AVX512=OFF where it runs no
# AVX-512 family, so a sanitizer or CUDA-model build does not compile kernels it could never execute (under
# ASan the three AVX-512 families are some 45% of the compile). The CPU's answer is the engine's own run-time
# check (fastlstm.backends(), from the installed package); without an installed fastlstm it prints nothing and
# the build keeps every family.
set -euo pipefail
python - <<'PY' 2> /dev/null || true
import fastlstm

cpu = fastlstm.backends()["cpu"]
if "avx2" in cpu["available_isas"] and "avx512" not in cpu["available_isas"]:
    print("-DFASTLSTM_AVX512=OFF")
PY
