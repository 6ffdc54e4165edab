// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The cache-append stage of the per-token body: which append a kernel instance does (a template
/// parameter: none, or a cache of element type C), where a token's cache rows are, and the
/// converting stores into them. All __host__ __device__, tested on the host with the body.
/// FP8 E4M3 is the one converted cache type so far (its conversions: detail/device/quantize.cuh).

#include <cstdint>
#include <cstring>
#include <type_traits>

#include <cuda_fp8.h>

#include <rope/config.cuh>
#include <rope/detail/device/divisor.cuh>
#include <rope/detail/device/quantize.cuh>
#include <rope/detail/device/vector.cuh>
#include <rope/kv_cache_types.cuh>

namespace rope {
namespace detail {

/// The plain RoPE launch: no append. Empty, so every use of it compiles away.
struct NoAppend {
  static constexpr bool kEnabled = false;
  static constexpr bool kQuantizesQ = false;
  static constexpr bool kHasCache = false;
  using Cache = unsigned char;  // names a type for the (unused) cache pointers
};

/// The kernel-side form of a KvCacheAppend, resolved once by the launcher (CUTLASS's Arguments
/// -> Params): the slot count, which of q.y and k.y are written, and the FP8 scales with their
/// reciprocals. For an unwritten k.y (no write-back) or q.y (q to q_fp8 only) the launcher points
/// the kernel's y at x (never written then), so no address is ever formed from null.
///
/// `QuantizesQ`: whether the instance can store q as FP8 too (args.q_fp8 says whether it does);
/// rope_forward_append's instances do with an FP8 cache, the attention prologue's with any.
/// `HasCache`: whether k and v go to paged caches; without (an attention prologue that only
/// quantizes q) the slots, the caches and v are never read.
template <typename T, typename C, bool QuantizesQ = std::is_same<C, __nv_fp8_e4m3>::value, bool HasCache = true>
struct CacheAppend {
  static constexpr bool kEnabled = true;
  static constexpr bool kQuantizesQ = QuantizesQ;
  static constexpr bool kHasCache = HasCache;
  using Cache = C;
  KvCacheAppend<T, C> args;
  std::int64_t num_slots;  ///< num_blocks * block_size (checked by validation to fit)
  bool k_write_back;       ///< store the rotated k to k.y too
  bool q_to_y;             ///< store the rotated q to q.y (false only with q_fp8 and a null q.y)
  DivisionScale k_scale;   ///< args.k_scale and its reciprocal
  DivisionScale v_scale;   ///< args.v_scale and its reciprocal
  DivisionScale q_scale;   ///< args.q_scale and its reciprocal
};

/// Head `h` of token `token` in q's FP8 output (args.q_fp8 set).
template <typename T, typename C>
ROPE_HOST_DEVICE __nv_fp8_e4m3* q_fp8_head(const KvCacheAppend<T, C>& a, std::int64_t token, int h) {
  return a.q_fp8 + token * a.q_fp8_token_stride + h * a.q_fp8_head_stride;
}

/// Stores a fragment of T (N elements) to `dst` as cache elements, kChunk per access (dst aligned
/// to kChunk elements of C): a bit copy when C is T, each T value quantized by `scale` otherwise
/// (two at a time where the access holds pairs).
template <typename C, int kChunk, typename T, int N, int kFragmentChunk>
ROPE_HOST_DEVICE void fragment_to_cache(const Fragment<T, N, kFragmentChunk>& f, C* dst, DivisionScale scale) {
ROPE_UNROLL
  for (int c = 0; c < N; c += kChunk) {
    Packed<C, kChunk> v;
    auto element = [&](int i) { return f.vec[(c + i) / kFragmentChunk].elem[(c + i) % kFragmentChunk]; };
    if constexpr (std::is_same<T, C>::value) {
      (void)scale;
ROPE_UNROLL
      for (int i = 0; i < kChunk; ++i) v.elem[i] = element(i);
    } else if constexpr (kChunk % 2 == 0) {
      // A power-of-two scale's products are the quotients; any other scale's are corrected
      // (detail/device/quantize.cuh). The choice is per scale (k's, v's, q's), each the same for the
      // whole launch. Each path converts pair by pair: no access's products are held at once
      // (registers). Single-element accesses (below) always divide. The access is assembled
      // from the conversions' 16-bit results as they are: placed byte by byte, sm_90 code took
      // about three more instructions per element to split and rejoin them.
      __nv_fp8x2_storage_t two[kChunk / 2];
      if (scale.reciprocal_is_exact) {
ROPE_UNROLL
        for (int i = 0; i < kChunk; i += 2) two[i / 2] = to_fp8x2_by_product(to_float(element(i)), to_float(element(i + 1)), scale);
      } else {
ROPE_UNROLL
        for (int i = 0; i < kChunk; i += 2) two[i / 2] = to_fp8x2(to_float(element(i)), to_float(element(i + 1)), scale);
      }
      static_assert(sizeof(two) == sizeof(v), "the pairs fill the access");
      memcpy(&v, two, sizeof(v));
    } else {
ROPE_UNROLL
      for (int i = 0; i < kChunk; ++i) v.elem[i] = to_fp8(to_float(element(i)), scale);
    }
    check_aligned<C, kChunk>(dst + c);
    *reinterpret_cast<Packed<C, kChunk>*>(dst + c) = v;
  }
}

/// Where item `item` of token `token`'s v is read: head item / v_columns, elements from
/// (item % v_columns) * vec on.
template <typename T, typename C>
ROPE_HOST_DEVICE const T* v_item(const KvCacheAppend<T, C>& a, std::int64_t token, int item, const Divisor& v_columns,
                                 int vec) {
  return a.v + token * a.v_token_stride + v_columns.quotient(item) * a.v_head_stride + v_columns.remainder(item) * vec;
}

/// Where one token's rows of the two caches start (or that the token writes none).
template <typename C>
struct CacheRows {
  C* k = nullptr;  ///< head 0 of the token's k row; null: no cache write for this token
  C* v = nullptr;
};

/// Reads token `token`'s slot. A negative slot writes nothing; a slot past the cache writes
/// nothing and raises the flag (`report` is true for one lane of the token).
template <typename T, typename C, bool kQ>
ROPE_HOST_DEVICE CacheRows<C> cache_rows(const CacheAppend<T, C, kQ, true>& a, std::int64_t token, bool report) {
  const KvCacheAppend<T, C>& args = a.args;
  const std::int64_t slot = args.slots.type == SlotType::kInt32
                                ? static_cast<const std::int32_t*>(args.slots.data)[token]
                                : static_cast<const std::int64_t*>(args.slots.data)[token];
  CacheRows<C> rows;
  if (slot < 0) return rows;
  if (slot >= a.num_slots) {
    if (report && args.slot_out_of_range_flag != nullptr) *args.slot_out_of_range_flag = 1;
    return rows;
  }
  const Divisor block_size(args.block_size);
  const std::int64_t block = block_size.quotient(slot), row = block_size.remainder(slot);
  rows.k = args.k_cache.data + block * args.k_cache.block_stride + row * args.k_cache.row_stride;
  rows.v = args.v_cache.data + block * args.v_cache.block_stride + row * args.v_cache.row_stride;
  return rows;
}

}  // namespace detail
}  // namespace rope
