#!/usr/bin/env bash
# Runs the GPU test programs under compute-sanitizer's four tools (memcheck, racecheck,
# initcheck, synccheck) and fails if any reports an error.
#
#   tests/sanitize.sh [BIN_DIR]     (default: build/tests; on a bundle: .gpu/bin)
#
# The sanitizers slow kernels down 10-100x, so the multi-gigabyte and many-thousand-case tests
# are left out here (they run in the plain GPU suite).
set -uo pipefail
bin=${1:-build/tests}
command -v compute-sanitizer >/dev/null || { echo "compute-sanitizer not found (it ships with the CUDA toolkit)"; exit 2; }
# The randomized programs are not listed: rope_randomized_tests makes no CUDA call (host runs
# only), which compute-sanitizer reports as an error, and rope_randomized_gpu_tests is thousands of
# cases; rope_gpu_tests covers every kernel instance they do.
exclude='-GpuLarge.*:*Index64Bit*:*TokenCounts*:*RandomConfigurations*:*RowsWalk*:DeviceAnswersOnGpu.*'
status=0
for tool in memcheck racecheck initcheck synccheck; do
  for prog in rope_gpu_tests rope_frequency_tests rope_hardening_tests rope_variant_tests rope_plan_tests \
    rope_readme_tests rope_prologue_gpu_tests; do
    [ -x "$bin/$prog" ] || continue
    log=$(mktemp)
    compute-sanitizer --tool "$tool" --error-exitcode 99 "$bin/$prog" --gtest_brief=1 --gtest_filter="$exclude" >"$log" 2>&1
    rc=$?
    summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$log" | tail -1)
    tests=$(grep -E "^\[  PASSED  \]|^\[  FAILED  \]" "$log" | tr '\n' ' ')
    echo "$tool $prog: ${summary:-no summary} ${tests}(exit $rc)"
    [ $rc -eq 0 ] || { status=1; grep -E "=========" "$log" | head -20; }
    rm -f "$log"
  done
done
[ $status -eq 0 ] && echo "sanitizers: 0 errors" || echo "sanitizers: ERRORS"
exit $status
