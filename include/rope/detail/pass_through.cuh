// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The pass-through stage of the per-token body: elements that are copied, not rotated (the tail
/// of partial rotary, v into its cache), kVec at a time, several copies in flight per lane.

#include <rope/config.cuh>
#include <rope/detail/cache_append.cuh>
#include <rope/detail/vector.cuh>
#include <rope/types.cuh>

namespace rope {
namespace detail {

/// The partial-rotary tail a launch copies: `columns` items of kVec elements past rotary_dim for
/// each of `heads` heads from `first_head` on (q's heads first, then k's). A tensor given in place
/// has nothing to copy to y, so with q in place the items start at k's heads; k's tail goes to y
/// where k is written there, and to its cache row in an append launch (`k_to_cache`).
struct TailCopies {
  int first_head;
  int heads;
  int columns;
  ROPE_HOST_DEVICE int items() const { return heads * columns; }
};

template <typename T>
ROPE_HOST_DEVICE TailCopies tail_copies(const RopeParams<T>& p, int vec, bool k_to_y, bool k_to_cache) {
  const int rotary_dim = p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
  const int first_head = p.q.x == p.q.y ? p.q.num_heads : 0;
  const int last_head = k_to_cache || (k_to_y && p.k.x != p.k.y) ? p.q.num_heads + p.k.num_heads : p.q.num_heads;
  const int heads = last_head > first_head ? last_head - first_head : 0;
  return TailCopies{first_head, heads, (p.head_dim - rotary_dim) / vec};
}

/// Items of kVec elements a token of a launch copies rather than rotates, at most: its tail (k's
/// to the cache too) and, in an append launch, v. What the launch shape gives copy lanes for.
template <typename T, typename Append>
ROPE_HOST_DEVICE int pass_through_items(const RopeParams<T>& p, const Append& append, int vec) {
  const int tail = tail_copies(p, vec, k_written_to_y(append), Append::kEnabled).items();
  return Append::kEnabled ? tail + v_items_per_token(p, vec) : tail;
}

/// Lanes of a token (of `lanes`) that copy its pass-through items while the others rotate: one
/// per `batch` items, at most three in four lanes. Copied after the rotation by the rotating lanes
/// themselves, the items would cost each token one more memory round trip per batch (bench/NOTES.md,
/// change 9). The launch shape adds this many lanes where the block has room, so the rotating
/// lanes keep their count; any other lane count (a full block, the host tests' many splits) still
/// copies every item.
ROPE_HOST_DEVICE int copy_lanes(int items, int batch, int lanes) {
  const int wanted = (items + batch - 1) / batch;
  const int most = lanes * 3 / 4;
  return wanted < most ? wanted : most;
}

/// Where one item of kVec elements goes: to `y` (T), to `cache` (C, converted as the cache
/// stores do), both, or neither (null).
template <typename T, typename C>
struct CopyRoute {
  const T* src;
  T* y;
  C* cache;
};

/// Copies items lane, lane + lanes, ... below `items`, `route(item)` saying where each goes.
/// A lane loads kBatch items before it stores any: the compiler cannot move a load above a store
/// that may alias it, so item by item a lane would wait one memory round trip per item.
/// Past the last item the batch's loads repeat its first item (straight-line code, as the
/// rotated heads do) and store nothing.
template <int kBatch, int kVec, typename T, typename C, typename Route>
ROPE_HOST_DEVICE void copy_items(int lane, int lanes, int items, float cache_scale, Route route) {
  for (int first = lane; first < items; first += lanes * kBatch) {
    Fragment<T, kVec> chunk[kBatch];
    CopyRoute<T, C> to[kBatch];
ROPE_UNROLL
    for (int b = 0; b < kBatch; ++b) {
      const int item = first + b * lanes;
      to[b] = route(item < items ? item : first);
      chunk[b].load(to[b].src);
    }
ROPE_UNROLL
    for (int b = 0; b < kBatch; ++b) {
      if (first + b * lanes >= items) continue;
      if (to[b].y != nullptr) chunk[b].store(to[b].y);
      if (to[b].cache != nullptr) fragment_to_cache<C, Access<C, kVec>::value>(chunk[b], to[b].cache, cache_scale);
    }
  }
}

}  // namespace detail
}  // namespace rope
