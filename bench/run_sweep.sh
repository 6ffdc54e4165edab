#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the whole benchmark sweep and plots it.
#
#   bench/run_sweep.sh [OUT_DIR] [BENCH_BINARY] [-- extra rope_bench arguments]
#
# OUT_DIR (default ./rope_bench_results) gets bench.json, bench.txt (console output), the PNGs
# and table.md. BENCH_BINARY defaults to $ROPE_BENCH, then build/bench/rope_bench of this
# checkout, built first (release preset) if it is missing. Exits non-zero when there is no GPU, the benchmark fails, or a benchmark errored.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-rope_bench_results}
[ $# -gt 0 ] && shift
bin=${ROPE_BENCH:-$here/../build/bench/rope_bench}
if [ $# -gt 0 ] && [ "$1" != "--" ]; then bin=$1; shift; fi
[ "${1:-}" = "--" ] && shift

# nvidia-smi, where present, answers fastest; rope_bench itself also refuses to run without a GPU.
if command -v nvidia-smi >/dev/null && ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "run_sweep.sh: no NVIDIA GPU found (nvidia-smi -L lists none): the benchmark needs one" >&2
  exit 1
fi
if [ ! -x "$bin" ] && [ -z "${ROPE_BENCH:-}" ]; then
  echo "run_sweep.sh: building rope_bench (cmake --preset release)" >&2
  (cd "$here/.." && cmake --preset release >/dev/null && cmake --build --preset release --target rope_bench -j)
fi
if [ ! -x "$bin" ]; then
  echo "run_sweep.sh: no benchmark binary at $bin" >&2
  exit 2
fi

mkdir -p "$out"
status=0
"$bin" --benchmark_out="$out/bench.json" --benchmark_out_format=json "$@" 2>&1 | tee "$out/bench.txt" || status=$?
if [ "$status" -ne 0 ]; then
  echo "run_sweep.sh: $bin failed (exit $status); see $out/bench.txt" >&2
  exit "$status"
fi
python3 "$here/plot.py" "$out/bench.json" -o "$out" | tee "$out/table.md"
