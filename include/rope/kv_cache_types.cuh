// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The parameter types of RoPE + KV-cache append: paged cache views, the slot mapping, and what
/// one fused launch appends (see rope/kv_cache.cuh for the launcher).

#include <cstdint>

#include <cuda_fp8.h>

#include <rope/config.cuh>
#include <rope/types.cuh>

namespace rope {

/// Element type of the slot mapping.
enum class SlotType : int {
  kInt32 = 1,  ///< const std::int32_t*, one per token
  kInt64 = 2,  ///< const std::int64_t*, one per token (vLLM's slot_mapping)
};

/// Where each token's k and v go: slot s is row `s % block_size` of block `s / block_size`.
/// A negative slot means "no cache write" for that token (padding, as vLLM gives it).
struct SlotMapping {
  const void* data = nullptr;        ///< device array of `type`, one per token
  SlotType type = SlotType::kInt64;  ///< element type of data
};

/// int32 slots, one per token (device memory).
inline SlotMapping slot_mapping(const std::int32_t* slots) { return SlotMapping{slots, SlotType::kInt32}; }
/// int64 slots, one per token (device memory).
inline SlotMapping slot_mapping(const std::int64_t* slots) { return SlotMapping{slots, SlotType::kInt64}; }

/// One paged cache (k or v) of element type `C`: element d of head h in row r of block b is at
/// `data[b * block_stride + r * row_stride + h * head_stride + d]`. Strides are in elements;
/// the head_dim elements of a head are contiguous. Any order of the three dimensions works.
template <typename C>
struct PagedCache {
  C* data = nullptr;              ///< device memory
  std::int64_t block_stride = 0;  ///< elements between blocks (pages)
  std::int64_t row_stride = 0;    ///< elements between rows (slots) of one block
  std::int64_t head_stride = 0;   ///< elements between kv heads of one row
};

/// vLLM's NHD layout, `[num_blocks, block_size, kv_heads, head_dim]`, densely packed.
template <typename C>
PagedCache<C> nhd_paged_cache(C* data, int block_size, int kv_heads, int head_dim) {
  const std::int64_t row = std::int64_t{kv_heads} * head_dim;
  return PagedCache<C>{data, row * block_size, row, std::int64_t{head_dim}};
}

/// FlashInfer's HND layout, `[num_blocks, kv_heads, block_size, head_dim]`, densely packed.
template <typename C>
PagedCache<C> hnd_paged_cache(C* data, int block_size, int kv_heads, int head_dim) {
  const std::int64_t head = std::int64_t{block_size} * head_dim;
  return PagedCache<C>{data, head * kv_heads, std::int64_t{head_dim}, head};
}

/// What a fused launch appends, besides rotating q and k as `RopeParams` says: the rotated k and
/// the untouched v of every token go to row `slots[t]` of the paged caches.
///
/// `C` is the cache element type: `T` (the bits the rotated k has in y), or `__nv_fp8_e4m3`,
/// stored as `saturate(x / scale)` for each value x of the rotated k (rounded to `T`, as it is
/// stored to y) and of v: IEEE fp32 division, round to nearest even, finite values beyond +-448
/// clamped to +-448, NaN kept NaN. That is what vLLM's `reshape_and_cache_flash` stores after a
/// separate RoPE, byte for byte.
///
/// k.y may be null in an append launch: the rotated k then goes only to the cache (no
/// write-back). A token whose position is out of the table writes nothing, cache rows included.
template <typename T, typename C = T>
struct KvCacheAppend {
  /// v, `[tokens, k.num_heads, head_dim]`: element [t, h, d] at `v[t * v_token_stride + h * v_head_stride + d]`.
  const T* v = nullptr;
  std::int64_t v_token_stride = 0;  ///< elements between tokens of v
  std::int64_t v_head_stride = 0;   ///< elements between heads of v
  PagedCache<C> k_cache;            ///< k.num_heads heads per row
  PagedCache<C> v_cache;            ///< laid out like k_cache or otherwise (its own strides)
  std::int64_t num_blocks = 0;      ///< blocks in each cache; valid slots are [0, num_blocks * block_size)
  int block_size = 0;               ///< rows per block
  SlotMapping slots;                ///< one slot per token
  /// FP8 caches only: the per-tensor scales (fp32, in [2^-64, 2^64]). Leave them 1 otherwise.
  float k_scale = 1.0f;
  float v_scale = 1.0f;
  /// FP8 caches only, optional: the rotated q quantized to FP8 E4M3 as well, for an FP8
  /// attention kernel, as `saturate(x / q_scale)` of each value of the rotated q rounded to T
  /// (the same conversion as the cache's). Element [t, h, d] is at
  /// `q_fp8[t * q_fp8_token_stride + h * q_fp8_head_stride + d]`, q.num_heads heads. With it,
  /// `params.q.y` may be null: the rotated q then goes only here.
  __nv_fp8_e4m3* q_fp8 = nullptr;
  std::int64_t q_fp8_token_stride = 0;  ///< elements between tokens of q_fp8
  std::int64_t q_fp8_head_stride = 0;   ///< elements between heads of q_fp8
  float q_scale = 1.0f;                 ///< with q_fp8 only, in [2^-64, 2^64]; leave it 1 otherwise
  /// Optional device int: set to 1 when a token's slot is not below num_blocks * block_size
  /// (that token's cache rows are left unwritten; its q and k are still rotated). Never cleared.
  int* slot_out_of_range_flag = nullptr;
};

}  // namespace rope
