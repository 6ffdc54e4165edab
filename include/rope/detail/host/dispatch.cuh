// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The one place where runtime choices become template parameters (style, pairs per access),
/// and where the launch shape is picked. Used by the launcher and by the host tests alike.

#include <cstdint>
#include <type_traits>

#include <rope/detail/access_alignment.cuh>
#include <rope/detail/host/block_count.cuh>
#include <rope/detail/device/cache_append.cuh>
#include <rope/detail/device/norm_stage.cuh>
#include <rope/detail/policy.cuh>
#include <rope/detail/device/token_body.cuh>
#include <rope/detail/device/vector.cuh>
#include <rope/types.cuh>
#include <rope/validate.cuh>

namespace rope {
namespace detail {

/// Pairs per lane-column for T: two 16-byte vectors per half (for tokens with few heads, where a
/// lane has no other heads to keep loads in flight), one, half of one, or one element (scalar).
template <typename T>
struct VectorWidths {
  static constexpr int kWide = 16 / static_cast<int>(sizeof(T));
  static constexpr int kDouble = 2 * kWide;
  static constexpr int kNarrow = kWide / 2;
};

/// Heads a lane keeps in flight at once: the policy's batch for the usual widths, one for the
/// double width (which already has four 16-byte loads per head).
template <typename T, typename Policy>
constexpr int head_batch_for(int vec) {
  return vec == VectorWidths<T>::kDouble ? 1 : Policy::kHeadBatch;
}

inline bool multiple_of(std::int64_t v, std::int64_t m) { return v % m == 0; }

/// Whether a view of element type E (base pointer and strides in elements) is aligned to `need` elements.
template <typename E>
bool view_aligned(const E* base, int need, std::int64_t stride_a, std::int64_t stride_b, std::int64_t stride_c = 0) {
  return is_aligned(base, static_cast<std::size_t>(need) * sizeof(E)) && multiple_of(stride_a, need) &&
         multiple_of(stride_b, need) && multiple_of(stride_c, need);
}

/// The append stage's views: v (read like x), the two caches and q_fp8 (written like y, in
/// elements of their types). NoAppend has none.
template <typename T>
bool append_views_fit(const NoAppend&, Style, int) { return true; }

template <typename T, typename C, bool kQ, bool kCache>
bool append_views_fit(const CacheAppend<T, C, kQ, kCache>& append, Style style, int vec) {
  const KvCacheAppend<T, C>& a = append.args;
  const int need_v = access_alignment<T>(style, vec), need_cache = access_alignment<C>(style, vec);
  auto cache_ok = [&](const PagedCache<C>& c) {
    return view_aligned<C>(c.data, need_cache, c.block_stride, c.row_stride, c.head_stride);
  };
  const bool q_fp8_ok =
      a.q_fp8 == nullptr || view_aligned<__nv_fp8_e4m3>(a.q_fp8, access_alignment<__nv_fp8_e4m3>(style, vec),
                                                         a.q_fp8_token_stride, a.q_fp8_head_stride);
  if constexpr (!kCache) return q_fp8_ok;  // no v and no caches
  return view_aligned<T>(a.v, need_v, a.v_token_stride, a.v_head_stride) && cache_ok(a.k_cache) &&
         cache_ok(a.v_cache) && q_fp8_ok;
}

/// The norm stage's weights: read like x, in elements of W (rotary pairs and tail alike).
inline bool norm_views_fit(const NoNorm&, Style, int) { return true; }

template <typename W>
bool norm_views_fit(const RmsNorm<W>& norm, Style style, int vec) {
  const int need = access_alignment<W>(style, vec);
  return (norm.q_weight == nullptr || is_aligned(norm.q_weight, static_cast<std::size_t>(need) * sizeof(W))) &&
         (norm.k_weight == nullptr || is_aligned(norm.k_weight, static_cast<std::size_t>(need) * sizeof(W)));
}

/// Whether every access of a launch that moves `vec` pairs at a time stays aligned: the one
/// statement of the alignment rule, for q, k, the cos/sin source, the append stage's views and
/// the norm stage's weights.
template <typename T, typename Append = NoAppend, typename Norm = NoNorm>
bool vector_width_fits(const RopeParams<T>& p, int vec, const Append& append = Append{}, const Norm& norm = Norm{}) {
  if (vec == 1) return true;
  const int rotary_dim = rotated_dim(p);
  if (!multiple_of(rotary_dim / 2, vec) || !multiple_of(p.head_dim - rotary_dim, vec)) return false;
  const int need = access_alignment<T>(p.style, vec);
  auto tensor_ok = [&](const HeadsTensor<T>& t) {
    // A null y (k in an append launch without write-back) is never accessed.
    return view_aligned<T>(t.x, need, t.x_token_stride, t.x_head_stride) &&
           (t.y == nullptr || view_aligned<T>(t.y, need, t.y_token_stride, t.y_head_stride));
  };
  if ((p.q.num_heads > 0 && !tensor_ok(p.q)) || (p.k.num_heads > 0 && !tensor_ok(p.k))) return false;
  if (!append_views_fit<T>(append, p.style, vec) || !norm_views_fit(norm, p.style, vec)) return false;
  const CosSin& cs = p.cos_sin;
  if (cs.kind == CosSin::Kind::kComputed) {
    const int f = vec < 4 ? vec : 4;  // fp32 frequencies, 16 bytes at most per access
    return is_aligned(cs.inv_freq, f * sizeof(float));
  }
  const int elem = cs.table_type == TableType::kFloat32 ? 4 : 2;
  const int t = vec * elem > 16 ? 16 / elem : vec;
  return is_aligned(cs.cos, t * elem) && is_aligned(cs.sin, t * elem) && multiple_of(cs.row_stride, t);
}

/// How the body finds each pair's position (token_body.cuh's AxisLookup) when it moves `vec`
/// pairs at a time: one axis; several with every column inside one contiguous section (the
/// column boundaries, multiples of vec, include every section boundary); or per pair.
inline AxisLookup axis_lookup(const Positions& ps, int vec) {
  if (ps.axes <= 1) return AxisLookup::kSingleAxis;
  const bool columns_in_sections = ps.layout == AxisSections::kContiguous && multiple_of(ps.sections[0], vec) &&
                                   multiple_of(ps.sections[0] + ps.sections[1], vec);
  return columns_in_sections ? AxisLookup::kPerColumn : AxisLookup::kPerPair;
}

/// The compile-time choices of a launch: which instance of its kernel runs it. The heads a lane
/// keeps in flight follow from the width (head_batch_for).
struct Instance {
  Style style;
  int vec;  ///< pairs per access
  AxisLookup axes;
};

constexpr bool operator==(const Instance& a, const Instance& b) {
  return a.style == b.style && a.vec == b.vec && a.axes == b.axes;
}

/// The instance of a plain launch (NoAppend, NoNorm), an append launch (a CacheAppend) or a norm
/// launch (an RmsNorm): the widest access the arguments allow, their pair style, and how the body
/// finds each pair's position. Norm launches have no double width: its data chunks and the norm
/// stage's spill under NormPolicy's register cap.
template <typename T, typename Append = NoAppend, typename Norm = NoNorm>
Instance choose_instance(const RopeParams<T>& p, const Append& append = Append{}, const Norm& norm = Norm{}) {
  using W = VectorWidths<T>;
  int vec = 1;
  if (!Norm::kEnabled && p.q.num_heads + p.k.num_heads <= kFewHeads && vector_width_fits(p, W::kDouble, append, norm)) {
    vec = W::kDouble;
  } else if (vector_width_fits(p, W::kWide, append, norm)) {
    vec = W::kWide;
  } else if (vector_width_fits(p, W::kNarrow, append, norm)) {
    vec = W::kNarrow;
  }
  return Instance{p.style, vec, axis_lookup(p.positions, vec)};
}

/// Calls `f(style, vec, head_batch, axes)` with `instance` as integral constants: the one place
/// where a launch's runtime choices become template parameters. It instantiates exactly the
/// instances choose_instance can return for a launch with norm mode `Norm`; for any other it
/// calls nothing and returns false.
template <typename Policy, typename T, typename Norm, typename F>
bool with_instance(const Instance& instance, F&& f) {
  using W = VectorWidths<T>;
  auto with_axes = [&](auto style, auto vec) {
    using Batch = std::integral_constant<int, head_batch_for<T, Policy>(decltype(vec)::value)>;
    switch (instance.axes) {
      case AxisLookup::kSingleAxis:
        f(style, vec, Batch{}, std::integral_constant<AxisLookup, AxisLookup::kSingleAxis>{});
        return true;
      case AxisLookup::kPerColumn:
        f(style, vec, Batch{}, std::integral_constant<AxisLookup, AxisLookup::kPerColumn>{});
        return true;
      case AxisLookup::kPerPair:
        f(style, vec, Batch{}, std::integral_constant<AxisLookup, AxisLookup::kPerPair>{});
        return true;
    }
    return false;
  };
  auto with_style = [&](auto vec) {
    if (instance.style == Style::kInterleaved) {
      return with_axes(std::integral_constant<Style, Style::kInterleaved>{}, vec);
    }
    return with_axes(std::integral_constant<Style, Style::kHalfSplit>{}, vec);
  };
  if constexpr (!Norm::kEnabled) {
    if (instance.vec == W::kDouble) return with_style(std::integral_constant<int, W::kDouble>{});
  }
  if (instance.vec == W::kWide) return with_style(std::integral_constant<int, W::kWide>{});
  if (instance.vec == W::kNarrow) return with_style(std::integral_constant<int, W::kNarrow>{});
  if (instance.vec == 1) return with_style(std::integral_constant<int, 1>{});
  return false;
}

/// Calls `f(style, vec, head_batch, axes)` (integral constants) for the instance the arguments
/// choose (choose_instance).
template <typename Policy, typename T, typename Append, typename F, typename Norm = NoNorm>
void dispatch(const RopeParams<T>& p, const Append& append, F&& f, const Norm& norm = Norm{}) {
  with_instance<Policy, T, Norm>(choose_instance(p, append, norm), static_cast<F&&>(f));
}

/// The plain RoPE launch.
template <typename Policy, typename T, typename F>
void dispatch(const RopeParams<T>& p, F&& f) {
  dispatch<Policy>(p, NoAppend{}, static_cast<F&&>(f));
}

/// Whether a launch benefits from rows that walk tokens a grid apart and read each next token's
/// positions ahead (detail/device/kernel.cuh): table mode with a positions array, where a token's table
/// reads otherwise wait for its positions (a second memory round trip), and no partial-rotary
/// tail. Measured on an H200 at T = 16384: table mode with positions (plain, append, QK-norm,
/// M-RoPE) gained 2-8%; computed mode, tables indexed by token and partial rotary lost 4-6%.
template <typename T>
bool reads_positions_ahead(const RopeParams<T>& p) {
  const bool tail = p.rotary_dim != 0 && p.rotary_dim < p.head_dim;
  return gathers_table_rows(p) && !tail;
}

/// The grid of a walking launch of `blocks` blocks where the GPU holds `resident` at once (0:
/// unknown): the rule of kResidentMultiple and kBalancingGiveUpDivisor (detail/policy.cuh).
template <typename T>
std::int64_t grid_blocks(const RopeParams<T>& p, std::int64_t blocks, std::int64_t resident) {
  if (!reads_positions_ahead(p) || resident <= 0 || blocks < kResidentMultiple * resident) return blocks;
  const std::int64_t balanced = ceil_div(blocks, ceil_div(blocks, resident));
  return resident - balanced <= resident / kBalancingGiveUpDivisor ? balanced : resident;
}

/// What a launch does besides RoPE, as far as its launch shape cares: norm launches give a head
/// a power-of-two group of lanes within one warp (for the group's sum of squares) where the others
/// give it one lane per column; only plain launches share table reads over two batches.
enum class LaunchKind : int { kPlain, kAppend, kNorm };

/// The LaunchKind of a launch with append mode `Append` and norm mode `Norm`.
template <typename Append, typename Norm>
constexpr LaunchKind kLaunchKind =
    Norm::kEnabled ? LaunchKind::kNorm : Append::kEnabled ? LaunchKind::kAppend : LaunchKind::kPlain;

/// Threads of one token (lanes) and tokens per block.
struct LaunchShape {
  int lanes_per_token;
  int tokens_per_block;
};

/// At most Policy::kMaxBlockThreads (256) threads per block. A token gets one lane per column of `vec`
/// pairs times enough head groups that each lane has about `head_batch` heads (twice that where
/// a column's cos/sin cost more than a second round trip, below; heads split evenly across
/// groups). When one token is too little work for the block (a single 64-dim head, say), the
/// block takes several tokens, fewer when that would leave too few blocks. A head wider than the
/// block has its lanes walk columns. Append and norm launches of few tokens give each lane about
/// one head (kSpreadHeadsMaxTokens). Norm launches (LaunchKind::kNorm) give a head
/// norm_group_width(columns) lanes instead, so lanes per token are a multiple of that width
/// (detail/device/norm_stage.cuh's lane rule).
template <typename Policy, typename T>
LaunchShape choose_launch_shape(const RopeParams<T>& p, int vec, int head_batch, LaunchKind kind = LaunchKind::kPlain) {
  constexpr int kMaxBlockThreads = Policy::kMaxBlockThreads;
  const int rotary_dim = rotated_dim(p);
  const int columns = kind == LaunchKind::kNorm ? norm_group_width(rotary_dim / 2 / vec) : rotary_dim / 2 / vec;
  if (columns >= kMaxBlockThreads) return LaunchShape{kMaxBlockThreads, 1};
  const int heads = p.q.num_heads + p.k.num_heads;
  // Small launches take smaller blocks (detail/host/block_count.cuh), but never `most_blocks` or more.
  auto shape_with = [&](int heads_per_lane, std::int64_t most_blocks) {
    int groups = ceil_div(heads, heads_per_lane);
    if (groups > kMaxBlockThreads / columns) groups = kMaxBlockThreads / columns;
    const int heads_per_group = ceil_div(heads, groups);
    groups = ceil_div(heads, heads_per_group);
    const int lanes = columns * groups;
    return LaunchShape{lanes, tokens_per_small_block(kMaxBlockThreads / lanes, lanes, p.num_tokens, few_blocks(p),
                                                     most_blocks)};
  };
  const bool table = p.cos_sin.kind == CosSin::Kind::kTable;
  const bool gathered_axes = kind == LaunchKind::kPlain && table && axis_lookup(p.positions, vec) == AxisLookup::kPerColumn;
  const bool many_tokens = p.num_tokens >= kManyTokens;
  if ((p.cos_sin.kind == CosSin::Kind::kComputed || gathered_axes) && many_tokens) {
    return shape_with(2 * head_batch, kAnyBlocks);
  }
  // Plain one-axis table launches with positions take two batches only while that launch has
  // fewer than kQueryBlocks blocks (its full blocks; smaller ones only as long as they stay under
  // it), so that each of its rows takes one token. Measured on an H200: Llama-3-8B table mode at
  // T = 1024 to 5120 ran at 0.94-0.96x of its copy against 0.91-0.95x with one batch; where
  // two-batch rows would walk (T >= 8192) they lost 1-7%, and appends and norm launches lost 3-14%.
  if (kind == LaunchKind::kPlain && reads_positions_ahead(p) && p.positions.axes <= 1 && many_tokens) {
    const LaunchShape shared = shape_with(2 * head_batch, kQueryBlocks);
    if (ceil_div(p.num_tokens, shared.tokens_per_block) < kQueryBlocks) return shared;
  }
  if (kind != LaunchKind::kPlain && p.num_tokens <= kSpreadHeadsMaxTokens) return shape_with(1, kAnyBlocks);
  return shape_with(head_batch, kAnyBlocks);
}

}  // namespace detail
}  // namespace rope
