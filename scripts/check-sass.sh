#!/usr/bin/env bash
# Checks the SASS of the kernels in the newest release build's static library:
# sm_90a machine code exists for every quantize kernel, and no kernel touches local
# memory (LDL/STL: spills or stack arrays). Needs cuobjdump (install-cuda-toolchain.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
lib=$(ls -t target/release/build/qkernels-*/out/libqkernels_cuda.a 2>/dev/null | head -1 || true)
[[ -n "$lib" ]] || { echo "check-sass: no target/release/build/qkernels-*/out/libqkernels_cuda.a; build with nvcc first" >&2; exit 1; }
sass=$(mktemp)
trap 'rm -f "$sass"' EXIT
cuobjdump --dump-sass "$lib" > "$sass"
fail=0
for arch in sm_80 sm_89 sm_90a; do
  n=$(cuobjdump --dump-sass --gpu-architecture "$arch" "$lib" | grep -c "Function : .*quantize_rows" || true)
  echo "$arch: $n quantize_rows kernels"
  [[ "$n" -gt 0 ]] || { echo "check-sass: no $arch SASS for quantize_rows" >&2; fail=1; }
done
if grep -qE "\b(LDL|STL)(\.[A-Z0-9]+)*\b" "$sass"; then
  echo "check-sass: local memory access (LDL/STL) in:" >&2
  awk '/Function :/ {f=$3} /[^A-Z](LDL|STL)[. ]/ {print "  " f}' "$sass" | sort -u >&2
  fail=1
fi
[[ $fail -eq 0 ]] && echo "check-sass: ok ($lib)"
exit $fail
