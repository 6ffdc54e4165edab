// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Which plain launches take the head group kernel (detail/device/head_groups.cuh: few tokens, or few
/// heads in all), and its launch shape.
/// Used by the launcher and by the host tests alike.

#include <cstdint>

#include <cuda_runtime.h>

#include <rope/detail/host/block_count.cuh>
#include <rope/detail/device/head_groups.cuh>
#include <rope/types.cuh>

namespace rope {
namespace detail {

/// Bytes of shared memory a head group block gives each of its tokens: computed mode's cos/sin
/// row (compute_token_rows), nothing in table mode. A block's rows stay within
/// kDynamicSharedBytesWithoutOptIn.
template <typename T>
int computed_row_bytes(const RopeParams<T>& p) {
  return p.cos_sin.kind == CosSin::Kind::kComputed ? rotated_dim(p) * static_cast<int>(sizeof(float)) : 0;
}

/// Whether a plain launch (no append, no norm stage) takes head groups (detail/device/head_groups.cuh):
/// few tokens or few heads in all, one position axis (multi-axis launches keep their per-column
/// position lookup in the per-token body), and a token's computed row within
/// kDynamicSharedBytesWithoutOptIn.
template <typename T>
bool takes_head_groups(const RopeParams<T>& p) {
  const bool rows_fit = computed_row_bytes(p) <= kDynamicSharedBytesWithoutOptIn;
  const std::int64_t heads = static_cast<std::int64_t>(p.q.num_heads) + p.k.num_heads;
  const bool few = p.num_tokens <= kHeadGroupMaxTokens || p.num_tokens * heads <= kHeadGroupMaxHeads;
  return few && p.positions.axes <= 1 && rows_fit;
}

/// Pairs per access of a head group launch whose dispatch picked `vec`: at most 16 bytes per
/// access, so the double width that the per-token kernel gives tokens of one or two heads (a lane
/// has no other head to keep loads in flight there) becomes the wide access, twice the threads
/// per head. Measured on an H200: the seed's sweep at N = 2048 and 10240 ran 3-11% faster warm.
/// What fits the double width's alignment fits this.
template <typename T>
constexpr int head_group_vec(int vec) {
  return vec * static_cast<int>(sizeof(T)) > 16 ? 16 / static_cast<int>(sizeof(T)) : vec;
}

/// Block (group lanes, heads, tokens) and grid (head blocks per token, token blocks) of a head
/// group launch, and its dynamic shared memory (computed mode: a cos/sin row per token).
struct HeadGroupShape {
  int group_size;        ///< threads per head: its columns of vec pairs, at most a warp
  int heads_per_block;
  int tokens_per_block;  ///< several only when one token's heads make a small block
  int blocks_per_token;
  int shared_bytes;

  dim3 block() const {
    return dim3(static_cast<unsigned>(group_size), static_cast<unsigned>(heads_per_block),
                static_cast<unsigned>(tokens_per_block));
  }
  dim3 grid(std::int64_t num_tokens) const {
    return dim3(static_cast<unsigned>(blocks_per_token),
                static_cast<unsigned>(ceil_div(num_tokens, tokens_per_block)));
  }
};

/// A token's heads in as few blocks of at most kHeadGroupBlockThreads as hold them, split evenly
/// (40 heads of 8 lanes: two blocks of 20 heads); a token of fewer threads than half a block
/// shares its block with others (at most kHeadGroupBlockTokens, and as many as their computed
/// rows leave room for), fewer while the launch has few blocks (tokens_per_small_block, the
/// per-token kernel's rule).
template <typename T>
HeadGroupShape choose_head_group_shape(const RopeParams<T>& p, int vec) {
  const int columns = rotated_dim(p) / 2 / vec;
  HeadGroupShape s{};
  s.group_size = columns < 32 ? columns : 32;
  const int heads = p.q.num_heads + p.k.num_heads;
  const int most_heads = kHeadGroupBlockThreads / s.group_size;
  s.blocks_per_token = ceil_div(heads, most_heads);
  s.heads_per_block = ceil_div(heads, s.blocks_per_token);
  const int block_threads = s.group_size * s.heads_per_block;
  const int row_bytes = computed_row_bytes(p);
  s.tokens_per_block = 1;
  if (2 * block_threads <= kHeadGroupBlockThreads) {
    std::int64_t fit = kHeadGroupBlockThreads / block_threads;
    if (fit > kHeadGroupBlockTokens) fit = kHeadGroupBlockTokens;
    if (row_bytes > 0 && fit * row_bytes > kDynamicSharedBytesWithoutOptIn) fit = kDynamicSharedBytesWithoutOptIn / row_bytes;
    if (fit < 1) fit = 1;  // a row past the budget never gets here (takes_head_groups)
    s.tokens_per_block = static_cast<int>(p.num_tokens < fit ? p.num_tokens : fit);
    s.tokens_per_block = tokens_per_small_block(s.tokens_per_block, block_threads, p.num_tokens, few_blocks(p));
  }
  s.shared_bytes = s.tokens_per_block * row_bytes;
  return s;
}

}  // namespace detail
}  // namespace rope
