// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Every check a launch makes before it touches the GPU. Launchers call `validate`;
/// callers may call it too, to learn in advance whether a configuration is accepted.

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>

#include <rope/status.cuh>
#include <rope/types.cuh>

namespace rope {
namespace detail {

inline bool is_aligned(const void* p, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

/// Largest offset, in elements, that a view may span: far beyond any real allocation, and small
/// enough that offsets, their sums and their byte counts never overflow 64 bits.
constexpr std::int64_t kMaxSpan = std::numeric_limits<std::int64_t>::max() / 16;

/// True when (tokens - 1) * token_stride and (heads - 1) * head_stride both stay within kMaxSpan
/// (negative strides are rejected before this is asked).
inline bool span_fits(std::int64_t tokens, int heads, std::int64_t token_stride, std::int64_t head_stride) {
  auto fits = [](std::int64_t n, std::int64_t stride) { return n <= 1 || stride <= 0 || n - 1 <= kMaxSpan / stride; };
  return fits(tokens, token_stride) && fits(heads, head_stride);
}

/// True when the rows of a [tokens, heads, head_dim] view never share an element: with the two
/// strides sorted, the inner one must clear a head and the outer one must clear all inner rows.
/// Extents of 1 impose nothing (their stride is never used).
inline bool rows_disjoint(std::int64_t tokens, std::int64_t heads, std::int64_t head_dim, std::int64_t token_stride,
                          std::int64_t head_stride) {
  if (token_stride < 0 || head_stride < 0) return false;
  std::int64_t inner = head_stride, inner_n = heads, outer = token_stride, outer_n = tokens;
  if (inner_n <= 1 || (outer_n > 1 && outer < inner)) {
    inner = token_stride; inner_n = tokens; outer = head_stride; outer_n = heads;
  }
  if (inner_n > 1 && inner < head_dim) return false;
  const std::int64_t inner_span = inner_n > 1 ? (inner_n - 1) * inner + head_dim : head_dim;
  return outer_n <= 1 || outer >= inner_span;
}

/// Where one strided [tokens, heads, head_dim] view lies: its base address and strides (elements).
struct ViewGeometry {
  const void* base;
  int heads;
  std::int64_t token_stride;
  std::int64_t head_stride;
};

/// Byte range [first, last) that a view touches (strides already checked non-negative and within
/// kMaxSpan).
inline void byte_extent(const ViewGeometry& v, std::int64_t tokens, int head_dim, std::size_t elem_bytes,
                        std::uintptr_t& first, std::uintptr_t& last) {
  const std::int64_t span = (tokens - 1) * v.token_stride + (v.heads - 1) * v.head_stride + head_dim;
  first = reinterpret_cast<std::uintptr_t>(v.base);
  last = first + static_cast<std::uintptr_t>(span) * elem_bytes;
}

/// True when two views of one launch (same tokens and head_dim) share no element. Disjoint byte
/// ranges never do. Views whose ranges overlap are accepted only when they tile one layout: equal
/// strides (those of extents of 1 aside) and the later view's start, counted from the earlier
/// one's in head slots of head_stride elements plus a remainder r, either whole slots past the
/// earlier view's last head (r = 0: fused QKV, [T, Hq + 2Hk, D]) or another part of the same
/// slots (head_dim <= r <= head_stride - head_dim: GPT-NeoX's [T, H, 3D]), with the slots
/// themselves disjoint rows. A broadcast view (head stride 0) counts as its one head.
inline bool views_disjoint(ViewGeometry a, ViewGeometry b, std::int64_t tokens, int head_dim,
                           std::size_t elem_bytes) {
  if (a.heads > 1 && a.head_stride == 0) a.heads = 1;
  if (b.heads > 1 && b.head_stride == 0) b.heads = 1;
  std::uintptr_t a0, a1, b0, b1;
  byte_extent(a, tokens, head_dim, elem_bytes, a0, a1);
  byte_extent(b, tokens, head_dim, elem_bytes, b0, b1);
  if (a1 <= b0 || b1 <= a0) return true;
  if (b0 < a0) {
    const ViewGeometry t = a; a = b; b = t;
    const std::uintptr_t t0 = a0; a0 = b0; b0 = t0;
  }
  if ((b0 - a0) % elem_bytes != 0) return false;
  const std::int64_t offset = static_cast<std::int64_t>((b0 - a0) / elem_bytes);
  if (tokens > 1 && a.token_stride != b.token_stride) return false;
  if (a.heads > 1 && b.heads > 1 && a.head_stride != b.head_stride) return false;
  // Two single heads: b is a's "next head" at this distance.
  const std::int64_t head_stride = a.heads > 1 ? a.head_stride : b.heads > 1 ? b.head_stride : offset;
  if (head_stride <= 0) return false;
  const std::int64_t slot = offset / head_stride, r = offset % head_stride;
  if (r == 0) return slot >= a.heads && rows_disjoint(tokens, slot + b.heads, head_dim, a.token_stride, head_stride);
  if (r < head_dim || r > head_stride - head_dim) return false;
  const std::int64_t slots = a.heads > slot + b.heads ? a.heads : slot + b.heads;
  return rows_disjoint(tokens, slots, head_stride, a.token_stride, head_stride);
}

/// The reasons one tensor's checks give, naming q or k.
struct HeadsMessages {
  const char* null_x;
  const char* null_y;
  const char* misaligned;
  const char* negative_strides;
  const char* output_rows_overlap;
  const char* partial_overlap;
  const char* span_too_large;
};

constexpr HeadsMessages kQMessages{
    "q.x is null", "q.y is null", "q.x or q.y is not aligned to its element type",
    "q strides are negative",
    "q.y strides make output rows overlap (rows of the output must be disjoint)",
    "q.y partially overlaps q.x (in place needs y == x and equal strides)",
    "q strides and sizes exceed 64-bit offsets"};
constexpr HeadsMessages kKMessages{
    "k.x is null", "k.y is null", "k.x or k.y is not aligned to its element type",
    "k strides are negative",
    "k.y strides make output rows overlap (rows of the output must be disjoint)",
    "k.y partially overlaps k.x (in place needs y == x and equal strides)",
    "k strides and sizes exceed 64-bit offsets"};

/// Input rows may overlap (a broadcast input, head stride 0, is only read); output rows may not.
template <typename T>
Status validate_heads(const HeadsTensor<T>& t, std::int64_t tokens, int head_dim, const HeadsMessages& why) {
  if (t.x == nullptr) return invalid(why.null_x);
  if (t.y == nullptr) return invalid(why.null_y);
  if (!is_aligned(t.x, sizeof(T)) || !is_aligned(t.y, sizeof(T))) return invalid(why.misaligned);
  if (t.x_token_stride < 0 || t.x_head_stride < 0 || t.y_token_stride < 0 || t.y_head_stride < 0) {
    return invalid(why.negative_strides);
  }
  if (!span_fits(tokens, t.num_heads, t.x_token_stride, t.x_head_stride) ||
      !span_fits(tokens, t.num_heads, t.y_token_stride, t.y_head_stride)) {
    return invalid(why.span_too_large);
  }
  if (!rows_disjoint(tokens, t.num_heads, head_dim, t.y_token_stride, t.y_head_stride)) {
    return invalid(why.output_rows_overlap);
  }
  std::uintptr_t x0, x1, y0, y1;
  byte_extent(ViewGeometry{t.x, t.num_heads, t.x_token_stride, t.x_head_stride}, tokens, head_dim, sizeof(T), x0, x1);
  byte_extent(ViewGeometry{t.y, t.num_heads, t.y_token_stride, t.y_head_stride}, tokens, head_dim, sizeof(T), y0, y1);
  const bool overlap = x0 < y1 && y0 < x1;
  // In place: the same pointer and the same strides, except those of extents of 1 (never used;
  // frameworks give size-1 dimensions arbitrary strides).
  const bool same_view = static_cast<const void*>(t.x) == static_cast<const void*>(t.y) &&
                         (tokens <= 1 || t.x_token_stride == t.y_token_stride) &&
                         (t.num_heads <= 1 || t.x_head_stride == t.y_head_stride);
  if (overlap && !same_view) return invalid(why.partial_overlap);
  return Status{};
}

/// k may share no element with q where either side is written (q.y or k.y); two inputs may
/// overlap, as both are only read.
template <typename T>
bool q_and_k_disjoint(const RopeParams<T>& p) {
  const ViewGeometry qx{p.q.x, p.q.num_heads, p.q.x_token_stride, p.q.x_head_stride};
  const ViewGeometry qy{p.q.y, p.q.num_heads, p.q.y_token_stride, p.q.y_head_stride};
  const ViewGeometry kx{p.k.x, p.k.num_heads, p.k.x_token_stride, p.k.x_head_stride};
  const ViewGeometry ky{p.k.y, p.k.num_heads, p.k.y_token_stride, p.k.y_head_stride};
  const std::size_t e = sizeof(T);
  return views_disjoint(qy, kx, p.num_tokens, p.head_dim, e) && views_disjoint(qy, ky, p.num_tokens, p.head_dim, e) &&
         views_disjoint(qx, ky, p.num_tokens, p.head_dim, e);
}

/// A byte range [first, last); empty when first == last.
struct ByteRange {
  std::uintptr_t first = 0, last = 0;
  constexpr bool meets(const ByteRange& o) const { return first < o.last && o.first < last; }
};

/// The `bytes` bytes at `p` (none for a null pointer).
inline ByteRange bytes_at(const void* p, std::uint64_t bytes) {
  const std::uintptr_t first = reinterpret_cast<std::uintptr_t>(p);
  return ByteRange{first, p == nullptr ? first : first + static_cast<std::uintptr_t>(bytes)};
}

/// The bytes a view of `tokens` tokens touches (checked strides; a broadcast view is one head).
inline ByteRange view_bytes(ViewGeometry v, std::int64_t tokens, int head_dim, std::size_t elem_bytes) {
  if (v.heads <= 0 || v.base == nullptr) return ByteRange{};
  if (v.heads > 1 && v.head_stride == 0) v.heads = 1;
  ByteRange r;
  byte_extent(v, tokens, head_dim, elem_bytes, r.first, r.last);
  return r;
}

/// One argument's bytes and the reason a launch is refused when they lie where they must not.
struct ArgumentBytes {
  ByteRange bytes;
  const char* reason;
};

/// The arguments a launch reads besides its heads (positions, tables, frequencies, slots) lie
/// in nothing it writes (a read would race with a write), and each flag lies in nothing it reads
/// or writes (a flag store would corrupt it). `tensors` are the heads and v, which are read.
inline Status arguments_apart(std::initializer_list<ByteRange> writes, std::initializer_list<ByteRange> tensors,
                              std::initializer_list<ArgumentBytes> reads, std::initializer_list<ArgumentBytes> flags) {
  for (const ArgumentBytes& r : reads) {
    for (const ByteRange& w : writes) {
      if (r.bytes.meets(w)) return invalid(r.reason);
    }
  }
  for (const ArgumentBytes& f : flags) {
    for (const ByteRange& w : writes) {
      if (f.bytes.meets(w)) return invalid(f.reason);
    }
    for (const ByteRange& t : tensors) {
      if (f.bytes.meets(t)) return invalid(f.reason);
    }
    for (const ArgumentBytes& r : reads) {
      if (f.bytes.meets(r.bytes)) return invalid(f.reason);
    }
  }
  return Status{};
}

/// The reasons of arguments_apart for a RoPE launch's own arguments.
constexpr const char* kPositionsInOutput = "positions overlap an output of the launch (read while it is written)";
constexpr const char* kTableInOutput = "the cos/sin table overlaps an output of the launch (read while it is written)";
constexpr const char* kFreqInOutput = "inv_freq overlaps an output of the launch (read while it is written)";
constexpr const char* kFlagInArgument = "out_of_range_flag lies in a tensor the launch reads or writes";

constexpr const char* kSequencesInOutput =
    "packed sequences' cu_seqlens or offsets overlap an output of the launch (read while it is written)";

/// What a RoPE launch reads besides q.x and k.x: positions (an array, or packed sequences'
/// cu_seqlens and offsets), the cos and sin tables (rows the positions may index) or the frequencies.
struct SideReads {
  ArgumentBytes positions, cu_seqlens, offsets, cos, sin, inv_freq;
};

/// side_reads of a launch whose arguments are checked, num_tokens > 0.
template <typename T>
SideReads side_reads(const RopeParams<T>& p) {
  SideReads r;
  const Positions& ps = p.positions;
  const std::uint64_t position_bytes = ps.type == PositionType::kInt32 ? 4 : 8;
  const std::int64_t position_count = (ps.axes - 1) * ps.axis_stride + p.num_tokens;
  r.positions = {bytes_at(ps.type == PositionType::kNone ? nullptr : ps.data,
                          static_cast<std::uint64_t>(position_count) * position_bytes),
                 kPositionsInOutput};
  const PackedSequences& sq = ps.sequences;
  const std::uint64_t offset_bytes = sq.offsets_type == PositionType::kInt32 ? 4 : 8;
  r.cu_seqlens = {bytes_at(sq.cu_seqlens, (static_cast<std::uint64_t>(sq.count) + 1) * 4), kSequencesInOutput};
  r.offsets = {bytes_at(sq.offsets, static_cast<std::uint64_t>(sq.count) * offset_bytes), kSequencesInOutput};
  const CosSin& cs = p.cos_sin;
  const std::int64_t half = rotated_dim(p) / 2;
  if (cs.kind == CosSin::Kind::kTable && cs.rows > 0) {
    const std::uint64_t elem = cs.table_type == TableType::kFloat32 ? 4 : 2;
    const std::uint64_t table_bytes = static_cast<std::uint64_t>((cs.rows - 1) * cs.row_stride + half) * elem;
    r.cos = {bytes_at(cs.cos, table_bytes), kTableInOutput};
    r.sin = {bytes_at(cs.sin, table_bytes), kTableInOutput};
  } else {
    r.cos = r.sin = {ByteRange{}, kTableInOutput};
  }
  r.inv_freq = {cs.kind == CosSin::Kind::kComputed ? bytes_at(cs.inv_freq, static_cast<std::uint64_t>(half) * 4)
                                                   : ByteRange{},
                kFreqInOutput};
  return r;
}

/// The checks of packed sequences that need no device memory (see rope::PackedSequences).
inline Status validate_sequences(const Positions& ps) {
  const PackedSequences& sq = ps.sequences;
  const ContextParallel& cp = sq.context;
  if (sq.cu_seqlens == nullptr) {
    if (sq.count != 0 || sq.offsets != nullptr || sq.offsets_type != PositionType::kNone) {
      return invalid("positions.sequences has a count or offsets but no cu_seqlens");
    }
    if (cp.size != 1 || cp.rank != 0 || cp.split != ContextSplit::kLoadBalanced) {
      return invalid("positions.sequences.context is set but there are no packed sequences (cu_seqlens is null)");
    }
    return Status{};
  }
  if (ps.type != PositionType::kNone) {
    return invalid("positions: give a positions array or packed sequences (cu_seqlens), not both");
  }
  if (sq.count < 1) return invalid("positions.sequences.count must be at least 1");
  if (sq.count == std::numeric_limits<int>::max()) return invalid("positions.sequences.count exceeds 2^31 - 2");
  if (sq.offsets_type != PositionType::kNone && sq.offsets_type != PositionType::kInt32 &&
      sq.offsets_type != PositionType::kInt64) {
    return invalid("positions.sequences.offsets_type is not a rope::PositionType value");
  }
  if ((sq.offsets == nullptr) != (sq.offsets_type == PositionType::kNone)) {
    return invalid("positions.sequences.offsets and offsets_type disagree (both set or both unset)");
  }
  if (cp.size < 1) return invalid("positions.sequences.context.size must be at least 1");
  if (cp.rank < 0 || cp.rank >= cp.size) return invalid("positions.sequences.context.rank must be in [0, context.size)");
  if (cp.split != ContextSplit::kLoadBalanced && cp.split != ContextSplit::kContiguous) {
    return invalid("positions.sequences.context.split is not a rope::ContextSplit value");
  }
  return Status{};
}

/// True when a table of `rows` rows `row_stride` apart stays within kMaxSpan elements.
inline bool table_span_fits(std::int64_t rows, std::int64_t row_stride) {
  return rows <= 1 || row_stride <= kMaxSpan / (rows - 1);
}

}  // namespace detail

/// Largest head_dim and largest q + k head count a launch accepts.
constexpr int kMaxHeadDim = 16384;
constexpr int kMaxHeads = 4096;

/// Checks every argument of a launch; `cudaErrorInvalidValue` and the reason on the first
/// problem found. Nothing is read from device memory.
template <typename T>
Status validate(const RopeParams<T>& p) {
  if (p.num_tokens < 0) return invalid("num_tokens is negative");
  if (p.head_dim <= 0) return invalid("head_dim must be positive");
  if (p.head_dim % 2 != 0) return invalid("head_dim must be even");
  if (p.rotary_dim < 0) return invalid("rotary_dim is negative");
  if (p.rotary_dim % 2 != 0) return invalid("rotary_dim must be even");
  if (p.rotary_dim > p.head_dim) return invalid("rotary_dim is larger than head_dim");
  if (p.style != Style::kHalfSplit && p.style != Style::kInterleaved) {
    return invalid("style is not a rope::Style value");
  }
  // Either tensor may be absent (a q-only or k-only launch: num_heads 0, pointers null).
  if (p.q.num_heads < 0) return invalid("q.num_heads is negative");
  if (p.k.num_heads < 0) return invalid("k.num_heads is negative");
  if (p.q.num_heads == 0 && p.k.num_heads == 0) return invalid("q.num_heads + k.num_heads must be at least 1");
  const bool has_q = p.q.num_heads > 0;
  const bool has_k = p.k.num_heads > 0;
  if (!has_q && (p.q.x != nullptr || p.q.y != nullptr)) {
    return invalid("q pointers are set but q.num_heads is 0");
  }
  if (!has_k && (p.k.x != nullptr || p.k.y != nullptr)) {
    return invalid("k pointers are set but k.num_heads is 0");
  }
  if (p.num_tokens > std::int64_t{0x7fffffff}) return invalid("num_tokens exceeds 2^31 - 1");
  // Bounds far above any model (head_dim <= 512, heads <= 128 today) that keep the kernel's
  // per-token index arithmetic within 32 bits.
  if (p.head_dim > kMaxHeadDim) return invalid("head_dim exceeds 16384");
  if (std::int64_t{p.q.num_heads} + p.k.num_heads > kMaxHeads) return invalid("q.num_heads + k.num_heads exceeds 4096");

  const int rotary_dim = detail::rotated_dim(p);
  const CosSin& cs = p.cos_sin;
  if (cs.kind == CosSin::Kind::kTable) {
    if (cs.table_type != TableType::kFloat32 && cs.table_type != detail::TableTypeOf<T>::value) {
      return invalid("cos/sin table type must be float or the tensor's own type");
    }
    if (cs.rows < 0) return invalid("cos/sin table rows is negative");
    if (cs.row_stride < rotary_dim / 2) return invalid("cos/sin row_stride is smaller than rotary_dim / 2");
    if (!detail::table_span_fits(cs.rows, cs.row_stride)) {
      return invalid("cos/sin rows and row_stride exceed 64-bit offsets");
    }
    if (!detail::looks_up_positions(p.positions) && cs.rows < p.num_tokens) {
      return invalid("cos/sin table has fewer rows than tokens and no positions were given");
    }
  } else if (cs.kind != CosSin::Kind::kComputed) {
    return invalid("cos_sin.kind is not a CosSin::Kind value");
  }
  if (!std::isfinite(cs.attention_scaling) || !(cs.attention_scaling > 0.0f)) {
    return invalid("attention_scaling must be finite and > 0");
  }

  const PositionType pt = p.positions.type;
  if (pt != PositionType::kNone && pt != PositionType::kInt32 && pt != PositionType::kInt64) {
    return invalid("positions.type is not a rope::PositionType value");
  }
  if (pt == PositionType::kNone && p.positions.data != nullptr) {
    return invalid("positions.data is set but positions.type is kNone");
  }
  const Positions& ps = p.positions;
  if (ps.axes < 1 || ps.axes > 3) return invalid("positions.axes must be 1, 2 or 3");
  if (ps.axes > 1) {
    if (pt == PositionType::kNone) return invalid("multi-axis positions need a positions array");
    if (ps.layout != AxisSections::kContiguous && ps.layout != AxisSections::kInterleaved) {
      return invalid("positions.layout is not a rope::AxisSections value");
    }
    std::int64_t sum = 0;
    for (int a = 0; a < 3; ++a) {
      if (ps.sections[a] < 0) return invalid("positions.sections has a negative entry");
      if (a >= ps.axes && ps.sections[a] != 0) return invalid("positions.sections gives frequencies to an axis past positions.axes");
      sum += ps.sections[a];
    }
    if (sum != rotary_dim / 2) return invalid("positions.sections must sum to rotary_dim / 2");
    if (ps.axis_stride < 0) return invalid("positions.axis_stride is negative");
    if (ps.axis_stride > detail::kMaxSpan / (ps.axes - 1)) return invalid("positions.axis_stride exceeds 64-bit offsets");
  }
  const Status sequences = detail::validate_sequences(p.positions);
  if (!sequences.ok()) return sequences;

  // Pointers are only dereferenced when there is a token: empty tensors may carry nullptr.
  if (p.num_tokens == 0) return Status{};

  Status s;
  if (has_q) {
    s = detail::validate_heads(p.q, p.num_tokens, p.head_dim, detail::kQMessages);
    if (!s.ok()) return s;
  }
  if (has_k) {
    s = detail::validate_heads(p.k, p.num_tokens, p.head_dim, detail::kKMessages);
    if (!s.ok()) return s;
  }
  if (has_q && has_k) {
    if (!detail::q_and_k_disjoint(p)) {
      return invalid("k overlaps q (one buffer may hold both only as disjoint parts of one layout with equal strides)");
    }
  }

  if (cs.kind == CosSin::Kind::kTable) {
    if (cs.cos == nullptr || cs.sin == nullptr) return invalid("cos/sin table pointer is null");
    const std::size_t bytes = cs.table_type == TableType::kFloat32 ? 4 : 2;
    if (!detail::is_aligned(cs.cos, bytes) || !detail::is_aligned(cs.sin, bytes)) {
      return invalid("cos/sin table pointer is not aligned to its element type");
    }
    // Row r of cos and row r of sin must not share an element: the same table passed twice, or
    // a fused [cos | sin] cache made for a smaller rotary_dim, would read sin values as cos.
    const std::uintptr_t cos_at = reinterpret_cast<std::uintptr_t>(cs.cos);
    const std::uintptr_t sin_at = reinterpret_cast<std::uintptr_t>(cs.sin);
    if ((cos_at > sin_at ? cos_at - sin_at : sin_at - cos_at) < static_cast<std::uintptr_t>(rotary_dim / 2) * bytes) {
      return invalid("cos and sin rows overlap (one table passed twice, or a fused [cos | sin] cache made for a "
                     "smaller rotary_dim)");
    }
  } else {
    if (cs.inv_freq == nullptr) return invalid("inv_freq is null (computed cos/sin needs rotary_dim / 2 frequencies)");
    if (!detail::is_aligned(cs.inv_freq, sizeof(float))) return invalid("inv_freq is not aligned to float");
  }
  if (p.out_of_range_flag != nullptr && !detail::is_aligned(p.out_of_range_flag, alignof(int))) {
    return invalid("out_of_range_flag is not aligned to int");
  }
  if (pt != PositionType::kNone) {
    if (p.positions.data == nullptr) return invalid("positions.data is null");
    const std::size_t bytes = pt == PositionType::kInt32 ? 4 : 8;
    if (!detail::is_aligned(p.positions.data, bytes)) return invalid("positions.data is not aligned to its type");
  }
  const PackedSequences& sq = p.positions.sequences;
  if (sq.cu_seqlens != nullptr && !detail::is_aligned(sq.cu_seqlens, sizeof(std::int32_t))) {
    return invalid("positions.sequences.cu_seqlens is not aligned to int32");
  }
  if (sq.offsets != nullptr && !detail::is_aligned(sq.offsets, sq.offsets_type == PositionType::kInt32 ? 4 : 8)) {
    return invalid("positions.sequences.offsets is not aligned to its type");
  }
  const detail::SideReads reads = detail::side_reads(p);
  const std::size_t e = sizeof(T);
  const detail::ByteRange qx = detail::view_bytes(detail::ViewGeometry{p.q.x, p.q.num_heads, p.q.x_token_stride, p.q.x_head_stride},
                                                  p.num_tokens, p.head_dim, e);
  const detail::ByteRange qy = detail::view_bytes(detail::ViewGeometry{p.q.y, p.q.num_heads, p.q.y_token_stride, p.q.y_head_stride},
                                                  p.num_tokens, p.head_dim, e);
  const detail::ByteRange kx = detail::view_bytes(detail::ViewGeometry{p.k.x, p.k.num_heads, p.k.x_token_stride, p.k.x_head_stride},
                                                  p.num_tokens, p.head_dim, e);
  const detail::ByteRange ky = detail::view_bytes(detail::ViewGeometry{p.k.y, p.k.num_heads, p.k.y_token_stride, p.k.y_head_stride},
                                                  p.num_tokens, p.head_dim, e);
  return detail::arguments_apart({qy, ky}, {qx, kx},
                                 {reads.positions, reads.cu_seqlens, reads.offsets, reads.cos, reads.sin, reads.inv_freq},
                                 {{detail::bytes_at(p.out_of_range_flag, sizeof(int)), detail::kFlagInArgument}});
}

/// Checks a host copy of packed sequences' `cu_seqlens` (`count + 1` entries) for a launch of
/// `num_tokens` tokens with context parallelism `context`: it starts at 0, never decreases, every
/// sequence's length is a multiple of `2 * context.size` (kLoadBalanced) or `context.size`
/// (kContiguous) when context.size > 1, and it ends at num_tokens * context.size. Launches cannot
/// make this check (the array is in device memory); call it where the array is built.
inline Status check_cu_seqlens(const std::int32_t* cu_seqlens, int count, std::int64_t num_tokens,
                               ContextParallel context = {}) {
  if (cu_seqlens == nullptr) return invalid("cu_seqlens is null");
  if (count < 1) return invalid("cu_seqlens needs at least one sequence (count >= 1)");
  if (context.size < 1) return invalid("context.size must be at least 1");
  if (context.rank < 0 || context.rank >= context.size) return invalid("context.rank must be in [0, context.size)");
  if (cu_seqlens[0] != 0) return invalid("cu_seqlens[0] must be 0");
  const std::int64_t multiple = context.size == 1 ? 1
                                : context.split == ContextSplit::kContiguous ? context.size
                                                                             : 2 * std::int64_t{context.size};
  for (int s = 0; s < count; ++s) {
    const std::int64_t length = std::int64_t{cu_seqlens[s + 1]} - cu_seqlens[s];
    if (length < 0) return invalid("cu_seqlens decreases (a sequence of negative length)");
    if (length % multiple != 0) {
      return invalid(context.split == ContextSplit::kContiguous
                         ? "a sequence's length is not a multiple of context.size (contiguous context parallelism)"
                         : "a sequence's length is not a multiple of 2 * context.size (load-balanced context parallelism)");
    }
  }
  if (cu_seqlens[count] != num_tokens * context.size) {
    return invalid("cu_seqlens' last entry must be the token count (times context.size with context parallelism)");
  }
  return Status{};
}

}  // namespace rope
