// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The body of the head group kernel, for few tokens (decode) or few heads in all (a single-head
/// sweep of a few thousand tokens): one group of threads per (token, head), each
/// group running the device API's `rotate_head`. A head's work is then one short chain per thread
/// (position, then the head's loads, rotation and stores), without the per-token body's lane
/// mapping and head batches, which exist to keep loads in flight across the many heads of a
/// prefill. Which launches take it and their block shape: detail/host/head_group_shape.cuh.

#include <cstdint>

#include <vector_types.h>

#include <rope/config.cuh>
#include <rope/device.cuh>
#include <rope/detail/device/token_body.cuh>
#include <rope/detail/policy.cuh>
#include <rope/types.cuh>

namespace rope {
namespace detail {

/// Where a thread of a head group launch works: block (group lanes, heads, tokens), grid (head
/// blocks per token, token blocks). Thread (x, y, z) of block (bx, by) is rank x of the group of
/// head bx * blockDim.y + y of token by * blockDim.z + z; `thread` and `threads` number the
/// block's threads for work they share (computed mode's rows).
struct HeadGroupThread {
  std::int64_t first_token;  ///< the block's first token
  std::int64_t token;
  int head;
  device::HeadGroup group;
  int thread;
  int threads;
};

ROPE_HOST_DEVICE HeadGroupThread head_group_thread(uint3 block_index, uint3 thread_index, dim3 block_dim) {
  HeadGroupThread at;
  at.first_token = static_cast<std::int64_t>(block_index.y) * block_dim.z;
  at.token = at.first_token + thread_index.z;
  at.head = static_cast<int>(block_index.x * block_dim.y + thread_index.y);
  at.group = device::HeadGroup{static_cast<int>(thread_index.x), static_cast<int>(block_dim.x)};
  at.thread = static_cast<int>((thread_index.z * block_dim.y + thread_index.y) * block_dim.x + thread_index.x);
  at.threads = static_cast<int>(block_dim.x * block_dim.y * block_dim.z);
  return at;
}

/// Computed mode: the cos/sin rows (the rotated pairs' cos, then their sin) of tokens
/// [first_token, first_token + tokens) below the launch's count, `rotated_dim(p)` floats apart in
/// `rows`, by `threads` cooperating threads of which this is `thread`. Each (token, pair) is
/// computed once for all of the block's heads, by the per-token body's device::rotary_sincos.
template <typename T>
ROPE_HOST_DEVICE void compute_token_rows(const RopeParams<T>& p, std::int64_t first_token, int tokens, int thread,
                                         int threads, float* rows) {
  const int half = rotated_dim(p) / 2;
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
/// addresses are formed meanwhile) and then its table row; a position outside the table passes
/// the head through unrotated and raises the launch's flag (once per token: group rank 0 of head
/// 0), as in the per-token body. Computed mode reads `computed_row` (compute_token_rows' row of this
/// token) as a one-row table.
template <typename T, Style kStyle, int kVec>
ROPE_HOST_DEVICE void rotate_token_head(const RopeParams<T>& p, device::Rotation rotation, std::int64_t token,
                                        int head, const device::HeadGroup& group, const float* computed_row) {
  const int rotary_dim = rotated_dim(p);
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
    if (ptr.y != ptr.x) {  // passed through unrotated, as the per-token body does
      for (int d = group.rank; d < p.head_dim; d += group.size) ptr.y[d] = ptr.x[d];
    }
    return;
  }
  device::rotate_head<kVec, kStyle, T>(group, ptr.x, ptr.y, p.head_dim, rotary_dim, p.cos_sin, position, rotation);
}

}  // namespace detail
}  // namespace rope
