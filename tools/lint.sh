#!/usr/bin/env bash
# The linters CI runs: ruff (config in pyproject.toml) on the Python, clang-format (.clang-format) on the C++
# and CUDA. Needs `pip install ".[lint]"`. Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
mapfile -t sources < <(git ls-files '*.cpp' '*.h' '*.cu' '*.cuh')
clang-format --dry-run -Werror "${sources[@]}"
echo "lint: ruff and clang-format clean (${#sources[@]} C++/CUDA files)"
