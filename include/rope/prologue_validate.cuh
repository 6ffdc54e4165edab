// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Every check of an attention prologue launch: the RoPE part, then each stage the launch has,
/// as the launchers of those stages alone check them. Nothing is read from device memory.

#include <cstddef>
#include <cstdint>

#include <cuda_fp8.h>

#include <rope/detail/host/prologue_args.cuh>
#include <rope/kv_cache_validate.cuh>
#include <rope/prologue_types.cuh>
#include <rope/qk_norm_validate.cuh>
#include <rope/status.cuh>
#include <rope/types.cuh>
#include <rope/validate.cuh>

namespace rope {
namespace detail {

/// The norm's weights are read while the caches and q_fp8 are written: they may lie in none of
/// them (validate_norm keeps them out of q.y and k.y). For arguments otherwise checked.
template <typename T, typename C, typename W>
Status validate_weights_apart(const RopeParams<T>& p, const AttentionPrologue<T, C, W>& prologue) {
  if (p.num_tokens == 0) return Status{};
  std::uintptr_t first[3], last[3];
  int outputs = 0;
  const KvCacheAppend<T, C>* cache = prologue.cache;
  if (cache != nullptr && cache->num_blocks > 0) {
    cache_byte_extent(cache->k_cache, cache->num_blocks, cache->block_size, p.k.num_heads, p.head_dim, first[0], last[0]);
    cache_byte_extent(cache->v_cache, cache->num_blocks, cache->block_size, p.k.num_heads, p.head_dim, first[1], last[1]);
    outputs = 2;
  }
  const QuantizedQ& q8 = prologue.q_fp8;
  if (q8.data != nullptr) {
    byte_extent(ViewGeometry{q8.data, p.q.num_heads, q8.token_stride, q8.head_stride}, p.num_tokens, p.head_dim,
                sizeof(__nv_fp8_e4m3), first[outputs], last[outputs]);
    ++outputs;
  }
  const std::size_t weight_bytes = static_cast<std::size_t>(p.head_dim) * sizeof(W);
  const W* const weights[] = {prologue.norm->q_weight, prologue.norm->k_weight};
  for (const W* weight : weights) {
    if (weight == nullptr) continue;
    const std::uintptr_t w0 = reinterpret_cast<std::uintptr_t>(weight), w1 = w0 + weight_bytes;
    for (int o = 0; o < outputs; ++o) {
      if (!bytes_disjoint(w0, w1, first[o], last[o])) {
        return invalid("q_weight or k_weight overlaps a cache or q_fp8 (weights are read while they are written)");
      }
    }
  }
  return Status{};
}

}  // namespace detail

/// Checks every argument of an attention prologue launch (`rope_attention_prologue`):
/// `cudaErrorInvalidValue` and the reason on the first problem found.
template <typename T, typename C, typename W>
Status validate(const RopeParams<T>& p, const AttentionPrologue<T, C, W>& prologue) {
  if (prologue.cache != nullptr && (prologue.cache->q_fp8 != nullptr || prologue.cache->q_scale != 1.0f)) {
    return invalid("the prologue's cache has q_fp8 or q_scale set: give q to FP8 as the prologue's q_fp8");
  }
  if (prologue.q_fp8.data == nullptr && prologue.q_fp8.scale != 1.0f) {
    return invalid("q_fp8.scale applies only with q_fp8.data (leave it 1)");
  }
  // Named as the prologue names it (the append's own check would say q_scale).
  if (prologue.q_fp8.data != nullptr && !detail::quant_scale_in_range(prologue.q_fp8.scale)) {
    return invalid("q_fp8.scale must be in [2^-64, 2^64]");
  }
  const bool appends = prologue.cache != nullptr || prologue.q_fp8.data != nullptr;
  if (!appends) {
    const Status s = validate(p);
    if (!s.ok() || prologue.norm == nullptr) return s;
    return detail::validate_norm(p, *prologue.norm);
  }
  if (prologue.cache == nullptr && p.k.num_heads > 0 && p.k.y == nullptr && p.num_tokens > 0) {
    return invalid("k.y is null without a cache (the rotated k would go nowhere)");
  }
  const KvCacheAppend<T, C> append = detail::prologue_append(prologue);
  Status s = detail::validate_append(p, append, detail::AppendParts{prologue.cache != nullptr, true});
  if (!s.ok() || prologue.norm == nullptr) return s;
  s = detail::validate_norm(detail::resolve_outputs(p, append), *prologue.norm);
  if (!s.ok()) return s;
  return detail::validate_weights_apart(p, prologue);
}

}  // namespace rope
