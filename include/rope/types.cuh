// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The parameter types of the public API: tensors, cos/sin sources, positions.

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <rope/config.cuh>

namespace rope {

/// Which two elements of a head form one rotation pair.
enum class Style : int {
  kHalfSplit = 0,    ///< pair i is (x[i], x[i + rotary_dim/2]): GPT-NeoX, Llama, HF `rotate_half`
  kInterleaved = 1,  ///< pair i is (x[2i], x[2i + 1]): GPT-J, the original RoFormer
};

/// Element type of a cos/sin table (math is always fp32).
enum class TableType : int {
  kFloat32 = 0,   ///< float
  kFloat16 = 1,   ///< __half (only with __half tensors)
  kBFloat16 = 2,  ///< __nv_bfloat16 (only with __nv_bfloat16 tensors)
};

/// Element type of the positions array.
enum class PositionType : int {
  kNone = 0,   ///< no array: the position of token t is t
  kInt32 = 1,  ///< const std::int32_t*, one per token
  kInt64 = 2,  ///< const std::int64_t*, one per token
};

/// One rotated tensor (q or k): input `x` and output `y`, each a strided view
/// [tokens, heads, head_dim] whose last dimension is contiguous. Strides are in
/// elements. `y` may be `x` itself (in place) when the strides are equal too.
template <typename T>
struct HeadsTensor {
  const T* x = nullptr;              ///< input, element [t, h, d] at x[t * x_token_stride + h * x_head_stride + d]
  T* y = nullptr;                    ///< output, likewise with the y strides
  int num_heads = 0;                 ///< heads of this tensor; 0 means absent (pointers null)
  std::int64_t x_token_stride = 0;   ///< elements between tokens of x
  std::int64_t x_head_stride = 0;    ///< elements between heads of x
  std::int64_t y_token_stride = 0;   ///< elements between tokens of y
  std::int64_t y_head_stride = 0;    ///< elements between heads of y
};

/// A view whose input and output share one layout (in place when `y == x`).
template <typename T>
HeadsTensor<T> strided_heads(const T* x, T* y, int num_heads, std::int64_t token_stride,
                             std::int64_t head_stride) {
  return HeadsTensor<T>{x, y, num_heads, token_stride, head_stride, token_stride, head_stride};
}

/// A densely packed [tokens, num_heads, head_dim] view.
template <typename T>
HeadsTensor<T> packed_heads(const T* x, T* y, int num_heads, int head_dim) {
  return strided_heads(x, y, num_heads, std::int64_t{num_heads} * head_dim, std::int64_t{head_dim});
}

/// Where the cos and sin of each (position, pair) come from.
struct CosSin {
  enum class Kind : int {
    kTable = 0,     ///< read from cos/sin tables indexed by position
    kComputed = 1,  ///< computed in the kernel from inverse frequencies
  };
  Kind kind = Kind::kTable;

  /// Table mode: element [row, i] of cos is `cos[row * row_stride + i]`, i < rotary_dim / 2.
  const void* cos = nullptr;
  const void* sin = nullptr;                   ///< Table mode: laid out as cos.
  TableType table_type = TableType::kFloat32;  ///< Table mode: element type of cos and sin.
  std::int64_t rows = 0;                       ///< Table mode: valid positions are [0, rows).
  std::int64_t row_stride = 0;                 ///< Table mode: elements between rows.

