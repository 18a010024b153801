#!/usr/bin/env bash
# Builds tools/tile_rates.cpp for each ISA this CPU runs (AVX2; AVX-512 with AVX512_BF16 / AVX512_VNNI where
# present) and runs it: the register tiles' rates that choose each kernel's tile shape (docs/design.md).
#   bash tools/tile_rates.sh [OUT_DIR]      (default: a temporary folder)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
flags=(-O3 -std=c++20 -ffp-contract=off -I"$here/csrc/cpu/kernels")
has() { grep -qw "$1" /proc/cpuinfo; }
if has avx2 && has fma; then
  g++ "${flags[@]}" -mavx2 -mfma "$here/tools/tile_rates.cpp" -o "$out/tile_rates_avx2"
  taskset -c 0 "$out/tile_rates_avx2" 2>/dev/null || "$out/tile_rates_avx2"
fi
if has avx512f && has avx512bw && has avx512dq && has avx512vl; then
  extra=()
  has avx512_bf16 && extra+=(-mavx512bf16)
  has avx512_vnni && extra+=(-mavx512vnni)
  g++ "${flags[@]}" -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma "${extra[@]}" "$here/tools/tile_rates.cpp" \
    -o "$out/tile_rates_avx512"
  taskset -c 0 "$out/tile_rates_avx512" 2>/dev/null || "$out/tile_rates_avx512"
fi
