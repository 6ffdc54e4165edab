// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The one place where runtime choices become template parameters (style, pairs per access),
/// and where the launch shape is picked. Used by the launcher and by the host tests alike.

#include <cstdint>
#include <type_traits>

#include <rope/detail/vector.cuh>
#include <rope/types.cuh>
#include <rope/validate.cuh>

namespace rope {
namespace detail {

/// Pairs per access for T: the full 16-byte width, half of it, or one (the scalar path).
template <typename T>
struct VectorWidths {
  static constexpr int kWide = 16 / static_cast<int>(sizeof(T));
  static constexpr int kNarrow = kWide / 2;
};

inline bool multiple_of(std::int64_t v, std::int64_t m) { return v % m == 0; }

/// Whether every access of a launch that moves `vec` pairs at a time stays aligned.
template <typename T>
bool vector_width_fits(const RopeParams<T>& p, int vec) {
  if (vec == 1) return true;
  const int rotary_dim = p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
  if (!multiple_of(rotary_dim / 2, vec) || !multiple_of(p.head_dim - rotary_dim, vec)) return false;
  // Half-split and tail accesses are vec elements; interleaved ones 2 * vec, capped at 16 bytes.
  const int widest = VectorWidths<T>::kWide;
  const int need = p.style == Style::kInterleaved ? (2 * vec < widest ? 2 * vec : widest) : vec;
  auto tensor_ok = [&](const HeadsTensor<T>& t) {
    return is_aligned(t.x, need * sizeof(T)) && is_aligned(t.y, need * sizeof(T)) &&
           multiple_of(t.x_token_stride, need) && multiple_of(t.x_head_stride, need) &&
           multiple_of(t.y_token_stride, need) && multiple_of(t.y_head_stride, need);
  };
  if (!tensor_ok(p.q) || (p.k.num_heads > 0 && !tensor_ok(p.k))) return false;
  const CosSin& cs = p.cos_sin;
  if (cs.kind == CosSin::Kind::kComputed) {
    const int f = vec < 4 ? vec : 4;  // fp32 frequencies, 16 bytes at most per access
    return is_aligned(cs.inv_freq, f * sizeof(float));
  }
  const int elem = cs.table_type == TableType::kFloat32 ? 4 : 2;
  const int t = vec * elem > 16 ? 16 / elem : vec;
  return is_aligned(cs.cos, t * elem) && is_aligned(cs.sin, t * elem) && multiple_of(cs.row_stride, t);
}

/// Calls `f(style_constant, vec_constant)` with the widest access the arguments allow.
template <typename T, typename F>
void dispatch(const RopeParams<T>& p, F&& f) {
  using W = VectorWidths<T>;
  auto with_style = [&](auto vec) {
    if (p.style == Style::kInterleaved) {
      f(std::integral_constant<Style, Style::kInterleaved>{}, vec);
    } else {
      f(std::integral_constant<Style, Style::kHalfSplit>{}, vec);
    }
  };
  if (vector_width_fits(p, W::kWide)) {
    with_style(std::integral_constant<int, W::kWide>{});
  } else if (vector_width_fits(p, W::kNarrow)) {
    with_style(std::integral_constant<int, W::kNarrow>{});
  } else {
    with_style(std::integral_constant<int, 1>{});
  }
}

/// Threads of one token (lanes) and tokens per block.
struct LaunchShape {
  int lanes_per_token;
  int tokens_per_block;
};

/// About 256 threads per block. A token gets one lane per column of `vec` pairs times enough
/// head groups to fill that (heads split evenly across groups). When one token is too little
/// work for 256 threads (a single 64-dim head, say), the block takes several tokens.
template <typename T>
LaunchShape choose_launch_shape(const RopeParams<T>& p, int vec) {
  constexpr int kTargetThreads = 256;
  constexpr int kMaxThreads = 1024;
  const int rotary_dim = p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
  const int columns = rotary_dim / 2 / vec;
  if (columns >= kTargetThreads) return LaunchShape{columns < kMaxThreads ? columns : kMaxThreads, 1};
  const int heads = p.q.num_heads + p.k.num_heads;
  const int max_groups = kTargetThreads / columns;
  const int heads_per_group = (heads + max_groups - 1) / max_groups;
  const int groups = (heads + heads_per_group - 1) / heads_per_group;
  const int lanes = columns * groups;
  const int tokens = kTargetThreads / lanes > 1 ? kTargetThreads / lanes : 1;
  return LaunchShape{lanes, tokens};
}

}  // namespace detail
}  // namespace rope
