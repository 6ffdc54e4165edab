// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The pass-through stage of the per-token body: elements that are copied, not rotated (the tail
/// of partial rotary, v into its cache), kVec at a time, several copies in flight per lane.

#include <rope/config.cuh>
#include <rope/detail/device/cache_append.cuh>
#include <rope/detail/device/vector.cuh>

namespace rope {
namespace detail {

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
ROPE_HOST_DEVICE void copy_items(int lane, int lanes, int items, DivisionScale cache_scale, Route route) {
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

/// A lane's first kEarly copy items (items lane, lane + lanes, ...), loaded ahead of the stage
/// that copies them: issued with the lane's first loads of the token, before any store, their
/// loads share the rotation's memory round trip instead of taking one of their own after it.
/// `store` writes them where `route` says; copy_items(lane + kEarly * lanes, ...) does the rest.
template <int kEarly, int kVec, typename T>
struct EarlyItems {
  Fragment<T, kVec> chunk[kEarly];

  /// `source(item)`: where item `item` is read; past the last item the load repeats item 0
  /// (straight-line code), and `store` skips it. `items` >= 1.
  template <typename Source>
  ROPE_HOST_DEVICE void load(int lane, int lanes, int items, Source source) {
ROPE_UNROLL
    for (int j = 0; j < kEarly; ++j) {
      const int item = lane + j * lanes;
      chunk[j].load(source(item < items ? item : 0));
    }
  }

  template <typename C, typename Route>
  ROPE_HOST_DEVICE void store(int lane, int lanes, int items, DivisionScale cache_scale, Route route) const {
ROPE_UNROLL
    for (int j = 0; j < kEarly; ++j) {
      const int item = lane + j * lanes;
      if (item >= items) continue;
      const CopyRoute<T, C> to = route(item);
      if (to.y != nullptr) chunk[j].store(to.y);
      if (to.cache != nullptr) fragment_to_cache<C, Access<C, kVec>::value>(chunk[j], to.cache, cache_scale);
    }
  }
};

}  // namespace detail
}  // namespace rope
