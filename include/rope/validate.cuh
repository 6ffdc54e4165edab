// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Every check a launch makes before it touches the GPU. Launchers call `validate`;
/// callers may call it too, to learn in advance whether a configuration is accepted.

#include <cmath>
#include <cstdint>
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
/// (negative strides are left to rows_disjoint, which rejects them).
inline bool span_fits(std::int64_t tokens, int heads, std::int64_t token_stride, std::int64_t head_stride) {
  auto fits = [](std::int64_t n, std::int64_t stride) { return n <= 1 || stride <= 0 || n - 1 <= kMaxSpan / stride; };
  return fits(tokens, token_stride) && fits(heads, head_stride);
}

/// True when the rows of a [tokens, heads, head_dim] view never share an element: with the two
/// strides sorted, the inner one must clear a head and the outer one must clear all inner rows.
/// Extents of 1 impose nothing (their stride is never used).
inline bool rows_disjoint(std::int64_t tokens, int heads, int head_dim, std::int64_t token_stride,
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

/// Byte range [first, last) that a view touches; used for the x/y overlap check.
template <typename T>
void byte_extent(const T* base, std::int64_t tokens, int heads, int head_dim, std::int64_t ts,
                 std::int64_t hs, std::uintptr_t& first, std::uintptr_t& last) {
  const std::int64_t span = (tokens - 1) * ts + (heads - 1) * std::int64_t{hs} + head_dim;
  first = reinterpret_cast<std::uintptr_t>(base);
  last = first + static_cast<std::uintptr_t>(span) * sizeof(T);
}

template <typename T>
Status validate_heads(const HeadsTensor<T>& t, std::int64_t tokens, int head_dim,
                      const char* (&why)[6]) {
  if (t.x == nullptr) return invalid(why[0]);
  if (t.y == nullptr) return invalid(why[1]);
  if (!is_aligned(t.x, sizeof(T)) || !is_aligned(t.y, sizeof(T))) return invalid(why[2]);
  if (!span_fits(tokens, t.num_heads, t.x_token_stride, t.x_head_stride) ||
      !span_fits(tokens, t.num_heads, t.y_token_stride, t.y_head_stride)) {
    return invalid(why[5]);
  }
  if (!rows_disjoint(tokens, t.num_heads, head_dim, t.x_token_stride, t.x_head_stride) ||
      !rows_disjoint(tokens, t.num_heads, head_dim, t.y_token_stride, t.y_head_stride)) {
    return invalid(why[3]);
  }
  std::uintptr_t x0, x1, y0, y1;
  byte_extent(t.x, tokens, t.num_heads, head_dim, t.x_token_stride, t.x_head_stride, x0, x1);
  byte_extent(t.y, tokens, t.num_heads, head_dim, t.y_token_stride, t.y_head_stride, y0, y1);
  const bool overlap = x0 < y1 && y0 < x1;
  // In place: the same pointer and the same strides, except those of extents of 1 (never used;
  // frameworks give size-1 dimensions arbitrary strides).
  const bool same_view = static_cast<const void*>(t.x) == static_cast<const void*>(t.y) &&
                         (tokens <= 1 || t.x_token_stride == t.y_token_stride) &&
                         (t.num_heads <= 1 || t.x_head_stride == t.y_head_stride);
  if (overlap && !same_view) return invalid(why[4]);
  return Status{};
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
  if (p.q.num_heads <= 0) return invalid("q.num_heads must be at least 1");
  if (p.k.num_heads < 0) return invalid("k.num_heads is negative");
  const bool has_k = p.k.num_heads > 0;
  if (!has_k && (p.k.x != nullptr || p.k.y != nullptr)) {
    return invalid("k pointers are set but k.num_heads is 0");
  }
  if (p.num_tokens > std::int64_t{0x7fffffff}) return invalid("num_tokens exceeds 2^31 - 1");
  // Bounds far above any model (head_dim <= 512, heads <= 128 today) that keep the kernel's
  // per-token index arithmetic within 32 bits.
  if (p.head_dim > kMaxHeadDim) return invalid("head_dim exceeds 16384");
  if (std::int64_t{p.q.num_heads} + p.k.num_heads > kMaxHeads) return invalid("q.num_heads + k.num_heads exceeds 4096");

  const int rotary_dim = p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
  const CosSin& cs = p.cos_sin;
  if (cs.kind == CosSin::Kind::kTable) {
    if (cs.table_type != TableType::kFloat32 && cs.table_type != detail::TableTypeOf<T>::value) {
      return invalid("cos/sin table type must be float or the tensor's own type");
    }
    if (cs.rows < 0) return invalid("cos/sin table rows is negative");
    if (cs.row_stride < rotary_dim / 2) return invalid("cos/sin row_stride is smaller than rotary_dim / 2");
    if (p.positions.type == PositionType::kNone && cs.rows < p.num_tokens) {
      return invalid("cos/sin table has fewer rows than tokens and no positions were given");
    }
  } else if (cs.kind == CosSin::Kind::kComputed) {
    if (!std::isfinite(cs.attention_scaling)) return invalid("attention_scaling is not finite");
  } else {
    return invalid("cos_sin.kind is not a CosSin::Kind value");
  }

  const PositionType pt = p.positions.type;
  if (pt != PositionType::kNone && pt != PositionType::kInt32 && pt != PositionType::kInt64) {
    return invalid("positions.type is not a rope::PositionType value");
  }
  if (pt == PositionType::kNone && p.positions.data != nullptr) {
    return invalid("positions.data is set but positions.type is kNone");
  }

  // Pointers are only dereferenced when there is a token: empty tensors may carry nullptr.
  if (p.num_tokens == 0) return Status{};

  const char* q_why[6] = {"q.x is null", "q.y is null", "q.x or q.y is not aligned to its element type",
                          "q strides make rows overlap (strides must be >= 0 and rows disjoint)",
                          "q.y partially overlaps q.x (in place needs y == x and equal strides)",
                          "q strides and sizes exceed 64-bit offsets"};
  Status s = detail::validate_heads(p.q, p.num_tokens, p.head_dim, q_why);
  if (!s.ok()) return s;
  if (has_k) {
    const char* k_why[6] = {"k.x is null", "k.y is null", "k.x or k.y is not aligned to its element type",
                            "k strides make rows overlap (strides must be >= 0 and rows disjoint)",
                            "k.y partially overlaps k.x (in place needs y == x and equal strides)",
                            "k strides and sizes exceed 64-bit offsets"};
    s = detail::validate_heads(p.k, p.num_tokens, p.head_dim, k_why);
    if (!s.ok()) return s;
  }

  if (cs.kind == CosSin::Kind::kTable) {
    if (cs.cos == nullptr || cs.sin == nullptr) return invalid("cos/sin table pointer is null");
    const std::size_t bytes = cs.table_type == TableType::kFloat32 ? 4 : 2;
    if (!detail::is_aligned(cs.cos, bytes) || !detail::is_aligned(cs.sin, bytes)) {
      return invalid("cos/sin table pointer is not aligned to its element type");
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
  return Status{};
}

}  // namespace rope
