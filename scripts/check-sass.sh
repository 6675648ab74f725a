#!/usr/bin/env bash
# Checks the SASS of the kernels in the newest release build's static library: machine
# code for sm_80, sm_89 and sm_90a exists for the quantize kernels and for the sm_80 GEMM,
# whose code uses the integer tensor-core instruction (IMMA); sm_90a code for the Hopper
# GEMM with wgmma (IGMMA) and TMA (UTMALDG); no kernel touches local
# memory (LDL/STL: spills or stack arrays). Needs cuobjdump (install-cuda-toolchain.sh).
#
#   scripts/check-sass.sh               dumps the library's SASS once and checks it
#   scripts/check-sass.sh --sass FILE   checks a dump made earlier (cuobjdump --dump-sass)
#
# One dump and one pass: the dump is ~800 MB of text for all three architectures, and
# dumping it once per architecture cost CI about 5 minutes.
set -euo pipefail
given=
if [[ ${1:-} == --sass ]]; then
  given=$(realpath "${2:?check-sass: --sass needs a file}")
fi
cd "$(dirname "$0")/.."
if [[ -n $given ]]; then
  sass=$given
  from=$sass
else
  lib=$(ls -t target/release/build/qkernels-*/out/libqkernels_cuda.a 2>/dev/null | head -1 || true)
  [[ -n "$lib" ]] || { echo "check-sass: no target/release/build/qkernels-*/out/libqkernels_cuda.a; build with nvcc first" >&2; exit 1; }
  sass=$(mktemp)
  trap 'rm -f "$sass"' EXIT
  cuobjdump --dump-sass "$lib" >"$sass"
  from=$lib
fi
# `code for sm_XX` opens each architecture's machine code, `Function : NAME` each kernel.
LC_ALL=C awk -v from="$from" '
  function close_kernel() {
    if (f ~ /gemm_s80/ && !imma) bad = bad "\n  " arch " " f ": a gemm_s80 kernel without IMMA"
    if (f ~ /gemm_s90/ && !(igmma && tma)) bad = bad "\n  " arch " " f ": a gemm_s90 kernel without IGMMA and UTMALDG"
    f = ""; imma = igmma = tma = 0
  }
  /^[ \t]*code for sm_/ { close_kernel(); arch = $3; next }
  /Function :/ {
    close_kernel(); f = $3
    if (f ~ /quantize_rows/) nq[arch]++
    if (f ~ /gemm_s80/) n80[arch]++
    if (f ~ /gemm_s90/) { n90[arch]++; if (arch != "sm_90a") bad = bad "\n  " arch " " f ": a gemm_s90 kernel outside sm_90a" }
    next
  }
  /IMMA/ { imma = 1 }
  /IGMMA/ { igmma = 1 }
  /UTMALDG/ { tma = 1 }
  /[^A-Z](LDL|STL)[. ]/ { if (!((arch " " f) in local)) { local[arch " " f] = 1; bad = bad "\n  " arch " " f ": local memory access (LDL/STL)" } }
  END {
    close_kernel()
    split("sm_80 sm_89 sm_90a", archs, " ")
    for (i = 1; i <= 3; i++) {
      a = archs[i]
      printf "%s: %d quantize_rows kernels, %d gemm_s80 kernels\n", a, nq[a], n80[a]
      if (!nq[a]) bad = bad "\n  no " a " SASS for quantize_rows"
      if (!n80[a]) bad = bad "\n  no " a " SASS for gemm_s80"
    }
    printf "sm_90a: %d gemm_s90 kernels\n", n90["sm_90a"]
    if (!n90["sm_90a"]) bad = bad "\n  no sm_90a SASS for gemm_s90"
    if (bad != "") { print "check-sass: FAILED:" bad > "/dev/stderr"; exit 1 }
    print "check-sass: ok (" from ")"
  }
' "$sass"
