// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Quotients and remainders of non-negative indices by a count known only at run time (a head's
/// columns, a norm group's width, a cache block's rows). In the shapes models use those counts
/// are powers of two (a 128-dim head is 8 or 16 columns, vLLM's blocks are 16 rows), where the
/// quotient is a shift and the remainder a mask; any other count takes the hardware's division
/// sequence (~25 instructions for 32 bits). The count is the same for every thread of a launch,
/// so the branch between the two is uniform.

#include <rope/config.cuh>

namespace rope {
namespace detail {

/// log2(v) when v is a power of two, else -1.
ROPE_HOST_DEVICE int power_of_two_log2(int v) {
  if (v <= 0 || (v & (v - 1)) != 0) return -1;
#if defined(__CUDA_ARCH__)
  return __ffs(v) - 1;
#else
  int log2 = 0;
  while ((1 << log2) != v) ++log2;
  return log2;
#endif
}

/// Divides non-negative integers by `value` (> 0 wherever a quotient is asked for).
struct Divisor {
  int value;
  int shift;  ///< log2(value) for a power of two, else -1

  ROPE_HOST_DEVICE explicit Divisor(int v) : value(v), shift(power_of_two_log2(v)) {}

  template <typename I>
  ROPE_HOST_DEVICE I quotient(I x) const {
    return shift >= 0 ? static_cast<I>(x >> shift) : static_cast<I>(x / value);
  }
  template <typename I>
  ROPE_HOST_DEVICE I remainder(I x) const {
    return shift >= 0 ? static_cast<I>(x & static_cast<I>(value - 1)) : static_cast<I>(x % value);
  }
};

}  // namespace detail
}  // namespace rope
