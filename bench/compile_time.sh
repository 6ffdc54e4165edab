#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Compile time of a user's translation unit: one small generated TU per public entry point family,
# compiled (-c) one at a time with the flags of a CMake Release build for one architecture, timed
# (wall seconds, best of --runs), printed as a Markdown table. The precompiled rows compile the
# same TU as a user of rope::precompiled does (ROPE_PRECOMPILED defined: the launchers are extern
# template, their kernels come from the library).
#
#   bench/compile_time.sh [--runs N] [--flags "EXTRA NVCC FLAGS"] [ARCH [NVCC]]
#
# ARCH: a real architecture number (default 90: -arch=sm_90, SASS and PTX as CMake's
# CUDA_ARCHITECTURES=90 gives). NVCC: the compiler (default: $CUDACXX, nvcc on PATH, or
# /usr/local/cuda/bin/nvcc). The "rope kernels" column counts the kernel instances in each object
# (nm), so the precompiled rows show they compile none. docs/performance.md has a measured table.
set -euo pipefail

runs=1
extra_flags=""
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --flags) extra_flags="$2"; shift 2 ;;
    -h|--help) sed -n '3,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) positional+=("$1"); shift ;;
  esac
done
arch="${positional[0]:-90}"
nvcc="${positional[1]:-${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}}"
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then echo "--runs takes a positive integer" >&2; exit 2; fi
if ! [[ "$arch" =~ ^[0-9]+[a-z]?$ ]]; then echo "ARCH is an architecture number such as 90" >&2; exit 2; fi
if ! "$nvcc" --version >/dev/null 2>&1; then echo "no working nvcc at '$nvcc'" >&2; exit 2; fi

root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# What a CMake Release build of a rope user passes (nvcc 13's default dialect is C++17; the
# library needs no --expt-relaxed-constexpr or other extra flag).
flags=(-O3 -DNDEBUG -std=c++17 "-arch=sm_${arch}" "-I${root}/include")
# shellcheck disable=SC2206  # word splitting of the extra flags is intended
extra=(${extra_flags})

# name|defines|body of the TU after #include <rope/rope.cuh> (none for the baseline)
rows=(
  'trivial kernel (baseline)||'
  '`rope_forward<bf16>`||cudaError_t run(const rope::RopeParams<__nv_bfloat16>& p, cudaStream_t s) { return rope::rope_forward(p, s); }'
  '`rope_forward<float>`||cudaError_t run(const rope::RopeParams<float>& p, cudaStream_t s) { return rope::rope_forward(p, s); }'
  '`rope_backward<bf16>`||cudaError_t run(const rope::RopeParams<__nv_bfloat16>& p, cudaStream_t s) { return rope::rope_backward(p, s); }'
  '`rope_forward_append<bf16, bf16>`||cudaError_t run(const rope::RopeParams<__nv_bfloat16>& p, const rope::KvCacheAppend<__nv_bfloat16, __nv_bfloat16>& a, cudaStream_t s) { return rope::rope_forward_append(p, a, s); }'
  '`rope_forward_append<bf16, fp8>`||cudaError_t run(const rope::RopeParams<__nv_bfloat16>& p, const rope::KvCacheAppend<__nv_bfloat16, __nv_fp8_e4m3>& a, cudaStream_t s) { return rope::rope_forward_append(p, a, s); }'
  '`rope_forward_qk_norm<bf16>`||cudaError_t run(const rope::RopeParams<__nv_bfloat16>& p, const rope::QkNorm<__nv_bfloat16>& n, cudaStream_t s) { return rope::rope_forward_qk_norm(p, n, s); }'
)
# The attention prologue (norm + RoPE + cache write + q to FP8 in one launch), where this tree has it.
if [ -f "$root/include/rope/prologue.cuh" ]; then
  rows+=('`rope_attention_prologue<bf16, fp8>`||cudaError_t run(const rope::RopeParams<__nv_bfloat16>& p, const rope::AttentionPrologue<__nv_bfloat16, __nv_fp8_e4m3>& a, cudaStream_t s) { return rope::rope_attention_prologue(p, a, s); }')
fi
rows+=(
  '`rope_forward<bf16>`, precompiled|-DROPE_PRECOMPILED|cudaError_t run(const rope::RopeParams<__nv_bfloat16>& p, cudaStream_t s) { return rope::rope_forward(p, s); }'
  '`rope_forward_append<bf16, fp8>`, precompiled|-DROPE_PRECOMPILED|cudaError_t run(const rope::RopeParams<__nv_bfloat16>& p, const rope::KvCacheAppend<__nv_bfloat16, __nv_fp8_e4m3>& a, cudaStream_t s) { return rope::rope_forward_append(p, a, s); }'
)

now() { date +%s.%N; }
cores="$(nproc 2>/dev/null || echo '?')"
version="$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
echo "Compile time of one translation unit (-c), nvcc ${version}, sm_${arch}, ${cores} cores, best of ${runs}:"
echo "\`nvcc ${flags[*]/#-I*/-I include} ${extra[*]}\`"
echo
echo "| Translation unit | Wall s | rope kernels |"
echo "| --- | ---: | ---: |"
i=0
for row in "${rows[@]}"; do
  IFS='|' read -r name defines body <<<"$row"
  tu="$work/tu$i.cu"
  if [ -z "$body" ]; then
    printf '__global__ void kernel(float* x) { x[threadIdx.x] = 1.0f; }\n' >"$tu"
  else
    printf '#include <rope/rope.cuh>\n%s\n' "$body" >"$tu"
  fi
  best=""
  for ((r = 0; r < runs; r++)); do
    start="$(now)"
    # shellcheck disable=SC2086  # defines is empty or one flag
    "$nvcc" "${flags[@]}" "${extra[@]}" $defines -c "$tu" -o "$work/tu$i.o"
    end="$(now)"
    best="$(awk -v s="$start" -v e="$end" -v b="$best" 'BEGIN { t = e - s; print (b == "" || t < b) ? t : b }')"
  done
  kernels="n/a"
  if command -v nm >/dev/null; then
    kernels="$(nm -C "$work/tu$i.o" | grep -v -e '__device_stub' -e 'guard variable' -e '\[clone' |
      grep -cE ' [tTwW] void rope::detail::rotate_[a-z_]*_kernel<' || true)"
  fi
  printf '| %s | %.1f | %s |\n' "$name" "$best" "$kernels"
  i=$((i + 1))
done
echo
echo "Precompiled rows: the same TU with -DROPE_PRECOMPILED, as rope::precompiled compiles its users (docs/api.md#precompiled-kernels)."
