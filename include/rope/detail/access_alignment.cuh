// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The alignment the body's vector accesses need: shared by the host planning (which width a
/// launch may take) and the device API (what a caller's own kernel must guarantee).

#include <rope/types.cuh>

namespace rope {
namespace detail {

/// Elements per access, and so the alignment in elements, that the body uses on a strided view of
/// element type E when it moves `vec` pairs at a time: vec elements (half-split halves, the
/// pass-through tail, v) or 2 * vec (interleaved pairs), at most 16 bytes. The body's accesses
/// are these widths at offsets that are multiples of them, so a view whose base pointer and
/// strides are multiples of this many elements is accessed aligned.
template <typename E>
constexpr int access_alignment(Style style, int vec) {
  const int widest = 16 / static_cast<int>(sizeof(E));
  const int span = style == Style::kInterleaved ? 2 * vec : vec;
  return span < widest ? span : widest;
}

}  // namespace detail
}  // namespace rope
