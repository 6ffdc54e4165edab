// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The per-token work: everything one token of one launch does, as a __host__ __device__
/// function of (params, token, lane, lane count). The kernel calls it with its thread index;
/// host tests call it in a loop, so all indexing, vector and tail logic is tested without a GPU.

#include <cstdint>
#include <type_traits>

#include <rope/config.cuh>
#include <rope/device/rotation.cuh>
#include <rope/detail/device/cache_append.cuh>
#include <rope/detail/device/divisor.cuh>
#include <rope/detail/device/pass_through.cuh>
#include <rope/detail/device/norm_stage.cuh>
#include <rope/detail/device/packed_sequences.cuh>
#include <rope/detail/device/staging.cuh>
#include <rope/detail/device/vector.cuh>
#include <rope/detail/policy.cuh>
#include <rope/types.cuh>

namespace rope {
namespace detail {

/// cos and sin of pairs [first_pair, first_pair + kVec) at `position`, from the table or
/// computed, times `attention_scaling` in both modes. `inverse` negates sin: rotation by -theta,
/// the gradient of the forward rotation.
template <int kVec, typename T>
ROPE_HOST_DEVICE void load_cos_sin(const CosSin& cs, std::int64_t position, int first_pair,
                                   bool inverse, float (&c)[kVec], float (&s)[kVec]) {
  if (cs.kind == CosSin::Kind::kComputed) {
    float inv_freq[kVec];
    load_floats<kVec>(cs.inv_freq + first_pair, inv_freq);
ROPE_UNROLL
    for (int i = 0; i < kVec; ++i) device::rotary_sincos(position, inv_freq[i], cs.attention_scaling, s[i], c[i]);
  } else {
    const std::int64_t offset = position * cs.row_stride + first_pair;
    if (cs.table_type == TableType::kFloat32) {
      load_floats<kVec>(static_cast<const float*>(cs.cos) + offset, c);
      load_floats<kVec>(static_cast<const float*>(cs.sin) + offset, s);
    } else {  // validate() admits only float or T
      load_floats<kVec>(static_cast<const T*>(cs.cos) + offset, c);
      load_floats<kVec>(static_cast<const T*>(cs.sin) + offset, s);
    }
    // Skipped for plain tables (scaling 1, uniform across the launch): the multiply sits between
    // the table loads' arrival and the rotation (on an H200 it cost table mode 0.8-0.9%).
    if (cs.attention_scaling != 1.0f) {
ROPE_UNROLL
      for (int i = 0; i < kVec; ++i) {
        c[i] *= cs.attention_scaling;
        s[i] *= cs.attention_scaling;
      }
    }
  }
  if (inverse) {
ROPE_UNROLL
    for (int i = 0; i < kVec; ++i) s[i] = -s[i];
  }
}

/// Position number `index` of the positions array (the caller knows there is one).
ROPE_HOST_DEVICE std::int64_t read_position(const Positions& ps, std::int64_t index) {
  return ps.type == PositionType::kInt32 ? static_cast<const std::int32_t*>(ps.data)[index]
                                         : static_cast<const std::int64_t*>(ps.data)[index];
}

/// The position axis that frequency `j` takes with multi-axis positions (AxisSections).
ROPE_HOST_DEVICE int axis_of_frequency(const Positions& ps, int j) {
  if (ps.layout == AxisSections::kInterleaved) {
    if (j % 3 == 1 && j < 3 * ps.sections[1]) return 1;
    if (j % 3 == 2 && j < 3 * ps.sections[2]) return 2;
    return 0;
  }
  return j < ps.sections[0] ? 0 : j < ps.sections[0] + ps.sections[1] ? 1 : 2;
}

/// A token's positions on each axis (all three equal with one-axis positions).
struct AxisPositions {
  std::int64_t axis[3];
  /// Axis `a`'s position, by selects: a runtime index into a register array would put the
  /// array in local memory.
  ROPE_HOST_DEVICE std::int64_t of(int a) const { return a == 0 ? axis[0] : a == 1 ? axis[1] : axis[2]; }
};

/// load_cos_sin for multi-axis positions: each pair takes the position of its frequency's axis,
/// so table values are read one pair at a time (a column may span rows of several axes). Columns
/// that lie in one section have their own instance (AxisLookup::kPerColumn) rather than a second
/// path here: both paths in one instance took the Qwen2-VL instance from 128 to 144 registers, one
/// block per SM instead of two.
template <int kVec, typename T>
ROPE_HOST_DEVICE void load_cos_sin_multi_axis(const CosSin& cs, const Positions& ps, const AxisPositions& pos,
                                              int first_pair, bool inverse, float (&c)[kVec], float (&s)[kVec]) {
ROPE_UNROLL
  for (int i = 0; i < kVec; ++i) {
    const int j = first_pair + i;
    const std::int64_t position = pos.of(axis_of_frequency(ps, j));
    if (cs.kind == CosSin::Kind::kComputed) {
      device::rotary_sincos(position, cs.inv_freq[j], cs.attention_scaling, s[i], c[i]);
    } else {
      const std::int64_t offset = position * cs.row_stride + j;
      if (cs.table_type == TableType::kFloat32) {
        c[i] = static_cast<const float*>(cs.cos)[offset];
        s[i] = static_cast<const float*>(cs.sin)[offset];
      } else {
        c[i] = to_float(static_cast<const T*>(cs.cos)[offset]);
        s[i] = to_float(static_cast<const T*>(cs.sin)[offset]);
      }
      c[i] *= cs.attention_scaling;
      s[i] *= cs.attention_scaling;
    }
    if (inverse) s[i] = -s[i];
  }
}

/// How a launch finds the position of each rotary pair: a compile-time choice of the dispatch,
/// so one-axis kernels carry none of the multi-axis logic.
enum class AxisLookup : int {
  kSingleAxis,  ///< one position per token
  kPerColumn,   ///< multi-axis, but every column of kVec pairs lies in one section (contiguous
                ///< sections that are multiples of kVec, as Qwen2-VL's [16, 24, 24] with 8 pairs):
                ///< one position per column and vector cos/sin reads, as one-axis launches do
  kPerPair      ///< multi-axis, any sections: the position and the cos/sin looked up per pair
};

/// cos and sin of the column of kVec pairs at `first_pair` for a token at `pos`.
template <AxisLookup kAxes, int kVec, typename T>
ROPE_HOST_DEVICE void load_column_cos_sin(const RopeParams<T>& p, const AxisPositions& pos, int first_pair,
                                          bool inverse, float (&c)[kVec], float (&s)[kVec]) {
  if constexpr (kAxes == AxisLookup::kPerPair) {
    load_cos_sin_multi_axis<kVec, T>(p.cos_sin, p.positions, pos, first_pair, inverse, c, s);
  } else if constexpr (kAxes == AxisLookup::kPerColumn) {
    load_cos_sin<kVec, T>(p.cos_sin, pos.of(axis_of_frequency(p.positions, first_pair)), first_pair, inverse, c, s);
  } else {
    load_cos_sin<kVec, T>(p.cos_sin, pos.axis[0], first_pair, inverse, c, s);
  }
}

/// A token's position on each axis (positions[token], its place in its packed sequence, or the
/// token index; multi-axis launches (kAxes, the dispatch's choice when positions.axes > 1) read
/// the other axes too, and a missing third axis repeats the first). The kernel reads them one
/// token ahead (detail/device/kernel.cuh), so a token's table reads need not wait for its positions.
template <AxisLookup kAxes, typename T>
ROPE_HOST_DEVICE AxisPositions token_positions(const RopeParams<T>& p, std::int64_t token) {
  const bool has_positions = p.positions.type != PositionType::kNone;
  const std::int64_t position = has_positions                                ? read_position(p.positions, token)
                                : p.positions.sequences.cu_seqlens != nullptr ? packed_sequence_position(p.positions.sequences, token)
                                                                              : token;
  AxisPositions pos{{position, position, position}};
  if constexpr (kAxes != AxisLookup::kSingleAxis) {
    pos.axis[1] = read_position(p.positions, token + p.positions.axis_stride);
    if (p.positions.axes > 2) pos.axis[2] = read_position(p.positions, token + 2 * p.positions.axis_stride);
  }
  return pos;
}

/// Calls work(token, positions) for tokens first, first + stride, ... below p.num_tokens, each
/// with token_positions' result, reading each next token's positions before the current token's
/// work: the walk of one row of a kernel block (detail/device/kernel.cuh) and of the host tests' rows.
template <AxisLookup kAxes, typename T, typename Work>
ROPE_HOST_DEVICE void walk_tokens(const RopeParams<T>& p, std::int64_t first, std::int64_t stride, Work&& work) {
  if (first >= p.num_tokens) return;
  AxisPositions next = token_positions<kAxes>(p, first);
  for (std::int64_t token = first; token < p.num_tokens; token += stride) {
    const AxisPositions positions = next;
    if (token + stride < p.num_tokens) next = token_positions<kAxes>(p, token + stride);
    work(token, positions);
  }
}

/// walk_tokens for rows that may stage their next token (detail/device/staging.cuh): work(token,
/// positions, stage) gets `stage` saying whether its slots hold this token's first batch and
/// which token to stage next: none for the row's last token (a row of one token stages nothing),
/// and none at all when `stages` is false (the launch gave no slots).
template <AxisLookup kAxes, typename T, typename Work>
ROPE_HOST_DEVICE void walk_tokens_staged(const RopeParams<T>& p, std::int64_t first, std::int64_t stride,
                                         SharedStage stage, bool stages, Work&& work) {
  stage.current = false;
  stage.current_set = 0;
  walk_tokens<kAxes>(p, first, stride, [&](std::int64_t token, const AxisPositions& positions) {
    stage.next = stages && token + stride < p.num_tokens ? token + stride : -1;
    work(token, positions, static_cast<const SharedStage&>(stage));
    stage.current = stage.next >= 0;
    stage.current_set ^= 1;
  });
}

/// The identity pre-transform of a pair (plain launches).
struct Unscaled {
  ROPE_HOST_DEVICE void operator()(int, float&, float&) const {}
};

/// Pairs [first_pair, first_pair + kVec) of one head, as loaded: loading and rotating are
/// separate steps so a lane can have several heads' loads in flight before it rotates any.
template <typename T, Style kStyle, int kVec>
struct PairChunk {
  // Half-split: kVec elements from each half, accessed kVec (up to 16 bytes) at a time.
  // Interleaved: 2 * kVec consecutive elements; the scalar path (kVec == 1) promises no
  // alignment beyond the element, so it accesses one element at a time.
  static constexpr bool kHalfSplit = kStyle == Style::kHalfSplit;
  static constexpr int kChunk = kHalfSplit ? Access<T, kVec>::value : kVec == 1 ? 1 : Access<T, 2 * kVec>::value;
  static constexpr int kElems = kHalfSplit ? kVec : 2 * kVec;  // per fragment
  Fragment<T, kElems, kChunk> a;  // half-split: the first half's pairs; interleaved: all of them
  Fragment<T, kHalfSplit ? kVec : kChunk, kChunk> b;  // half-split: the second half's (unused otherwise)

