// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Launches of few tokens (decode): one group of threads per (token, head), each group running
/// the device API's `rotate_head`. A token's work is then one short chain per thread (position,
/// then the head's loads, rotation and stores), without the per-token body's lane mapping and
/// head batches, which exist to keep loads in flight across the many tokens of a prefill.

#include <cstdint>

#include <rope/config.cuh>
#include <rope/device.cuh>
#include <rope/detail/token_body.cuh>
#include <rope/types.cuh>

namespace rope {
namespace detail {

/// Plain launches of at most this many tokens take head groups. Measured on an H200
/// (bench/NOTES.md, change 22): decode (T = 1 to 256) 0.07-0.40 us faster, Llama-3-8B at T = 512
/// about 1% faster; larger launches were not measured this way and keep the per-token body.
constexpr std::int64_t kHeadGroupMaxTokens = 512;

/// Threads per head group block, at most.
constexpr int kHeadGroupBlockThreads = 256;

/// Computed mode's rows per block stay within the 48 KiB of dynamic shared memory a kernel gets
/// without opting in.
constexpr int kHeadGroupSharedBytes = 48 * 1024;

/// Floats of one token's computed cos/sin row in a head group block's shared memory: the
/// rotary pairs' cos, then their sin.
template <typename T>
ROPE_HOST_DEVICE int computed_row_floats(const RopeParams<T>& p) {
  return p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
}

/// Whether a plain launch (no append, no norm stage) takes head groups: few tokens, one position
/// axis (multi-axis launches keep their per-column position lookup in the per-token body), and in
/// computed mode a token's cos/sin row within kHeadGroupSharedBytes.
template <typename T>
bool takes_head_groups(const RopeParams<T>& p) {
  const bool rows_fit = p.cos_sin.kind != CosSin::Kind::kComputed ||
                        computed_row_floats(p) * static_cast<int>(sizeof(float)) <= kHeadGroupSharedBytes;
  return p.num_tokens <= kHeadGroupMaxTokens && p.positions.axes <= 1 && rows_fit;
}

/// Block (group lanes, heads, tokens) and grid (head blocks per token, token blocks) of a head
/// group launch, and its dynamic shared memory (computed mode: a cos/sin row per token).
struct HeadGroupShape {
  int group_size;        ///< threads per head: its columns of vec pairs, at most a warp
  int heads_per_block;
  int tokens_per_block;  ///< several only when one token's heads make a small block
  int blocks_per_token;
  int shared_bytes;
};

/// A token's heads in as few blocks of at most kHeadGroupBlockThreads as hold them, split evenly
/// (40 heads of 8 lanes: two blocks of 20 heads); a token of fewer threads than half a block
/// shares its block with others (as many as their computed rows leave room for).
template <typename T>
HeadGroupShape choose_head_group_shape(const RopeParams<T>& p, int vec) {
  const int rotary_dim = p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
  const int columns = rotary_dim / 2 / vec;
  HeadGroupShape s{};
  s.group_size = columns < 32 ? columns : 32;
  const int heads = p.q.num_heads + p.k.num_heads;
  const int most_heads = kHeadGroupBlockThreads / s.group_size;
  s.blocks_per_token = (heads + most_heads - 1) / most_heads;
  s.heads_per_block = (heads + s.blocks_per_token - 1) / s.blocks_per_token;
  const int block_threads = s.group_size * s.heads_per_block;
  const bool computed = p.cos_sin.kind == CosSin::Kind::kComputed;
  const int row_bytes = computed ? computed_row_floats(p) * static_cast<int>(sizeof(float)) : 0;
  s.tokens_per_block = 1;
  if (2 * block_threads <= kHeadGroupBlockThreads) {
    std::int64_t fit = kHeadGroupBlockThreads / block_threads;
    if (computed && fit * row_bytes > kHeadGroupSharedBytes) fit = kHeadGroupSharedBytes / row_bytes;
    if (fit < 1) fit = 1;  // a row past the budget never gets here (takes_head_groups)
    s.tokens_per_block = static_cast<int>(p.num_tokens < fit ? p.num_tokens : fit);
  }
  s.shared_bytes = s.tokens_per_block * row_bytes;
  return s;
}

/// Computed mode: the cos/sin rows of tokens [first_token, first_token + tokens) (those below
/// the launch's count), `computed_row_floats` apart in `rows`, by `threads` cooperating threads
/// of which this is `thread`. Each (token, pair) is computed once for all of the block's heads,
/// by the same device::rotary_sincos as the per-token body, so the values are the same bits.
template <typename T>
ROPE_HOST_DEVICE void compute_token_rows(const RopeParams<T>& p, std::int64_t first_token, int tokens, int thread,
                                         int threads, float* rows) {
  const int half = computed_row_floats(p) / 2;
  for (int t = 0; t < tokens && first_token + t < p.num_tokens; ++t) {
    const std::int64_t position = token_positions<AxisLookup::kSingleAxis>(p, first_token + t).axis[0];
    float* row = rows + t * 2 * half;
    for (int j = thread; j < half; j += threads) {
      device::rotary_sincos(position, p.cos_sin.inv_freq[j], p.cos_sin.attention_scaling, row[half + j], row[j]);
    }
  }
}

/// Head `head` of `token` (q's heads first, then k's), by the group of threads `group`, with
/// device::rotate_head. Table mode reads the token's position (one memory round trip; the head's
/// addresses are formed meanwhile) and then its table row; a position outside the table leaves
/// the head unwritten and raises the launch's flag (once per token: group rank 0 of head 0), as
/// in the per-token body. Computed mode reads `computed_row` (compute_token_rows' row of this
/// token) as a one-row table.
template <typename T, Style kStyle, int kVec>
ROPE_HOST_DEVICE void rotate_token_head(const RopeParams<T>& p, bool inverse, std::int64_t token, int head,
                                        const device::HeadGroup& group, const float* computed_row) {
  const int rotary_dim = p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
  const device::Rotation rotation = inverse ? device::Rotation::kInverse : device::Rotation::kForward;
  if (p.cos_sin.kind == CosSin::Kind::kComputed) {
    const HeadPointers<T> ptr = head_pointers(p, token, head);
    CosSin row;  // attention_scaling 1: compute_token_rows applied the launch's
    row.cos = computed_row;
    row.sin = computed_row + rotary_dim / 2;
    row.table_type = TableType::kFloat32;
    row.rows = 1;
    row.row_stride = rotary_dim / 2;
    device::rotate_head<kVec, kStyle, T>(group, ptr.x, ptr.y, p.head_dim, rotary_dim, row, 0, rotation);
    return;
  }
  // The position's load first, then the head's addresses while it is on its way.
  const std::int64_t position = token_positions<AxisLookup::kSingleAxis>(p, token).axis[0];
  const HeadPointers<T> ptr = head_pointers(p, token, head);
  if (position < 0 || position >= p.cos_sin.rows) {
    if (head == 0 && group.rank == 0 && p.out_of_range_flag != nullptr) *p.out_of_range_flag = 1;
    return;
  }
  device::rotate_head<kVec, kStyle, T>(group, ptr.x, ptr.y, p.head_dim, rotary_dim, p.cos_sin, position, rotation);
}

}  // namespace detail
}  // namespace rope
