#!/usr/bin/env bash
# The one prepared GPU check (DESIGN.md section 6).
#
#   scripts/device-check.sh build [BUNDLE]        on the CPU machine: builds the release test
#                                                 binaries and `qk`, stripped, into
#                                                 BUNDLE/bundle.tgz (default device-bundle/,
#                                                 ignored; at most 64 MiB)
#   scripts/device-check.sh run [BUNDLE] [OUT]    on the GPU machine (driver + CUDA 13.0, no
#                                                 Rust): runs every test binary with
#                                                 QKERNELS_REQUIRE_GPU=1, the GPU tests under
#                                                 compute-sanitizer (memcheck, racecheck),
#                                                 `qk info`, `qk bench quant` and `qk bench
#                                                 gemm`, and writes report.txt, tests.log,
#                                                 sanitizer.log, bench-quant.json,
#                                                 bench-gemm.json and bench-gemm.svg into OUT
#                                                 (default $OUT).
#   scripts/device-check.sh profile [BUNDLE] [OUT] on the GPU machine: Nsight Compute on the
#                                                 open performance questions (about 2-3
#                                                 minutes): where the sm_90a GEMM's warps
#                                                 wait at 8192^3 with i32, bf16 and i8 out
#                                                 (the fused epilogue's cost) and what
#                                                 limits the dynamic per-row quantize at
#                                                 K = 4096; writes ncu-*.txt, the source
#                                                 pages as CSV and their summaries
#                                                 (scripts/ncu-stalls.py), packed into
#                                                 OUT/profile.tgz, and profile.txt into OUT
#                                                 (the device tool returns at most 8 files,
#                                                 so run and profile share one OUT).
#
# With the device tool: build here, then run with carry=["device-bundle"] and the command
# `scripts/device-check.sh run`, a timeout that leaves room for one rerun, then give_back.
# Order: smoke, tests, benchmarks, sanitizers. Every step has its own timeout (smoke 60 s
# each for the ping-pong turns and the decode kernel, 150 s for every configuration, tests 240 s per binary,
# benchmarks 150 s and 300 s, sanitizers 90 s per run) so one hang cannot eat the lease;
# expect about 5-7 minutes on an H100/H200.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
# The smoke tests: the ping-pong kernels' turns first (the newest protocol), then small
# shapes through every kernel configuration, pinned.
SMOKE_PINGPONG="pingpong_turns"
SMOKE_DECODE="decode_kernels"
SMOKE_TESTS="every_kernel_configuration"

