#!/usr/bin/env bash
# valgrind memcheck over tools/valgrind_smoke.py (the installed fastlstm): fails on any invalid read/write
# or use of uninitialised memory inside fastlstm's extension.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
log=$(mktemp)
PYTHONMALLOC=malloc FASTLSTM_NUM_THREADS=2 valgrind --tool=memcheck --error-exitcode=0 --track-origins=no \
  --log-file="$log" python "$here/valgrind_smoke.py"
# Python itself and numpy's allocator have known, harmless reports; only frames in _core count.
if grep -B2 -A12 -E "Invalid (read|write)|uninitialised|Mismatched free|Invalid free" "$log" | grep -q "_core"; then
  grep -B2 -A20 -E "Invalid (read|write)|uninitialised" "$log" | head -80
  echo "valgrind: errors in fastlstm's extension"; exit 1
fi
grep "ERROR SUMMARY" "$log"
echo "valgrind: clean in fastlstm's extension"