  /// Computed mode: rotary_dim / 2 fp32 frequencies; the angle of pair i is position * inv_freq[i].
  const float* inv_freq = nullptr;
  /// Both modes: cos and sin are multiplied by this (YaRN's and LongRoPE's attention factor;
  /// 1 for plain RoPE and for tables that already include it, as Hugging Face's do).
  float attention_scaling = 1.0f;
};

namespace detail {
template <typename E> struct TableTypeOf;
template <> struct TableTypeOf<float> { static constexpr TableType value = TableType::kFloat32; };
template <> struct TableTypeOf<__half> { static constexpr TableType value = TableType::kFloat16; };
template <> struct TableTypeOf<__nv_bfloat16> { static constexpr TableType value = TableType::kBFloat16; };
}  // namespace detail

/// Separate cos and sin tables, `rows` rows of at least rotary_dim/2 values each.
/// Covers the HF layout too: its duplicated-halves rows `[rows, rotary_dim]` are read
/// through `row_stride = rotary_dim` (only the first half of each row is used).
/// `E` is float or the tensor's own type.
/// `attention_scaling` multiplies every value read (a plain table with YaRN's factor, say).
template <typename E>
CosSin cos_sin_table(const E* cos, const E* sin, std::int64_t rows, std::int64_t row_stride,
                     float attention_scaling = 1.0f) {
  CosSin s;
  s.attention_scaling = attention_scaling;
  s.kind = CosSin::Kind::kTable;
  s.cos = cos;
  s.sin = sin;
  s.table_type = detail::TableTypeOf<E>::value;
  s.rows = rows;
  s.row_stride = row_stride;
  return s;
}

/// One fused cache row per position, `[cos(rotary_dim/2) | sin(rotary_dim/2)]`: the layout
/// of vLLM's and FlashInfer's cos_sin_cache. `row_stride` defaults to rotary_dim.
template <typename E>
CosSin fused_cos_sin_cache(const E* cache, std::int64_t rows, int rotary_dim,
                           std::int64_t row_stride = 0, float attention_scaling = 1.0f) {
  return cos_sin_table(cache, cache == nullptr ? nullptr : cache + rotary_dim / 2, rows,
                       row_stride == 0 ? std::int64_t{rotary_dim} : row_stride, attention_scaling);
}

/// cos/sin computed in the kernel from `rotary_dim / 2` fp32 inverse frequencies
/// (see rope/frequencies.cuh for every common scaling), no table traffic.
inline CosSin computed_cos_sin(const float* inv_freq, float attention_scaling = 1.0f) {
  CosSin s;
  s.kind = CosSin::Kind::kComputed;
  s.inv_freq = inv_freq;
  s.attention_scaling = attention_scaling;
  return s;
}

/// Which position axis each frequency index uses with multi-axis positions (M-RoPE).
enum class AxisSections : int {
  /// Consecutive ranges, as Qwen2-VL's `mrope_section`: frequencies [0, s0) use axis 0, the next
  /// s1 axis 1, the next s2 axis 2 (both halves of a head follow the same assignment).
  kContiguous = 0,
  /// Spread across frequencies, as Qwen3-VL: frequency j uses axis 1 when j % 3 == 1 and
  /// j < 3 * s1, axis 2 when j % 3 == 2 and j < 3 * s2, axis 0 otherwise.
  kInterleaved = 1,
};

/// How context parallelism cuts each packed sequence over `size` ranks.
enum class ContextSplit : int {
  /// `2 * size` equal chunks; rank r holds chunks r and `2 * size - 1 - r`, in that order, so that
  /// causal attention costs every rank the same (Transformer Engine, Megatron-Core).
  kLoadBalanced = 0,
  /// `size` equal chunks; rank r holds chunk r.
  kContiguous = 1,
};

/// Context parallelism: this launch holds rank `rank`'s share of every sequence (ContextSplit).
struct ContextParallel {
  int size = 1;                                      ///< ranks, >= 1; 1 means no split
  int rank = 0;                                      ///< this launch's rank, [0, size)
  ContextSplit split = ContextSplit::kLoadBalanced;  ///< how sequences are cut
};

/// Variable-length sequences packed one after another along the tokens (the THD layout), with no
/// positions array: the position of a token is its index within its sequence, plus the sequence's
/// start offset when `offsets` is given. With context parallelism, `cu_seqlens` describes the full
/// sequences (each a multiple of `2 * size` tokens, or of `size` for kContiguous: Transformer
/// Engine's `cu_seqlens_padded`), the launch's tokens are this rank's share of each in sequence
/// order (length / size tokens per sequence), and each token gets its position in the full sequence.
///
/// The host cannot read device memory, so the launch checks only what it is given here;
/// rope::check_cu_seqlens checks a host copy of the array. The kernel reads only
/// cu_seqlens[0, count] and offsets[0, count): with an array that breaks the rules above, tokens
/// take whatever positions its entries give (out-of-table rows are skipped and flagged as always),
/// never an access outside these arrays or the tensors.
struct PackedSequences {
  const std::int32_t* cu_seqlens = nullptr;  ///< device, count + 1 entries: 0, then running totals of the full lengths
  int count = 0;                             ///< sequences, >= 1 when cu_seqlens is set
  const void* offsets = nullptr;             ///< optional device array of `count` start positions
  PositionType offsets_type = PositionType::kNone;  ///< kInt32 or kInt64 with offsets, else kNone
  ContextParallel context;                   ///< this launch's share of each sequence
};

/// Per-token positions on the device (or none: position = token index). With `axes` 2 or 3 they
/// are multi-axis (M-RoPE's temporal/height/width, a vision tower's row/column): `axes` arrays of
/// one position per token, `axis_stride` elements apart ([axes, tokens] when it is num_tokens),
/// and `sections` say which axis each of the rotary_dim / 2 frequencies takes.
struct Positions {
  const void* data = nullptr;               ///< device array of `type`, or nullptr with kNone
  PositionType type = PositionType::kNone;  ///< element type of data
  int axes = 1;                             ///< 1 (one position per token), 2 or 3
  std::int64_t axis_stride = 0;             ///< multi-axis: elements between the axes' arrays
  AxisSections layout = AxisSections::kContiguous;  ///< multi-axis: how sections map frequencies
  int sections[3] = {0, 0, 0};              ///< multi-axis: frequencies per axis, summing to rotary_dim / 2
  /// Packed sequences instead of a positions array (then `data` is null and `type` kNone).
  PackedSequences sequences;
};

namespace detail {
/// One-axis positions of element type `type` at `data` (members set by name: a brace list that
/// leaves members out warns under -Wmissing-field-initializers).
inline Positions one_axis(const void* data, PositionType type) {
  Positions r;
  r.data = data;
  r.type = type;
  return r;
}
}  // namespace detail

/// int32 positions, one per token (device memory).
inline Positions positions(const std::int32_t* p) { return detail::one_axis(p, PositionType::kInt32); }
/// int64 positions, one per token (device memory).
inline Positions positions(const std::int64_t* p) { return detail::one_axis(p, PositionType::kInt64); }

/// Positions of packed sequences (THD): `cu_seqlens` ([count + 1] int32 on the device: 0, then the
/// running totals of the sequences' lengths), optionally this rank's share under context
/// parallelism. See PackedSequences.
inline Positions packed_sequence_positions(const std::int32_t* cu_seqlens, int count, ContextParallel context = {}) {
  Positions r;
  r.sequences.cu_seqlens = cu_seqlens;
  r.sequences.count = count;
  r.sequences.context = context;
  return r;
}
namespace detail {
inline Positions with_offsets(Positions r, const void* offsets, PositionType type) {
  r.sequences.offsets = offsets;
  r.sequences.offsets_type = type;
  return r;
}
}  // namespace detail

/// Packed sequences whose positions start at `offsets[s]` (int32, one per sequence; FlashAttention's
/// `seqlen_offsets`, Transformer Engine's `start_positions`).
inline Positions packed_sequence_positions(const std::int32_t* cu_seqlens, int count, const std::int32_t* offsets,
                                           ContextParallel context = {}) {
  return detail::with_offsets(packed_sequence_positions(cu_seqlens, count, context), offsets, PositionType::kInt32);
}
/// Packed sequences with int64 start offsets (see the int32 overload).
inline Positions packed_sequence_positions(const std::int32_t* cu_seqlens, int count, const std::int64_t* offsets,
                                           ContextParallel context = {}) {
  return detail::with_offsets(packed_sequence_positions(cu_seqlens, count, context), offsets, PositionType::kInt64);
}

namespace detail {
/// Whether a launch looks each token's position up (an array or packed sequences) rather than
/// taking its index.
ROPE_HOST_DEVICE bool looks_up_positions(const Positions& ps) {
  return ps.type != PositionType::kNone || ps.sequences.cu_seqlens != nullptr;
}

template <typename I>
Positions multi_axis(const I* p, PositionType type, int axes, std::int64_t axis_stride, AxisSections layout,
                     int s0, int s1, int s2) {
  Positions r = one_axis(p, type);
  r.axes = axes;
  r.axis_stride = axis_stride;
  r.layout = layout;
  r.sections[0] = s0;
  r.sections[1] = s1;
  r.sections[2] = s2;
  return r;
}
}  // namespace detail

/// Multi-axis int64 positions: `axes` (2 or 3) arrays of num_tokens positions, `axis_stride`
/// elements apart, and the frequencies per axis (`s2` only with 3 axes). Qwen2-VL:
/// `multi_axis_positions(p, 3, T, AxisSections::kContiguous, 16, 24, 24)`.
inline Positions multi_axis_positions(const std::int64_t* p, int axes, std::int64_t axis_stride, AxisSections layout,
                                      int s0, int s1, int s2 = 0) {
  return detail::multi_axis(p, PositionType::kInt64, axes, axis_stride, layout, s0, s1, s2);
}
/// Multi-axis int32 positions (see the int64 overload).
inline Positions multi_axis_positions(const std::int32_t* p, int axes, std::int64_t axis_stride, AxisSections layout,
                                      int s0, int s1, int s2 = 0) {
  return detail::multi_axis(p, PositionType::kInt32, axes, axis_stride, layout, s0, s1, s2);
}

/// Everything one launch needs. q and k are each optional (leave one default-constructed for a
/// k-only or q-only launch), but a launch rotates at least one head.
/// Both share the tokens, head_dim, rotary_dim, style, cos/sin and positions, and the cos/sin
/// of a token are fetched or computed once for both.
template <typename T>
struct RopeParams {
  std::int64_t num_tokens = 0;  ///< tokens of q and k, [0, 2^31)
  int head_dim = 0;             ///< elements per head: even, [2, 16384]
  int rotary_dim = 0;  ///< rotated leading part of each head; 0 means head_dim. The tail passes through.
  Style style = Style::kHalfSplit;  ///< which elements pair up
  HeadsTensor<T> q;                 ///< optional; 1 <= q.num_heads + k.num_heads <= 4096
  HeadsTensor<T> k;                 ///< optional; shares no element with q where either is written (checked)
  CosSin cos_sin;                   ///< cos/sin from a table or computed
  Positions positions;              ///< optional; none: position of token t is t
  /// Optional device int. In table mode a token whose position is negative or not below
  /// `cos_sin.rows` is passed through unrotated (y = x; the table is never read out of bounds;
  /// fused launches write nothing of it) and, if this is
  /// set, 1 is stored here. Never cleared by the library.
  int* out_of_range_flag = nullptr;
};

namespace detail {
/// The rotated elements of each head of a launch: rotary_dim, or head_dim where rotary_dim is 0.
template <typename T>
ROPE_HOST_DEVICE int rotated_dim(const RopeParams<T>& p) {
  return p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
}
}  // namespace detail

}  // namespace rope
