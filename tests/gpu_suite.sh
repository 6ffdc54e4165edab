#!/usr/bin/env bash
# The whole GPU check in one command, for a machine with a GPU (16 cores or so): build every
# target in parallel, run ctest, the sanitizers and, if torch is installed, the PyTorch
# package's tests. Prints each step's summary line; exits non-zero if any step failed.
#
#   tests/gpu_suite.sh [LOG_DIR]      (default: gpu_suite_logs)
#
# Build all targets with one `cmake --build build -j N`: naming several targets with --target
# builds them one after another under Makefiles, which is far slower.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=${1:-gpu_suite_logs}
mkdir -p "$logs"
jobs=$(nproc)
status=0
cmake --preset test >"$logs/configure.log" 2>&1 && cmake --build build -j "$jobs" >"$logs/build.log" 2>&1 ||
  { echo "build failed: see $logs/build.log"; exit 1; }
ctest --preset test -j 4 >"$logs/ctest.log" 2>&1 || status=1
grep -E "tests passed|tests failed" "$logs/ctest.log"
tests/sanitize.sh build/tests >"$logs/sanitize.log" 2>&1 || status=1
tail -n 1 "$logs/sanitize.log"
if python3 -c "import torch" 2>/dev/null; then
  TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=$jobs python3 -m pip install ./python --no-build-isolation \
    --no-deps -q >"$logs/pip.log" 2>&1 || { echo "pip install failed: see $logs/pip.log"; status=1; }
  python3 -m pytest python/tests -q >"$logs/pytest.log" 2>&1 || status=1
  tail -n 1 "$logs/pytest.log"
fi
exit $status