  ROPE_HOST_DEVICE void load(const T* x, int half, int first_pair) {
    if (kHalfSplit) {
      a.load(x + first_pair);
      b.load(x + half + first_pair);
    } else {
      a.load(x + 2 * first_pair);
    }
  }

  /// Stores the chunk as loaded (not rotated) to y: the pass-through of an out-of-table token.
  ROPE_HOST_DEVICE void store_unrotated(T* y, int half, int first_pair) const {
    if (kHalfSplit) {
      a.store(y + first_pair);
      b.store(y + half + first_pair);
    } else {
      a.store(y + 2 * first_pair);
    }
  }

  /// The chunk's accesses, each one slot of a SharedStage; whether cp.async can copy them (not
  /// the scalar path's 2-byte elements).
  static constexpr int kVectors = kElems / kChunk + (kHalfSplit ? kVec / kChunk : 0);
  static constexpr bool kStageable = stageable_bytes(static_cast<int>(sizeof(Packed<T, kChunk>)));

  /// `load`'s accesses as copies into the stage's next slots [first_slot, first_slot + kVectors).
  ROPE_HOST_DEVICE static void stage(const SharedStage& st, int first_slot, const T* x, int half, int first_pair) {
    using V = Packed<T, kChunk>;
    constexpr int kA = kElems / kChunk;
    const T* first = x + (kHalfSplit ? first_pair : 2 * first_pair);
ROPE_UNROLL
    for (int c = 0; c < kA; ++c) copy_to_stage(st.template next_slot<V>(first_slot + c), first + c * kChunk);
    if constexpr (kHalfSplit) {
ROPE_UNROLL
      for (int c = 0; c < kVec / kChunk; ++c) {
        copy_to_stage(st.template next_slot<V>(first_slot + kA + c), x + half + first_pair + c * kChunk);
      }
    }
  }

