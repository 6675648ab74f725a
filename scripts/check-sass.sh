#!/usr/bin/env bash
# Checks the SASS of the kernels in the newest release build's static library: machine
# code for sm_80, sm_89 and sm_90a exists for the quantize kernels and for the sm_80 GEMM,
# whose code uses the integer tensor-core instruction (IMMA); sm_90a code for the Hopper
# GEMM with wgmma (IGMMA) and TMA (UTMALDG); no kernel touches local
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
  arch_sass=$(cuobjdump --dump-sass --gpu-architecture "$arch" "$lib")
  nq=$(grep -c "Function : .*quantize_rows" <<<"$arch_sass" || true)
  ng=$(grep -c "Function : .*gemm_s80" <<<"$arch_sass" || true)
  # IMMA per GEMM function: every gemm_s80 kernel must contain the instruction.
  missing=$(awk '/Function :/ {if (f ~ /gemm_s80/ && !imma) print f; f=$3; imma=0} /IMMA/ {imma=1}
                 END {if (f ~ /gemm_s80/ && !imma) print f}' <<<"$arch_sass")
  echo "$arch: $nq quantize_rows kernels, $ng gemm_s80 kernels"
  [[ "$nq" -gt 0 ]] || { echo "check-sass: no $arch SASS for quantize_rows" >&2; fail=1; }
  [[ "$ng" -gt 0 ]] || { echo "check-sass: no $arch SASS for gemm_s80" >&2; fail=1; }
  [[ -z "$missing" ]] || { echo "check-sass: $arch gemm_s80 kernels without IMMA: $missing" >&2; fail=1; }
done
# The Hopper GEMM: sm_90a only, every kernel issues IGMMA (wgmma) and UTMALDG (TMA).
sm90=$(cuobjdump --dump-sass --gpu-architecture sm_90a "$lib")
n90=$(grep -c "Function : .*gemm_s90" <<<"$sm90" || true)
missing=$(awk '/Function :/ {if (f ~ /gemm_s90/ && !(g && t)) print f; f=$3; g=0; t=0} /IGMMA/ {g=1} /UTMALDG/ {t=1}
               END {if (f ~ /gemm_s90/ && !(g && t)) print f}' <<<"$sm90")
echo "sm_90a: $n90 gemm_s90 kernels"
[[ "$n90" -gt 0 ]] || { echo "check-sass: no sm_90a SASS for gemm_s90" >&2; fail=1; }
[[ -z "$missing" ]] || { echo "check-sass: gemm_s90 kernels without IGMMA/UTMALDG: $missing" >&2; fail=1; }
if grep -qE "\b(LDL|STL)(\.[A-Z0-9]+)*\b" "$sass"; then
  echo "check-sass: local memory access (LDL/STL) in:" >&2
  awk '/Function :/ {f=$3} /[^A-Z](LDL|STL)[. ]/ {print "  " f}' "$sass" | sort -u >&2
  fail=1
fi
[[ $fail -eq 0 ]] && echo "check-sass: ok ($lib)"
exit $fail
