// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The launcher instances that the opt-in library rope::precompiled holds (CMake option
/// ROPE_BUILD_PRECOMPILED), declared `extern template`: a translation unit that sees these
/// declarations compiles none of their kernels and calls the library's instances instead.
///
/// rope::precompiled defines ROPE_PRECOMPILED for its users, and <rope/rope.cuh> then includes
/// this header, so linking the target is all a user does. Including it without linking
/// rope::precompiled leaves the declared instances undefined at link time.
///
/// Held, for each tensor type T the library was built with (ROPE_PRECOMPILED_TYPES):
///   rope_forward<T> and rope_backward<T> (RopeParams), the one-call rope_forward<T>,
///   rope_forward_append<T, T>, rope_forward_qk_norm<T, T>, and for __half and __nv_bfloat16
///   also rope_forward_append<T, __nv_fp8_e4m3> and rope_forward_qk_norm<T, float>.
/// Any other instance (a float tensor with an FP8 cache, say) is compiled in the calling
/// translation unit as without the library.

#include <cstdint>

#include <cuda_runtime.h>

#include <rope/kv_cache.cuh>
#include <rope/kv_cache_types.cuh>
#include <rope/launch.cuh>
#include <rope/launch_options.cuh>
#include <rope/qk_norm.cuh>
#include <rope/qk_norm_types.cuh>
#include <rope/types.cuh>

// Which tensor types the library holds, each 0 or 1. rope::precompiled defines all three for
// its users from ROPE_PRECOMPILED_TYPES; one left undefined counts as held.
#if !defined(ROPE_PRECOMPILED_FLOAT)
#define ROPE_PRECOMPILED_FLOAT 1
#endif
#if !defined(ROPE_PRECOMPILED_HALF)
#define ROPE_PRECOMPILED_HALF 1
#endif
#if !defined(ROPE_PRECOMPILED_BF16)
#define ROPE_PRECOMPILED_BF16 1
#endif

// One list of instances for both sides: this header expands it with `extern` (declarations),
// the library's sources (src/precompiled/) with nothing (definitions), so the two cannot drift.
// Each family macro takes (prefix, T) and names the instances of one launcher family for T.

#define ROPE_DETAIL_PRECOMPILED_LAUNCHERS(prefix, T)                                                         \
  prefix template cudaError_t rope_forward<T>(const RopeParams<T>&, cudaStream_t, const LaunchOptions&);     \
  prefix template cudaError_t rope_backward<T>(const RopeParams<T>&, cudaStream_t, const LaunchOptions&);    \
  prefix template cudaError_t rope_forward<T>(const T*, const float*, const float*, T*, std::int64_t, int,    \
                                              cudaStream_t);

#define ROPE_DETAIL_PRECOMPILED_APPEND(prefix, T)                                                         \
  prefix template cudaError_t rope_forward_append<T, T>(const RopeParams<T>&, const KvCacheAppend<T, T>&, \
                                                        cudaStream_t, const LaunchOptions&);

#define ROPE_DETAIL_PRECOMPILED_APPEND_FP8(prefix, T)                                                 \
  prefix template cudaError_t rope_forward_append<T, __nv_fp8_e4m3>(                                  \
      const RopeParams<T>&, const KvCacheAppend<T, __nv_fp8_e4m3>&, cudaStream_t, const LaunchOptions&);

#define ROPE_DETAIL_PRECOMPILED_QK_NORM(prefix, T)                                                  \
  prefix template cudaError_t rope_forward_qk_norm<T, T>(const RopeParams<T>&, const QkNorm<T, T>&, \
                                                         cudaStream_t, const LaunchOptions&);

#define ROPE_DETAIL_PRECOMPILED_QK_NORM_FP32_WEIGHTS(prefix, T)                                             \
  prefix template cudaError_t rope_forward_qk_norm<T, float>(const RopeParams<T>&, const QkNorm<T, float>&, \
                                                             cudaStream_t, const LaunchOptions&);

#if ROPE_PRECOMPILED_FLOAT
#define ROPE_DETAIL_IF_PRECOMPILED_FLOAT(...) __VA_ARGS__
#else
#define ROPE_DETAIL_IF_PRECOMPILED_FLOAT(...)
#endif
#if ROPE_PRECOMPILED_HALF
#define ROPE_DETAIL_IF_PRECOMPILED_HALF(...) __VA_ARGS__
#else
#define ROPE_DETAIL_IF_PRECOMPILED_HALF(...)
#endif
#if ROPE_PRECOMPILED_BF16
#define ROPE_DETAIL_IF_PRECOMPILED_BF16(...) __VA_ARGS__
#else
#define ROPE_DETAIL_IF_PRECOMPILED_BF16(...)
#endif

/// FAMILY(prefix, T) for every held tensor type T.
#define ROPE_DETAIL_PRECOMPILED_FOR_TYPES(FAMILY, prefix) \
  ROPE_DETAIL_IF_PRECOMPILED_FLOAT(FAMILY(prefix, float)) \
  ROPE_DETAIL_IF_PRECOMPILED_HALF(FAMILY(prefix, __half)) \
  ROPE_DETAIL_IF_PRECOMPILED_BF16(FAMILY(prefix, __nv_bfloat16))

/// FAMILY(prefix, T) for every held 16-bit tensor type T (FP8 caches and fp32 norm weights go
/// with 16-bit models; for float, QkNorm<float, float> is the <T, T> family already).
#define ROPE_DETAIL_PRECOMPILED_FOR_16BIT_TYPES(FAMILY, prefix) \
  ROPE_DETAIL_IF_PRECOMPILED_HALF(FAMILY(prefix, __half))       \
  ROPE_DETAIL_IF_PRECOMPILED_BF16(FAMILY(prefix, __nv_bfloat16))

/// Every instance the library holds.
#define ROPE_DETAIL_PRECOMPILED_ALL(prefix)                                           \
  ROPE_DETAIL_PRECOMPILED_FOR_TYPES(ROPE_DETAIL_PRECOMPILED_LAUNCHERS, prefix)        \
  ROPE_DETAIL_PRECOMPILED_FOR_TYPES(ROPE_DETAIL_PRECOMPILED_APPEND, prefix)           \
  ROPE_DETAIL_PRECOMPILED_FOR_16BIT_TYPES(ROPE_DETAIL_PRECOMPILED_APPEND_FP8, prefix) \
  ROPE_DETAIL_PRECOMPILED_FOR_TYPES(ROPE_DETAIL_PRECOMPILED_QK_NORM, prefix)          \
  ROPE_DETAIL_PRECOMPILED_FOR_16BIT_TYPES(ROPE_DETAIL_PRECOMPILED_QK_NORM_FP32_WEIGHTS, prefix)

namespace rope {

ROPE_DETAIL_PRECOMPILED_ALL(extern)

}  // namespace rope