  /// The chunk as `stage` left it in the current slots (after wait_for_stage).
  ROPE_HOST_DEVICE void unstage(const SharedStage& st, int first_slot) {
    using V = Packed<T, kChunk>;
    constexpr int kA = kElems / kChunk;
ROPE_UNROLL
    for (int c = 0; c < kA; ++c) a.vec[c] = *st.template current_slot<V>(first_slot + c);
    if constexpr (kHalfSplit) {
ROPE_UNROLL
      for (int c = 0; c < kVec / kChunk; ++c) b.vec[c] = *st.template current_slot<V>(first_slot + kA + c);
    }
  }

  /// Pair i as floats: (a[i], b[i]) half-split, (a[2i], a[2i + 1]) interleaved.
  ROPE_HOST_DEVICE void get_pair(int i, float& x1, float& x2) const {
    x1 = kHalfSplit ? a.get(i) : a.get(2 * i);
    x2 = kHalfSplit ? b.get(i) : a.get(2 * i + 1);
  }

  /// Sum of the squares of the chunk's elements, in fp32 (the norm stage's partial sum).
  ROPE_HOST_DEVICE float sum_squares() const {
    float sum = 0.0f;
ROPE_UNROLL
    for (int i = 0; i < kVec; ++i) {
      float x1, x2;
      get_pair(i, x1, x2);
      sum += x1 * x1 + x2 * x2;
    }
    return sum;
  }

  /// Pair i rotated in fp32 (`scale` applied first), not yet rounded.
  template <typename Scale>
  ROPE_HOST_DEVICE void rotated_pair(int i, const float (&c)[kVec], const float (&s)[kVec], const Scale& scale,
                                     float& y1, float& y2) const {
    float x1, x2;
    get_pair(i, x1, x2);
    scale(i, x1, x2);
    device::rotate_pair(x1, x2, c[i], s[i], y1, y2);
  }