build() {
  set -e
  local bundle=${1:-device-bundle}
  local stage
  stage=$(mktemp -d)
  eval "$(scripts/install-cuda-toolchain.sh --env)"
  export QKERNELS_REQUIRE_CUDA=1
  # The device machines are Hopper: sm_90a code only (each test binary carries the device
  # code; with all three architectures the bundle nears the 64 MiB carry limit).
  export QKERNELS_ARCHS=sm_90a
  rm -rf "$bundle"
  mkdir -p "$bundle" "$stage/tests"
  cargo build --release --bins --quiet
  cp target/release/qk "$stage/"
  local list
  list=$(mktemp)
  cargo test --release --no-run --quiet --message-format=json >"$list"
  python3 - "$list" "$stage" <<'PY'
import json, shutil, sys
listing, bundle = sys.argv[1], sys.argv[2]
for line in open(listing):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable")
    if m.get("reason") != "compiler-artifact" or not exe or not m["profile"]["test"]:
        continue
    kind = m["target"]["kind"][0]
    name = m["target"]["name"] if kind != "lib" else "unit"
    # Left out: the CLI has no unit tests (tests/cli.rs drives the real binary); the
    # criterion benches are not run there (qk bench is); dispatch_measured needs no GPU and
    # reads the committed sweeps from this checkout's path.
    if kind in ("bin", "bench") or name == "dispatch_measured":
        continue
    shutil.copy(exe, f"{bundle}/tests/{name}")
PY
  rm -f "$list"
  strip "$stage/qk" "$stage"/tests/*
  { git rev-parse --short=12 HEAD; git status --porcelain | grep -q . && echo "(working tree had uncommitted changes)"; } >"$stage/REV" || true
  ls -la "$stage" "$stage/tests"
  tar -C "$stage" -czf "$bundle/bundle.tgz" .
  rm -rf "$stage"
  local size
  size=$(du -sb "$bundle" | cut -f1)
  echo "bundle $bundle/bundle.tgz: $((size / 1024 / 1024)) MiB"
  [[ $size -le $((64 * 1024 * 1024)) ]] || { echo "device-check: bundle exceeds 64 MiB" >&2; exit 1; }
}

# Unpacks BUNDLE/bundle.tgz into a new temporary folder and prints its path.
unpack() {
  local dir
  dir=$(mktemp -d)
  tar -C "$dir" -xzf "$1/bundle.tgz" || { echo "device-check: no $1/bundle.tgz; run build first" >&2; return 1; }
  echo "$dir"
}

run() {
  local carried=${1:-device-bundle} out=${2:-${OUT:-device-report}}
  mkdir -p "$out"
  local bundle
  bundle=$(unpack "$carried") || return 1
  local report="$out/report.txt" failed=0 t0
  t0=$(date +%s)
  # Seconds since the start, for the report (the lease is counted in device time).
  at() { echo "+$(($(date +%s) - t0))s"; }
  export QKERNELS_REQUIRE_GPU=1 QK_BIN="$bundle/qk" QK_GIT_REV="$(head -1 "$bundle/REV")"
  {
    echo "# qkernels device check"
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  rev: $(tr '\n' ' ' <"$bundle/REV")"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
    "$bundle/qk" info
  } >"$report" 2>&1

  # Smoke first: the wgmma kernels have mbarrier pipelines that hang, not fail, when a
  # protocol is wrong. Small GEMM tests under short timeouts: the ping-pong turns (the
  # newest protocol), the decode kernel (the newest sm80 kernel), then every configuration
  # pinned. A ping-pong hang leaves the ping-pong kernels out of what follows
  # (every_kernel_configuration, which pins them too, included); any other hang skips the
  # GEMM tests and sanitizer runs, and the benchmark times the sm80 path only; either way the
  # rest of the lease still yields results. A ping-pong or decode smoke that fails leaves
  # that family out of the benchmark's sweep (a kernel fault would end the process's CUDA
  # context, and with it the rest of the sweep).
  hung() { [[ $1 -eq 124 || $1 -eq 137 ]]; }
  # Runs the gemm_gpu tests matching $1 under a timeout of $2 seconds; returns their status.
  smoke() {
    echo "===== smoke: gemm_gpu $1" >>"$out/tests.log"
    timeout -k 10 "$2" "$bundle/tests/gemm_gpu" --test-threads 1 "$1" >>"$out/tests.log" 2>&1
    local rc=$?
    echo "smoke (gemm_gpu $1): rc=$rc $(at)" >>"$report"
    [[ $rc -eq 0 ]] || failed=1
    return $rc
  }
  local gemm_hang=0 pp_hang=0 gemm_skip=() bench_skip=()
  : >"$out/tests.log"
  smoke "$SMOKE_PINGPONG" 60
  local pp_rc=$?
  # The decode smoke has run in full; the gemm_gpu run below leaves it out.
  smoke "$SMOKE_DECODE" 60
  if [[ $? -ne 0 ]]; then
    bench_skip+=(--skip-decode)
    echo "decode FAILED: leaving it out of the benchmark" >>"$report"
  fi
  gemm_skip=(--skip "$SMOKE_DECODE")
  if hung $pp_rc; then
    pp_hang=1
    gemm_skip+=(--skip "$SMOKE_PINGPONG" --skip "$SMOKE_TESTS")
    bench_skip+=(--skip-pingpong)
    echo "ping-pong HUNG: skipping $SMOKE_PINGPONG, $SMOKE_TESTS and the ping-pong benchmark" >>"$report"
  else
    if [[ $pp_rc -ne 0 ]]; then
      bench_skip+=(--skip-pingpong)
      echo "ping-pong FAILED: leaving it out of the benchmark" >>"$report"
    fi
    smoke "$SMOKE_TESTS" 150
    if hung $?; then
      gemm_hang=1
      echo "smoke HUNG: skipping gemm_gpu, its sanitizer runs and the sm90 benchmark" >>"$report"
    fi
  fi

  for t in "$bundle"/tests/*; do
    local name rc
    name=$(basename "$t")
    [[ $gemm_hang -eq 1 && $name == gemm_gpu ]] && continue
    echo "===== $name" >>"$out/tests.log"
    local skip_here=()
    [[ $name == gemm_gpu ]] && skip_here=(${gemm_skip[@]+"${gemm_skip[@]}"})
    timeout -k 10 240 "$t" --test-threads 4 ${skip_here[@]+"${skip_here[@]}"} >>"$out/tests.log" 2>&1
    rc=$?
    [[ $rc -eq 0 ]] || failed=1
    # A GEMM test that hangs past the smoke test still keeps the sm90 kernels out of the
    # sanitizer runs and the benchmark.
    if [[ $name == gemm_gpu ]] && hung $rc; then
      gemm_hang=1
      echo "gemm_gpu HUNG: skipping its sanitizer runs and the sm90 benchmark" >>"$report"
    fi
    echo "test $name: rc=$rc $(at) $(grep -E '^test result' "$out/tests.log" | tail -1)" >>"$report"
  done
  grep -c "SKIPPED" "$out/tests.log" | sed 's/^/SKIPPED lines in tests.log: /' >>"$report"

  # The benchmarks before the sanitizers: if the lease runs out, the figures are what
  # matters most after the tests (the JSON is rewritten after every shape).
  local skip=(${bench_skip[@]+"${bench_skip[@]}"})
  [[ $gemm_hang -eq 1 ]] && skip+=(--skip-sm90)
  timeout -k 10 300 "$bundle/qk" bench gemm ${skip[@]+"${skip[@]}"} --all-kernels --json "$out/bench-gemm.json" --svg "$out/bench-gemm.svg" \
    >>"$report" 2>&1 || failed=1
  echo "bench gemm done $(at)" >>"$report"
  timeout -k 10 150 "$bundle/qk" bench quant --json "$out/bench-quant.json" >>"$report" 2>&1 || failed=1
  echo "bench quant done $(at)" >>"$report"

  : >"$out/sanitizer.log"
  # tool, test binary, test-name filters (subsets: the sanitizers slow kernels down a lot)
  local runs=(
    "memcheck gpu_vs_cpu small_shapes_f32 long_rows gpu_errors"
    "racecheck gpu_vs_cpu long_rows nonfinite_values extreme_values"
    "memcheck gemm_gpu operands_at_offsets a_large_shape gpu_gemm_errors requantized_output_reuses"
    "racecheck gemm_gpu operands_at_offsets"
    "memcheck gemm_gpu every_kernel_configuration"
    "memcheck gemm_gpu decode_kernels"
  )
  for r in "${runs[@]}"; do
    local tool bin filter rc
    read -r tool bin filter <<<"$r"
    [[ $gemm_hang -eq 1 && $bin == gemm_gpu ]] && continue
    [[ $pp_hang -eq 1 && $filter == *"$SMOKE_TESTS"* ]] && continue
    echo "===== $tool $bin: $filter" >>"$out/sanitizer.log"
    # shellcheck disable=SC2086
    timeout -k 10 90 compute-sanitizer --tool "$tool" --error-exitcode 9 "$bundle/tests/$bin" --test-threads 1 $filter \
      >>"$out/sanitizer.log" 2>&1
    rc=$?
    [[ $rc -eq 0 ]] || failed=1
    echo "compute-sanitizer $tool $bin ($filter): rc=$rc $(at) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitizer.log" | tail -1)" >>"$report"
  done

  echo "overall: $([[ $failed -eq 0 ]] && echo PASS || echo FAIL)" >>"$report"
  cat "$report"
  return $failed
}

profile() {
  local carried=${1:-device-bundle} dest=${2:-${OUT:-device-report}}
  mkdir -p "$dest"
  dest=$(cd "$dest" && pwd)
  # Everything is written to a scratch folder, then the readable files packed into one.
  local out
  out=$(mktemp -d)
  local bundle
  bundle=$(unpack "$carried") || return 1
  QK_GIT_REV=$(head -1 "$bundle/REV") || return 1
  export QK_GIT_REV
  local failed=0
  # NOTE: --clock-control none: the card's clocks as a benchmark meets them (and the
  # device machines have not been seen to allow ncu to lock them).
  # One profiled question: ncu on `qk ARGS`, the launches of kernels matching REGEX; the
  # report's details page as text, its source page as CSV, and the CSV's summary.
  ncu_case() {
    local name=$1 regex=$2 count=$3 limit=$4
    shift 4
    echo "===== $name: ncu -k regex:$regex --launch-count $count qk $*"
    timeout -k 10 "$limit" ncu --clock-control none -k "regex:$regex" --launch-count "$count" \
      --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
      --section InstructionStats --section SourceCounters -f -o "$out/ncu-$name" "$bundle/qk" "$@" \
      >"$out/ncu-$name.log" 2>&1 || { echo "ncu $name: rc=$? (see ncu-$name.log)"; failed=1; }
    ncu -i "$out/ncu-$name.ncu-rep" --page details >"$out/ncu-$name.txt" 2>&1 || failed=1
    ncu -i "$out/ncu-$name.ncu-rep" --page source --csv --print-source sass >"$out/ncu-$name-source.csv" 2>&1 || failed=1
    python3 scripts/ncu-stalls.py "$out/ncu-$name-source.csv" --top 30 >"$out/ncu-$name-stalls.txt" 2>&1 || failed=1
    gzip -f "$out/ncu-$name-source.csv"
    grep -E "gemm_s90|quantize_rows|Duration|Warp Cycles Per Issued|Issue Slots Busy|Stall|L2 Hit Rate|DRAM Throughput" \
      "$out/ncu-$name.txt" | head -48
    head -40 "$out/ncu-$name-stalls.txt"
  }
  {
    echo "# qkernels device profile"
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  rev: $(tr '\n' ' ' <"$bundle/REV")"
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
    # 8192^3 through the dispatcher's kernels: the first three gemm_s90 launches are ours
    # with i32, bf16 and i8 out (bench_shape's candidate order; on the H200 all three
    # ping-pong, on the H100 i32 out through 128x256 multicast).
    ncu_case gemm gemm_s90 3 240 bench gemm --shape 8192x8192x8192
    # The first quantize_rows launch of `qk bench quant`: dynamic per-row bf16 -> i8, K = 4096.
    ncu_case quant quantize_rows 1 150 bench quant
    echo "overall: $([[ $failed -eq 0 ]] && echo PASS || echo FAIL)"
  } >"$out/profile.txt" 2>&1
  cat "$out/profile.txt"
  cp "$out/profile.txt" "$dest/"
  (cd "$out" && tar -czf "$dest/profile.tgz" --exclude='*.ncu-rep' .) || failed=1
  rm -rf "$bundle" "$out"
  return $failed
}

case "$mode" in
  build) shift; build "$@" ;;
  run) shift; run "$@" ;;
  profile) shift; profile "$@" ;;
  *) echo "usage: $0 build [BUNDLE] | run [BUNDLE] [OUT] | profile [BUNDLE] [OUT]" >&2; exit 2 ;;
esac
