#!/usr/bin/env bash
# The one-shot GPU check (docs/cuda.md, "tools/gpu_check.sh"): on a machine with an NVIDIA GPU, nvcc, python3
# with numpy / pytest / pybind11 and cmake (no network needed), in about 8 minutes, every stage under its own
# deadline and all of them under a global one:
#   build       the extension with the CUDA engine (cmake, sm_90 or GPU_CHECK_ARCH), and the GPU tools:
#               the semantics probe (nvcc and the host compiler on the execution model) and gpu_cell
#   probe       hardware against the model's expectations (mma fragment layouts, tf32 operand reading,
#               ldmatrix, shuffles with masks, votes, grid sync) and line by line against the model itself
#   tests       pytest tests/test_cuda.py on the GPU
#   sanitizers  compute-sanitizer memcheck, racecheck, synccheck, initcheck on the cell kernel's small shapes
#               (skipped, with the reason, where the runtime refuses the tool)
#   bench       the GPU benchmark rows with CUDA events (tools/gpu_bench.py)
# Usage: tools/gpu_check.sh OUT_DIR. Writes OUT_DIR/summary.txt, OUT_DIR/bench.json and OUT_DIR/logs/*.log
# (7 files at most). Without a GPU every stage says "skipped: no GPU" and the exit status is 0; with one, the
# exit status is 1 when a stage failed.
set -uo pipefail
out=${1:?usage: tools/gpu_check.sh OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
summary="$out/summary.txt"
budget=${GPU_CHECK_BUDGET_S:-470}  # the whole run, seconds
arch=${GPU_CHECK_ARCH:-90}
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
start=$SECONDS
failed=0
: > "$summary"

note() { echo "$*" | tee -a "$summary"; }

# stage NAME LIMIT_S LOG COMMAND...: runs COMMAND under min(LIMIT_S, what is left of the budget), appending
# to LOG; records "NAME: ok|FAILED|TIMED OUT (N s)".
stage() {
  local name=$1 limit=$2 log=$3
  shift 3
  local left=$((budget - (SECONDS - start)))
  if [ "$left" -lt 10 ]; then
    note "$name: skipped: the global budget of ${budget} s is spent"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS rc
  echo "==== $name (deadline ${limit} s)" >> "$log"
  timeout --kill-after=5 "$limit" "$@" >> "$log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    note "$name: ok ($((SECONDS - t0)) s)"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    note "$name: TIMED OUT after ${limit} s (log: logs/$(basename "$log"))"
    failed=1
  else
    note "$name: FAILED, exit $rc ($((SECONDS - t0)) s; log: logs/$(basename "$log"))"
    failed=1
  fi
  return "$rc"
}

note "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
# GPU_CHECK_ASSUME_GPU=1 rehearses the stages' flow on a machine without a GPU (they fail at the first CUDA call).
if [ "${GPU_CHECK_ASSUME_GPU:-0}" != 1 ] && { ! command -v nvidia-smi > /dev/null || ! nvidia-smi -L > /dev/null 2>&1; }; then
  for s in build probe tests sanitizers bench; do note "$s: skipped: no GPU"; done
  echo '{"rows": [], "skipped": "no GPU"}' > "$out/bench.json"
  exit 0
fi
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader
  nvcc --version | tail -1
  "$python" -c 'import sys, numpy; print("python", sys.version.split()[0], "numpy", numpy.__version__)'
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tail -1
  command -v compute-sanitizer > /dev/null && compute-sanitizer --version | tail -1
} 2>&1 | sed 's/^/  /' | tee -a "$summary"

# ---- build: the GPU tools in the background, the extension in the foreground ---------------------------
# Stages run their command under `timeout`, so the steps are exported functions run by `bash -c`.
export root work arch python
build_log="$out/logs/build.log"
tools() {
  "$root/tools/gpu_tools_build.sh" "$work" "$arch"
}
extension() {
  set -e
  cmake -S "$root" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFASTLSTM_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" \
    -DPython_EXECUTABLE="$(command -v "$python")"
  cmake --build "$work/build"
  mkdir -p "$work/pkg"
  cp -r "$root/python/fastlstm" "$work/pkg/"
  rm -f "$work/pkg/fastlstm/"_core*.so
  cp "$work/build/"_core*.so "$work/pkg/fastlstm/"
  PYTHONPATH="$work/pkg" "$python" -c 'import fastlstm; b = fastlstm.backends(); print(b); assert b["cuda"]'
}
wait_tools() {  # the background build writes its exit status to tools.rc
  while [ ! -f "$work/tools.rc" ]; do sleep 1; done
  cat "$work/tools.log"
  return "$(cat "$work/tools.rc")"
}
probe() {
  "$work/probe_gpu" "$work/probe_gpu.txt"
  local rc=$?
  "$work/probe_emu" "$work/probe_emu.txt" > /dev/null
  echo "-- hardware vs the model: raw results that differ, per case (mma on random data may differ in the last bits)"
  diff "$work/probe_gpu.txt" "$work/probe_emu.txt" | grep '^<' | awk '{print $2}' | sort | uniq -c
  diff "$work/probe_gpu.txt" "$work/probe_emu.txt" | head -40
  return "$rc"
}
export -f tools extension wait_tools probe
( timeout --kill-after=5 240 bash -c tools > "$work/tools.log" 2>&1; echo $? > "$work/tools.rc" ) &
stage build 300 "$build_log" bash -c extension
built=$?
stage build-tools 120 "$build_log" bash -c wait_tools
tools_ok=$?