  /// y1 = x1 cos - x2 sin, y2 = x1 sin + x2 cos in fp32, rounded to T in the chunk's registers
  /// and stored to y. Append launches may pass a null y (k without write-back, or q going to
  /// q_fp8 only; `kOptionalY`): the chunk is then only rotated, for `store_to_cache`. `scale(i, x1, x2)` transforms pair i
  /// in fp32 before the rotation (the norm stage; Unscaled compiles away).
  template <bool kOptionalY = false, typename Scale = Unscaled>
  ROPE_HOST_DEVICE void rotate_store(T* y, int half, int first_pair, const float (&c)[kVec],
                                     const float (&s)[kVec], const Scale& scale = Scale{}) {
    // Outputs that share a vector are rounded as pairs (Fragment::set_pair) where T has a paired
    // conversion: half-split pairs i and i + 1 put adjacent elements in each half, an interleaved
    // pair its own two. Not under a pre-transform (the norm stage): measured on an H200, pairing
    // made that instance 0.3-0.8% slower and the FP8 append 10-12% faster from T = 4096.
    constexpr bool kPairedType = kChunk % 2 == 0 && !std::is_same<T, float>::value;
    constexpr bool kRoundPairs = kPairedType && std::is_same<Scale, Unscaled>::value;
    if constexpr (kRoundPairs && kHalfSplit) {
      static_assert(kVec % 2 == 0, "pairs i and i + 1 of a half lie in one vector");
ROPE_UNROLL
      for (int i = 0; i < kVec; i += 2) {
        float y1, y2, z1, z2;
        rotated_pair(i, c, s, scale, y1, y2);
        rotated_pair(i + 1, c, s, scale, z1, z2);
        a.set_pair(i, y1, z1);
        b.set_pair(i, y2, z2);
      }
    } else if constexpr (kRoundPairs) {
ROPE_UNROLL
      for (int i = 0; i < kVec; ++i) {
        float y1, y2;
        rotated_pair(i, c, s, scale, y1, y2);
        a.set_pair(2 * i, y1, y2);
      }
    } else {
ROPE_UNROLL
      for (int i = 0; i < kVec; ++i) {
        float y1, y2;
        rotated_pair(i, c, s, scale, y1, y2);
        if (kHalfSplit) {
          a.set(i, y1);
          b.set(i, y2);
        } else {
          a.set(2 * i, y1);
          a.set(2 * i + 1, y2);
        }
      }
    }
    if (kOptionalY && y == nullptr) return;
    if (kHalfSplit) {
      a.store(y + first_pair);
      b.store(y + half + first_pair);
    } else {
      a.store(y + 2 * first_pair);
    }
  }

  /// After `rotate_store`: stores the rotated chunk to a head of a cache of type C, with the
  /// access pattern of the y store in elements of C. The bits of y when C is T; otherwise each
  /// rotated value of T converted (FP8: scaled, saturated), so the cache holds exactly what a
  /// separate cache write of y would store.
  template <typename C>
  ROPE_HOST_DEVICE void store_to_cache(C* head, int half, int first_pair, DivisionScale scale) const {
    constexpr int kCacheChunk = kHalfSplit ? Access<C, kVec>::value : kVec == 1 ? 1 : Access<C, 2 * kVec>::value;
    if constexpr (kHalfSplit) {
      fragment_to_cache<C, kCacheChunk>(a, head + first_pair, scale);
      fragment_to_cache<C, kCacheChunk>(b, head + half + first_pair, scale);
    } else {
      fragment_to_cache<C, kCacheChunk>(a, head + 2 * first_pair, scale);
    }
  }
};

/// Where head `h` of the token lives; heads [0, q.num_heads) are q's, the rest k's.
template <typename T>
struct HeadPointers {
  const T* x;
  T* y;
};

template <typename T>
ROPE_HOST_DEVICE HeadPointers<T> head_pointers(const RopeParams<T>& p, std::int64_t token, int h) {
  // Scalar selects rather than a reference to p.q or p.k, so the kernel's parameters stay in
  // the constant bank instead of being copied to local memory.
  const bool in_q = h < p.q.num_heads;
  const std::int64_t head = in_q ? h : h - p.q.num_heads;
  const T* x = in_q ? p.q.x : p.k.x;
  T* y = in_q ? p.q.y : p.k.y;
  x += token * (in_q ? p.q.x_token_stride : p.k.x_token_stride) + head * (in_q ? p.q.x_head_stride : p.k.x_head_stride);
  y += token * (in_q ? p.q.y_token_stride : p.k.y_token_stride) + head * (in_q ? p.q.y_head_stride : p.k.y_head_stride);
  return HeadPointers<T>{x, y};
}

/// The norm stage's factor for an element of weight w: (w + offset) * inv_rms, formed as one
/// FMA with `scaled_offset` = offset * inv_rms (resolved once per head), so that normalizing and
/// weighting an element costs two instructions, not three.
ROPE_HOST_DEVICE float norm_factor(float w, float inv_rms, float scaled_offset) {
  return fmaf(w, inv_rms, scaled_offset);
}

/// The norm stage's pre-transform of one head's pair: x * norm_factor(w), w the pair's weight
/// from the head's weight chunk (q's or k's).
template <typename W, Style kStyle, int kVec>
struct NormScale {
  const PairChunk<W, kStyle, kVec>& weight;
  float inv_rms;
  float scaled_offset;  ///< the weight offset times inv_rms

  ROPE_HOST_DEVICE void operator()(int i, float& x1, float& x2) const {
    float w1, w2;
    weight.get_pair(i, w1, w2);
    x1 *= norm_factor(w1, inv_rms, scaled_offset);
    x2 *= norm_factor(w2, inv_rms, scaled_offset);
  }
};

/// What one lane of a norm launch holds of the head it works on, beyond its register column:
/// columns `column + width, column + 2 width, ...` (heads wider than a warp's worth of columns)
/// and the tail chunks `column, column + width, ...` of kVec elements past rotary_dim. These are
/// read once for the sum of squares and again, after the group's sum, to be normalized and
/// stored: registers cannot hold a run-time number of chunks.
template <typename T, Style kStyle, int kVec>
struct NormWalk {
  int column, width, columns, half, rotary_dim, tail_chunks;

  /// Whether the lane has anything beyond its register column (uniform for a launch shape in the
  /// common case: a head of at most 32 columns and no tail walks nothing, and its head pointers
  /// are then not formed a second time).
  ROPE_HOST_DEVICE bool walks() const { return column + width < columns || column < tail_chunks; }

