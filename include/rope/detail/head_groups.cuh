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
/// (bench/NOTES.md, change 22).
constexpr std::int64_t kHeadGroupMaxTokens = 256;

/// Threads per head group block, at most.
constexpr int kHeadGroupBlockThreads = 256;

/// Whether a plain launch (no append, no norm stage) takes head groups: few tokens, one position
/// axis (multi-axis launches keep their per-column position lookup in the per-token body).
template <typename T>
bool takes_head_groups(const RopeParams<T>& p) {
  return p.num_tokens <= kHeadGroupMaxTokens && p.positions.axes <= 1;
}

/// Block (group lanes, heads, tokens) and grid (head blocks per token, token blocks) of a head
/// group launch.
struct HeadGroupShape {
  int group_size;        ///< threads per head: its columns of vec pairs, at most a warp
  int heads_per_block;
  int tokens_per_block;  ///< several only when one token's heads make a small block
  int blocks_per_token;
};

/// A token's heads in as few blocks of at most kHeadGroupBlockThreads as hold them, split evenly
/// (40 heads of 8 lanes: two blocks of 20 heads); a token of fewer threads than half a block
/// shares its block with others.
template <typename T>
HeadGroupShape choose_head_group_shape(const RopeParams<T>& p, int vec) {
  const int rotary_dim = p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
  const int columns = rotary_dim / 2 / vec;
  HeadGroupShape s{};
  s.group_size = columns < 32 ? columns : 32;
  const int heads = p.q.num_heads + p.k.num_heads;
  const int token_threads = s.group_size * heads;
  s.blocks_per_token = (token_threads + kHeadGroupBlockThreads - 1) / kHeadGroupBlockThreads;
  s.heads_per_block = (heads + s.blocks_per_token - 1) / s.blocks_per_token;
  const int block_threads = s.group_size * s.heads_per_block;
  s.tokens_per_block = 1;
  if (2 * block_threads <= kHeadGroupBlockThreads) {
    const std::int64_t fit = kHeadGroupBlockThreads / block_threads;
    s.tokens_per_block = static_cast<int>(p.num_tokens < fit ? p.num_tokens : fit);
  }
  return s;
}

/// Head `head` of `token` (q's heads first, then k's), by the group of threads `group`: its
/// position (one memory round trip), then device::rotate_head. A position outside the table
/// leaves the head unwritten and raises the launch's flag (once per token: group rank 0 of head
/// 0), as in the per-token body.
template <typename T, Style kStyle, int kVec>
ROPE_HOST_DEVICE void rotate_token_head(const RopeParams<T>& p, bool inverse, std::int64_t token, int head,
                                        const device::HeadGroup& group) {
  const std::int64_t position = token_positions<AxisLookup::kSingleAxis>(p, token).axis[0];
  // Only table mode waits for the position before the head's loads: computed mode issues its x
  // loads while the position is on its way (the branch is uniform across the launch).
  if (p.cos_sin.kind == CosSin::Kind::kTable && (position < 0 || position >= p.cos_sin.rows)) {
    if (head == 0 && group.rank == 0 && p.out_of_range_flag != nullptr) *p.out_of_range_flag = 1;
    return;
  }
  const HeadPointers<T> ptr = head_pointers(p, token, head);
  const int rotary_dim = p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
  device::rotate_head<kVec, kStyle, T>(group, ptr.x, ptr.y, p.head_dim, rotary_dim, p.cos_sin, position,
                                       inverse ? device::Rotation::kInverse : device::Rotation::kForward);
}

}  // namespace detail
}  // namespace rope