# ---- probe: hardware semantics against the model's ------------------------------------------------------
probe_log="$out/logs/probe.log"
if [ "$tools_ok" -eq 0 ]; then
  stage probe 60 "$probe_log" bash -c probe
  grep -E '^(ok|FAIL) ' "$probe_log" | sed 's/^/  /' >> "$summary"
else
  note "probe: skipped: the GPU tools did not build"
fi

# ---- tests ---------------------------------------------------------------------------------------------
if [ "$built" -eq 0 ]; then
  cd "$root/tests" && stage tests 120 "$out/logs/tests.log" env PYTHONPATH="$work/pkg" "$python" -m pytest -q -rs \
    -p no:cacheprovider test_cuda.py
  cd "$root"
  tail -1 "$out/logs/tests.log" | sed 's/^/  /' >> "$summary"
else
  note "tests: skipped: the extension did not build"
fi

# ---- compute-sanitizer ---------------------------------------------------------------------------------
san_log="$out/logs/sanitizer.log"
if [ "$tools_ok" -ne 0 ]; then
  note "sanitizers: skipped: the GPU tools did not build"
elif ! command -v compute-sanitizer > /dev/null; then
  note "sanitizers: skipped: compute-sanitizer is not installed"
else
  for tool in memcheck racecheck synccheck initcheck; do
    before=$(wc -l < "$san_log" 2> /dev/null || echo 0)
    failed_before=$failed
    if stage "sanitizer-$tool" 60 "$san_log" compute-sanitizer --tool "$tool" --error-exitcode 9 \
      "$work/gpu_cell" check; then
      continue
    fi
    # Some runtimes (gVisor) refuse the tool: a skip with the reason, not a finding.
    refusal=$(tail -n +"$((before + 1))" "$san_log" | grep -m1 -iE 'Device not supported|error 999' | cut -c1-160)
    if [ -n "$refusal" ]; then
      sed -i '$d' "$summary"
      note "sanitizer-$tool: skipped: the runtime refuses compute-sanitizer: $refusal"
      failed=$failed_before
    fi
  done
fi

# ---- the sequence engine under compute-sanitizer (memcheck, racecheck: small shapes, every option, training) -
if [ "$built" -eq 0 ] && command -v compute-sanitizer > /dev/null; then
  for tool in memcheck racecheck; do
    stage "sanitizer-forward-$tool" 60 "$san_log" env PYTHONPATH="$work/pkg" compute-sanitizer --tool "$tool" \
      --error-exitcode 9 "$python" "$root/tools/gpu_forward_smoke.py"
  done
fi

# ---- benchmark -----------------------------------------------------------------------------------------
if [ "$tools_ok" -eq 0 ]; then
  stage bench 90 "$out/logs/bench.log" env PYTHONPATH="$work/pkg" "$python" "$root/tools/gpu_bench.py" \
    --driver "$work/gpu_cell" --out "$out/bench.json"
  grep -E 'us .* GB/s|ms \(numpy to numpy\)' "$out/logs/bench.log" | sed 's/^/  /' >> "$summary"
  [ -f "$out/bench.json" ] || echo '{"rows": [], "error": "see logs/bench.log"}' > "$out/bench.json"
else
  note "bench: skipped: the GPU tools did not build"
  echo '{"rows": [], "skipped": "the GPU tools did not build"}' > "$out/bench.json"
fi

note "gpu_check finished in $((SECONDS - start)) s: $([ "$failed" -eq 0 ] && echo 'every stage passed' || echo 'FAILURES above')"
rm -rf "$work"
exit "$failed"