  /// The lane's sum of squares over its walked columns and tail chunks of head `x`.
  ROPE_HOST_DEVICE float sum_squares(const T* x) const {
    float sum = 0.0f;
    for (int col = column + width; col < columns; col += width) {
      PairChunk<T, kStyle, kVec> extra;
      extra.load(x, half, col * kVec);
      sum += extra.sum_squares();
    }
    for (int j = column; j < tail_chunks; j += width) {
      Fragment<T, kVec> f;
      f.load(x + rotary_dim + j * kVec);
ROPE_UNROLL
      for (int i = 0; i < kVec; ++i) sum += f.get(i) * f.get(i);
    }
    return sum;
  }

  /// Normalizes, weights, rotates (walked columns) and stores the same elements of head x to y;
  /// `weight` is the head's weight vector (q's or k's).
  template <AxisLookup kAxes, typename W>
  ROPE_HOST_DEVICE void store(const RopeParams<T>& p, const AxisPositions& pos, bool inverse, const T* x, T* y,
                              const W* weight, float inv_rms, float weight_offset) const {
    for (int col = column + width; col < columns; col += width) {
      PairChunk<T, kStyle, kVec> extra;
      PairChunk<W, kStyle, kVec> w;
      extra.load(x, half, col * kVec);
      w.load(weight, half, col * kVec);
      float c[kVec], s[kVec];
      load_column_cos_sin<kAxes, kVec, T>(p, pos, col * kVec, inverse, c, s);
      extra.rotate_store(y, half, col * kVec, c, s, NormScale<W, kStyle, kVec>{w, inv_rms, weight_offset * inv_rms});
    }
    for (int j = column; j < tail_chunks; j += width) {
      const int offset = rotary_dim + j * kVec;
      Fragment<T, kVec> f;
      Fragment<W, kVec> w;
      f.load(x + offset);
      w.load(weight + offset);
ROPE_UNROLL
      for (int i = 0; i < kVec; ++i) f.set(i, f.get(i) * norm_factor(w.get(i), inv_rms, weight_offset * inv_rms));
      f.store(y + offset);
    }
  }

