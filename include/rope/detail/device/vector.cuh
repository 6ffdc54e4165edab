// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Element conversions and aligned vector loads/stores used by the per-token body.
/// All of it is __host__ __device__ so the body runs unchanged in host tests.

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <rope/config.cuh>

namespace rope {
namespace detail {

ROPE_HOST_DEVICE float to_float(float v) { return v; }
ROPE_HOST_DEVICE float to_float(__half v) { return __half2float(v); }
ROPE_HOST_DEVICE float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> ROPE_HOST_DEVICE T from_float(float v);
template <> ROPE_HOST_DEVICE float from_float<float>(float v) { return v; }
template <> ROPE_HOST_DEVICE __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> ROPE_HOST_DEVICE __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

/// Two floats rounded to T, to nearest even each (as from_float): for bf16 and fp16 by one
/// conversion of the pair (`cvt.rn.bf16x2.f32`, `cvt.rn.f16x2.f32`). Left to the compiler, the
/// pairing depended on the surrounding code: the FP8 append instance rounded each value on its
/// own and was slower for it (see kRoundPairs in token_body.cuh). The float overload (nothing to
/// round) lets Fragment::set_pair compile for every element type.
ROPE_HOST_DEVICE void round_pair(float first, float second, float& out_first, float& out_second) {
  out_first = first;
  out_second = second;
}
ROPE_HOST_DEVICE void round_pair(float first, float second, __nv_bfloat16& out_first, __nv_bfloat16& out_second) {
  const __nv_bfloat162 two = __floats2bfloat162_rn(first, second);
  out_first = two.x;
  out_second = two.y;
}
ROPE_HOST_DEVICE void round_pair(float first, float second, __half& out_first, __half& out_second) {
  const __half2 two = __floats2half2_rn(first, second);
  out_first = two.x;
  out_second = two.y;
}

/// N elements moved as one aligned access (N * sizeof(T) bytes: 16 gives LDG.128/STG.128).
template <typename T, int N>
struct alignas(sizeof(T) * N) Packed {
  T elem[N];
};

/// Widest access, in elements, that a pointer aligned to N elements may use (16 bytes at most).
template <typename T, int N>
struct Access {
  static constexpr int kMax = 16 / static_cast<int>(sizeof(T));
  static constexpr int value = N < kMax ? N : kMax;
};

/// The GPU faults on a misaligned vector access; the host does not. So that host tests of the
/// body catch what the GPU would, every vector access checks its alignment when run on the host.
template <typename T, int N>
ROPE_HOST_DEVICE void check_aligned(const T* p) {
#if !defined(__CUDA_ARCH__)
  if (reinterpret_cast<std::uintptr_t>(p) % (sizeof(T) * N) != 0) {
    std::fprintf(stderr, "rope: misaligned %d-byte access at %p\n", static_cast<int>(sizeof(T) * N),
                 static_cast<const void*>(p));
    std::abort();
  }
#endif
}

/// Loads N consecutive elements starting at p, kChunk elements per access (p aligned to kChunk
/// elements; by default the widest access up to 16 bytes).
template <int N, typename T, int kChunk = Access<T, N>::value>
ROPE_HOST_DEVICE void load_elements(const T* p, T (&out)[N]) {
ROPE_UNROLL
  for (int c = 0; c < N; c += kChunk) {
    check_aligned<T, kChunk>(p + c);
    const Packed<T, kChunk> v = *reinterpret_cast<const Packed<T, kChunk>*>(p + c);
ROPE_UNROLL
    for (int i = 0; i < kChunk; ++i) out[c + i] = v.elem[i];
  }
}

/// N elements held as N / kChunk aligned vectors, so that a load keeps them packed in registers
/// (a 16-byte vector of bf16 stays four registers, not eight) until they are used.
template <typename T, int N, int kChunk = Access<T, N>::value>
struct Fragment {
  static_assert(N % kChunk == 0, "a fragment is whole vectors");
  Packed<T, kChunk> vec[N / kChunk];

  ROPE_HOST_DEVICE void load(const T* p) {
ROPE_UNROLL
    for (int c = 0; c < N / kChunk; ++c) {
      check_aligned<T, kChunk>(p + c * kChunk);
      vec[c] = *reinterpret_cast<const Packed<T, kChunk>*>(p + c * kChunk);
    }
  }
  ROPE_HOST_DEVICE void store(T* p) const {
ROPE_UNROLL
    for (int c = 0; c < N / kChunk; ++c) {
      check_aligned<T, kChunk>(p + c * kChunk);
      *reinterpret_cast<Packed<T, kChunk>*>(p + c * kChunk) = vec[c];
    }
  }
  ROPE_HOST_DEVICE float get(int i) const { return to_float(vec[i / kChunk].elem[i % kChunk]); }
  ROPE_HOST_DEVICE void set(int i, float v) { vec[i / kChunk].elem[i % kChunk] = from_float<T>(v); }
  /// Elements i and i + 1 (i even, kChunk even: one vector holds both) from two floats, rounded
  /// as `set` rounds each, by one paired conversion where T has one (`round_pair`).
  ROPE_HOST_DEVICE void set_pair(int i, float first, float second) {
    static_assert(kChunk % 2 == 0, "a pair of elements shares one vector only when vectors hold pairs");
    round_pair(first, second, vec[i / kChunk].elem[i % kChunk], vec[i / kChunk].elem[i % kChunk + 1]);
  }
};

/// Loads N consecutive elements starting at p as floats (aligned as for load_elements).
template <int N, typename T>
ROPE_HOST_DEVICE void load_floats(const T* p, float (&out)[N]) {
  T raw[N];
  load_elements<N>(p, raw);
ROPE_UNROLL
  for (int i = 0; i < N; ++i) out[i] = to_float(raw[i]);
}

/// Copies N elements unchanged (the pass-through tail of partial rotary).
template <int N, typename T>
ROPE_HOST_DEVICE void copy_elements(const T* src, T* dst) {
  constexpr int kChunk = Access<T, N>::value;
ROPE_UNROLL
  for (int c = 0; c < N; c += kChunk) {
    check_aligned<T, kChunk>(src + c);
    check_aligned<T, kChunk>(dst + c);
    *reinterpret_cast<Packed<T, kChunk>*>(dst + c) = *reinterpret_cast<const Packed<T, kChunk>*>(src + c);
  }
}

}  // namespace detail
}  // namespace rope