  /// `store` for launches that also append (the attention prologue): the same elements go to y
  /// (null: not written), to `cache` (a k head's cache row; null: none) and to `q_fp8` (a q
  /// head's FP8 output; null: none), converted as the rotated columns are.
  template <AxisLookup kAxes, typename W, typename C>
  ROPE_HOST_DEVICE void store_routed(const RopeParams<T>& p, const AxisPositions& pos, bool inverse, const T* x, T* y,
                                     const W* weight, float inv_rms, float weight_offset, C* cache,
                                     DivisionScale cache_scale, __nv_fp8_e4m3* q_fp8, DivisionScale q_scale) const {
    for (int col = column + width; col < columns; col += width) {
      PairChunk<T, kStyle, kVec> extra;
      PairChunk<W, kStyle, kVec> w;
      extra.load(x, half, col * kVec);
      w.load(weight, half, col * kVec);
      float c[kVec], s[kVec];
      load_column_cos_sin<kAxes, kVec, T>(p, pos, col * kVec, inverse, c, s);
      extra.template rotate_store<true>(y, half, col * kVec, c, s,
                                        NormScale<W, kStyle, kVec>{w, inv_rms, weight_offset * inv_rms});
      if (cache != nullptr) extra.store_to_cache(cache, half, col * kVec, cache_scale);
      if (q_fp8 != nullptr) extra.store_to_cache(q_fp8, half, col * kVec, q_scale);
    }
    for (int j = column; j < tail_chunks; j += width) {
      const int offset = rotary_dim + j * kVec;
      Fragment<T, kVec> f;
      Fragment<W, kVec> w;
      f.load(x + offset);
      w.load(weight + offset);
ROPE_UNROLL
      for (int i = 0; i < kVec; ++i) f.set(i, f.get(i) * norm_factor(w.get(i), inv_rms, weight_offset * inv_rms));
      if (y != nullptr) f.store(y + offset);
      if (cache != nullptr) fragment_to_cache<C, Access<C, kVec>::value>(f, cache + offset, cache_scale);
      if (q_fp8 != nullptr) {
        fragment_to_cache<__nv_fp8_e4m3, Access<__nv_fp8_e4m3, kVec>::value>(f, q_fp8 + offset, q_scale);
      }
    }
  }
};

/// All work of one token, shared by `lanes` cooperating threads (this one is `lane`), at the
/// positions `axis_pos` (token_positions' result for this token).
///
/// The rotary part of a head is split into columns of kVec pairs. Lane `lane` takes column
/// `lane % columns` for a group of heads (`lane / columns`, then every `groups`-th head), so it
/// fetches or computes that column's cos/sin once and reuses them for each of its q and k
/// heads. It works through its heads kHeadBatch at a time, issuing all of a batch's loads before
/// it waits on cos/sin or stores anything: the compiler cannot reorder loads of one head above
/// stores of another itself, since y may alias x. With fewer lanes than columns each lane walks
/// several columns.
///
/// Stages per head: load x -> rotate (fp32, rounded to T) -> store y and, in an append launch
/// (`Append` a CacheAppend; NoAppend compiles every append step away), store k to its cache
/// row. After the rotated part, the lanes share the pass-through tail (to y and the k cache) and
/// then v (to the v cache), kVec elements per access, kHeadBatch accesses in flight.
///
/// Norm launches (`Norm` an RmsNorm; NoNorm compiles every norm step away) put a head's columns
/// on a group of lanes (detail/device/norm_stage.cuh states the rule) and, between load and rotation,
/// sum each head's squares over the group (`group`: a warp shuffle on the GPU) for its inverse
/// RMS. Every lane of a group reaches that sum equally often: the batch loop is the same for
/// all of them, and a past-the-end head is summed like any other, its result unused. Each lane
/// also normalizes its share of the tail, so the tail loops after the heads are skipped.
///
/// `stage` (a SharedStage in the norm instances whose rows walk; NoStage compiles away): before
/// its first batch the lane stages the same batch of the row's next token, then takes this
/// token's batch from the slots when the previous token staged it (detail/device/staging.cuh).
template <typename T, Style kStyle, int kVec, int kHeadBatch, AxisLookup kAxes = AxisLookup::kSingleAxis,
          typename Append = NoAppend, typename Norm = NoNorm, typename Group = NoLaneGroup, typename Stage = NoStage>
ROPE_HOST_DEVICE void rotate_token(const RopeParams<T>& p, bool inverse, std::int64_t token,
                                   const AxisPositions& axis_pos, int lane, int lanes, const Append& append = Append{},
                                   const Norm& norm = Norm{}, const Group& group = Group{},
                                   const Stage& stage = Stage{}) {
  constexpr bool kMultiAxis = kAxes != AxisLookup::kSingleAxis;
  const std::int64_t position = axis_pos.axis[0];
  // A position outside the table never reads the table and tells the caller. Plain launches pass
  // such a token through unrotated (y = x; nothing to do in place); fused launches (append, norm)
  // leave it unwritten, cache rows included. The x loads below do not depend on the position, so
  // they are not made to wait for it: in decode, that is one memory round trip less.
  constexpr bool kPassesThrough = !Append::kEnabled && !Norm::kEnabled;
  auto in_table = [&](std::int64_t v) { return v >= 0 && v < p.cos_sin.rows; };
  const bool in_range = p.cos_sin.kind == CosSin::Kind::kComputed ||
                        (in_table(position) && (!kMultiAxis || (in_table(axis_pos.axis[1]) && in_table(axis_pos.axis[2]))));
  // The token's cache rows (append launches), likewise needed only when storing.
  CacheRows<typename Append::Cache> rows;
  if constexpr (Append::kHasCache) rows = cache_rows(append, token, lane == 0);
  // Append: the lane's first v items are read now, with its heads (kEarlyV, detail/policy.cuh).
  const Divisor v_columns(p.head_dim / kVec);
  const int v_items = v_columns.value * p.k.num_heads;
  EarlyItems<kEarlyV, kVec, T> early_v;
  if constexpr (Append::kHasCache) {
    early_v.load(lane, lanes, v_items, [&](int item) { return v_item(append.args, token, item, v_columns, kVec); });
  }

  const int rotary_dim = rotated_dim(p);
  const int half = rotary_dim / 2;
  const int heads = p.q.num_heads + p.k.num_heads;
  const int columns = half / kVec;
  // A head's lanes: its columns, or (norm) a group of `width` lanes, some spare or walking.
  const int width = Norm::kEnabled ? norm_group_width(columns) : columns;
  const Divisor head_lanes(width);
  const int groups = lanes >= width ? head_lanes.quotient(lanes) : 1;
  using Chunk = PairChunk<T, kStyle, kVec>;
  bool first_batch = true;  // the lane's first batch of the token: the one a SharedStage holds
  for (int item = lane; item < width * groups; item += lanes) {
    const int column = head_lanes.remainder(item);
    const bool spare = Norm::kEnabled && column >= columns;  // joins the sums with zero
    const int first_pair = (spare ? 0 : column) * kVec;
    float c[kVec], s[kVec];
    bool have_cos_sin = false;
    // Norm: the lane's walked columns and tail.
    using Weight = typename Norm::Weight;
    NormWalk<T, kStyle, kVec> walk{column, width, columns, half, rotary_dim, (p.head_dim - rotary_dim) / kVec};
    for (int first_head = head_lanes.quotient(item); first_head < heads; first_head += groups * kHeadBatch) {
      Chunk chunk[kHeadBatch];
      bool staged = false;
      if constexpr (Stage::kEnabled) {
        if (first_batch) {
          // The row's next token first (no chunk registers are live yet), then this token's
          // batch from the slots its previous token filled.
          const bool stages_next = stage.next >= 0;
          if (stages_next) {
ROPE_UNROLL
            for (int b = 0; b < kHeadBatch; ++b) {
              const int h = first_head + b * groups;
              Chunk::stage(stage, b * Chunk::kVectors, head_pointers(p, stage.next, h < heads ? h : first_head).x, half,
                           first_pair);
            }
            commit_stage();
          }
          if (stage.current) {
            wait_for_stage(stages_next);
ROPE_UNROLL
            for (int b = 0; b < kHeadBatch; ++b) chunk[b].unstage(stage, b * Chunk::kVectors);
            staged = true;
          }
        }
      }
      if (!staged) {
ROPE_UNROLL
        for (int b = 0; b < kHeadBatch; ++b) {
          // Past the last head the load repeats the batch's first head instead of branching
          // around it: straight-line code keeps every load of the batch in flight at once.
          const int h = first_head + b * groups;
          chunk[b].load(head_pointers(p, token, h < heads ? h : first_head).x, half, first_pair);
        }
      }
      const bool lane_first_batch = first_batch;
      first_batch = false;
      if (!in_range) {
        // Lane 0 always has item 0, so the flag is raised once per token.
        if (lane == 0 && lane_first_batch && p.out_of_range_flag != nullptr) *p.out_of_range_flag = 1;
        if constexpr (kPassesThrough) {
ROPE_UNROLL
          for (int b = 0; b < kHeadBatch; ++b) {
            const int h = first_head + b * groups;
            if (h >= heads) continue;
            const HeadPointers<T> ptr = head_pointers(p, token, h);
            if (ptr.y != ptr.x) chunk[b].store_unrotated(ptr.y, half, first_pair);
          }
          continue;
        } else {
          return;
        }
      }
      if (!have_cos_sin) {
        load_column_cos_sin<kAxes, kVec, T>(p, axis_pos, first_pair, inverse, c, s);
        have_cos_sin = true;
      }
      float inv_rms[kHeadBatch];
      if constexpr (Norm::kEnabled) {
ROPE_UNROLL
        for (int b = 0; b < kHeadBatch; ++b) {
          const int h = first_head + b * groups;
          inv_rms[b] = (spare ? 0.0f : chunk[b].sum_squares()) +
                       (walk.walks() ? walk.sum_squares(head_pointers(p, token, h < heads ? h : first_head).x) : 0.0f);
        }
        group.sum(inv_rms, width);
ROPE_UNROLL
        for (int b = 0; b < kHeadBatch; ++b) {
          inv_rms[b] = reciprocal_sqrt(inv_rms[b] * norm.inv_head_dim + norm.eps);
        }
      }
ROPE_UNROLL
      for (int b = 0; b < kHeadBatch; ++b) {
        const int h = first_head + b * groups;
        if (h >= heads) continue;
        // The output address is recomputed rather than kept: registers matter more than a few IMADs.
        if constexpr (Append::kEnabled && Norm::kEnabled) {
          // The attention prologue: normalized, rotated, then to y, the k cache row and q_fp8.
          if (spare) continue;
          const bool in_q = h < p.q.num_heads;
          const bool to_y = in_q ? append.q_to_y : append.k_write_back;
          PairChunk<Weight, kStyle, kVec> weight;
          weight.load(in_q ? norm.q_weight : norm.k_weight, half, first_pair);
          chunk[b].template rotate_store<true>(to_y ? head_pointers(p, token, h).y : nullptr, half, first_pair, c, s,
                                               NormScale<Weight, kStyle, kVec>{weight, inv_rms[b],
                                                                               norm.weight_offset * inv_rms[b]});
          if (!in_q) {
            if (rows.k != nullptr) {
              chunk[b].store_to_cache(rows.k + (h - p.q.num_heads) * append.args.k_cache.head_stride, half, first_pair,
                                      append.k_scale);
            }
          } else if constexpr (Append::kQuantizesQ) {
            if (append.args.q_fp8 != nullptr) {
              chunk[b].store_to_cache(q_fp8_head(append.args, token, h), half, first_pair, append.q_scale);
            }
          }
        } else if constexpr (Append::kEnabled) {
          const int kv_head = h - p.q.num_heads;  // negative for q heads
          const bool to_y = kv_head < 0 ? append.q_to_y : append.k_write_back;
          chunk[b].template rotate_store<true>(to_y ? head_pointers(p, token, h).y : nullptr, half, first_pair, c, s);
          if (kv_head >= 0) {
            if (rows.k != nullptr) {
              chunk[b].store_to_cache(rows.k + kv_head * append.args.k_cache.head_stride, half, first_pair,
                                      append.k_scale);
            }
          } else if constexpr (Append::kQuantizesQ) {
            if (append.args.q_fp8 != nullptr) {
              chunk[b].store_to_cache(q_fp8_head(append.args, token, h), half, first_pair, append.q_scale);
            }
          }
        } else if constexpr (Norm::kEnabled) {
          const bool in_q = h < p.q.num_heads;
          const HeadPointers<T> ptr = head_pointers(p, token, h);
          if (!spare) {
            // The weight chunk is read here, per head, from L1: held across the batch, q's and
            // k's chunks took the batch-of-4 instance from 124 to 162 registers.
            PairChunk<Weight, kStyle, kVec> weight;
            weight.load(in_q ? norm.q_weight : norm.k_weight, half, first_pair);
            chunk[b].rotate_store(ptr.y, half, first_pair, c, s,
                                  NormScale<Weight, kStyle, kVec>{weight, inv_rms[b], norm.weight_offset * inv_rms[b]});
          }
        } else {
          chunk[b].rotate_store(head_pointers(p, token, h).y, half, first_pair, c, s);
        }
      }
      // Norm: walked columns and the tail after the batch's chunks are stored, so the walk's
      // chunks never share registers with the batch's.
      if constexpr (Norm::kEnabled) {
ROPE_UNROLL
        for (int b = 0; b < kHeadBatch; ++b) {
          const int h = first_head + b * groups;
          if (h >= heads || !walk.walks()) continue;
          const bool in_q = h < p.q.num_heads;
          const HeadPointers<T> ptr = head_pointers(p, token, h);
          if constexpr (Append::kEnabled) {
            using Cache = typename Append::Cache;
            Cache* cache = !in_q && rows.k != nullptr ? rows.k + (h - p.q.num_heads) * append.args.k_cache.head_stride
                                                      : nullptr;
            __nv_fp8_e4m3* q_fp8 = nullptr;
            if constexpr (Append::kQuantizesQ) {
              if (in_q && append.args.q_fp8 != nullptr) q_fp8 = q_fp8_head(append.args, token, h);
            }
            const bool to_y = in_q ? append.q_to_y : append.k_write_back;
            walk.template store_routed<kAxes>(p, axis_pos, inverse, ptr.x, to_y ? ptr.y : nullptr,
                                              in_q ? norm.q_weight : norm.k_weight, inv_rms[b], norm.weight_offset,
                                              cache, append.k_scale, q_fp8, append.q_scale);
          } else {
            walk.template store<kAxes>(p, axis_pos, inverse, ptr.x, ptr.y, in_q ? norm.q_weight : norm.k_weight,
                                       inv_rms[b], norm.weight_offset);
          }
        }
      }
    }
  }

  // Partial rotary: elements [rotary_dim, head_dim) pass through: to y where y is not x, and for
  // k in an append launch to its cache row (and to y only with write-back). A tensor given in
  // place (or q without a q.y) has nothing to copy to y, so then the items start at k's heads.
  // q's tail into q_fp8 is a pass of its own (its scale is q's). Norm launches normalized their
  // tail with the heads above.
  if (!in_range && !kPassesThrough) return;
  if constexpr (!Norm::kEnabled) {
    const int tail_columns = (p.head_dim - rotary_dim) / kVec;
    const Divisor tail_divisor(tail_columns);
    using Cache = typename Append::Cache;
    using TailCache = std::conditional_t<Append::kEnabled, Cache, T>;  // plain launches: never used
    bool q_to_y = p.q.x != p.q.y;
    bool k_to_cache = false, k_to_y = p.k.x != p.k.y;
    if constexpr (Append::kEnabled) {
      k_to_cache = rows.k != nullptr;
      k_to_y = k_to_y && append.k_write_back;
      q_to_y = q_to_y && append.q_to_y;
    }
    // Plain launches copy twice the rotation's batch at a time: the rotation's registers are free
    // by now, and each batch is a memory round trip (head_dim 80 with rotary_dim 32 gives each lane
    // 12 tail items: two round trips instead of three). Measured on an H200 that row gained only
    // 0.8%: the tail's round trips were not what held it. Per-pair multi-axis instances copy one
    // item at a time: their rotation already needs 128 registers, and a batch of copies in flight
    // took them past it (one block per SM instead of two).
    constexpr int kTailBatch = kAxes == AxisLookup::kPerPair ? 1 : Append::kEnabled ? kHeadBatch : 2 * kHeadBatch;
    int first_tail_head = q_to_y ? 0 : p.q.num_heads;
    if constexpr (Append::kQuantizesQ) {
      // q's tail into q_fp8 (and to q.y where that is written) on its own, at q's scale.
      if (tail_columns > 0 && append.args.q_fp8 != nullptr) {
        // FP8 whatever the cache's type (the attention prologue quantizes q with any cache).
        copy_items<kTailBatch, kVec, T, __nv_fp8_e4m3>(lane, lanes, tail_columns * p.q.num_heads, append.q_scale,
                                                       [&](int item) {
          const int h = tail_divisor.quotient(item);
          const int offset = rotary_dim + tail_divisor.remainder(item) * kVec;
          const HeadPointers<T> ptr = head_pointers(p, token, h);
          return CopyRoute<T, __nv_fp8_e4m3>{ptr.x + offset, q_to_y ? ptr.y + offset : nullptr,
                                             q_fp8_head(append.args, token, h) + offset};
        });
        first_tail_head = p.q.num_heads;
      }
    }
    const int tail_heads = k_to_cache || k_to_y ? heads - first_tail_head : p.q.num_heads - first_tail_head;
    if (tail_columns > 0 && tail_heads > 0) {
      DivisionScale k_scale;
      if constexpr (Append::kEnabled) k_scale = append.k_scale;
      copy_items<kTailBatch, kVec, T, TailCache>(lane, lanes, tail_columns * tail_heads, k_scale, [&](int item) {
        const int h = first_tail_head + tail_divisor.quotient(item);
        const int offset = rotary_dim + tail_divisor.remainder(item) * kVec;
        const int kv_head = h - p.q.num_heads;  // negative for q heads
        const HeadPointers<T> ptr = head_pointers(p, token, h);
        TailCache* cache = nullptr;
        if constexpr (Append::kEnabled) {
          if (kv_head >= 0 && k_to_cache) cache = rows.k + kv_head * append.args.k_cache.head_stride + offset;
        }
        const bool to_y = kv_head < 0 ? q_to_y : k_to_y;
        return CopyRoute<T, TailCache>{ptr.x + offset, to_y ? ptr.y + offset : nullptr, cache};
      });
    }
  }

  // Append: v passes into its cache row whole: the items read early, then the rest.
  if constexpr (Append::kHasCache) {
    using Cache = typename Append::Cache;
    if (rows.v == nullptr) return;
    const KvCacheAppend<T, Cache>& a = append.args;
    auto route = [&](int item) {
      const int h = v_columns.quotient(item);
      const int offset = v_columns.remainder(item) * kVec;
      return CopyRoute<T, Cache>{v_item(a, token, item, v_columns, kVec), nullptr,
                                 rows.v + h * a.v_cache.head_stride + offset};
    };
    early_v.template store<Cache>(lane, lanes, v_items, append.v_scale, route);
    copy_items<kHeadBatch, kVec, T, Cache>(lane + kEarlyV * lanes, lanes, v_items, append.v_scale, route);
  }
}

}  // namespace detail
}  // namespace rope
