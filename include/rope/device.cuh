// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Device API: RoPE inside your own kernel. An attention kernel can rotate q and k while it
/// loads them, a QKV-projection epilogue can rotate before it stores, with the same accuracy and
/// the same access pattern as `rope_forward`, because these are the functions its kernel runs:
///
/// - `rotary_sincos`, `rotate_pair`, `rotate_half_split`, `rotate_interleaved`
///   (from `<rope/device/rotation.cuh>`): the angle, its cos and sin, and the rotation of pairs
///   held in registers;
/// - `pair_cos_sin`: cos and sin of a run of pairs at a position, from a table or computed;
/// - `rotate_head`: a group of threads loads, rotates and stores one head with vector accesses
///   (the launcher's kernel for launches of few tokens or few heads is a grid of such groups);
/// - `wait_for_prior_grids`, `launch_dependent_grids` (from `<rope/device/grid_dependency.cuh>`):
///   programmatic dependent launch, for kernels chained with rope's.
///
/// Everything here is `__host__ __device__`: the same code runs in host tests.

#include <cstdint>

#include <rope/config.cuh>
#include <rope/detail/access_alignment.cuh>
#include <rope/detail/device/token_body.cuh>
#include <rope/device/grid_dependency.cuh>
#include <rope/device/rotation.cuh>
#include <rope/types.cuh>

namespace rope {
namespace device {

/// Rotation by +theta (the forward pass) or by -theta (its gradient).
enum class Rotation : int { kForward, kInverse };

/// The threads that share one head: this thread is `rank` of `size` (a warp: lane and 32; or a
/// group of 8 lanes of one). Each thread touches only its own columns of the head, so the group
/// needs no synchronization and may rotate in place.
struct HeadGroup {
  int rank;
  int size;
};

/// Elements per access of `rotate_head<kVec, style, T>`: x and y must be aligned to this many
/// elements (16 bytes at most). The launcher picks its vector width by the same rule.
template <typename T>
constexpr int head_access_alignment(Style style, int vec) {
  return detail::access_alignment<T>(style, vec);
}

/// cos and sin of pairs [first_pair, first_pair + kVec) at `position`, times the source's
/// attention factor: read from `cs`'s table row `position` (a table of float or of T; the row
/// read kVec entries at a time, so the cos and sin pointers and the row stride must be multiples
/// of kVec entries up to 16 bytes) or computed from its frequencies (`computed_cos_sin`).
/// `position` must be a row of the table; this function does not check it.
template <int kVec, typename T = float>
ROPE_HOST_DEVICE void pair_cos_sin(const CosSin& cs, std::int64_t position, int first_pair, float (&c)[kVec],
                                   float (&s)[kVec], Rotation rotation = Rotation::kForward) {
  detail::load_cos_sin<kVec, T>(cs, position, first_pair, rotation == Rotation::kInverse, c, s);
}

/// One head of `head_dim` elements of T at `x`, rotated over its first `rotary_dim` elements
/// (pairs as `kStyle` says) by the angles of `position`, stored to `y` (may equal x); elements
/// past rotary_dim are copied (nothing to do in place). The group's threads take the head's
/// columns of kVec pairs in turn, so each does about rotary_dim / (2 * kVec * size) vector
/// loads and stores per half: with bf16 and kVec = 8, a 128-dim head is 8 columns, one per
/// thread of a group of 8.
///
/// Preconditions (not checked on the device): rotary_dim even and rotary_dim / 2 and
/// head_dim - rotary_dim multiples of kVec; x and y aligned to `head_access_alignment<T>(kStyle,
/// kVec)` elements; cos/sin as for `pair_cos_sin`.
template <int kVec, Style kStyle, typename T>
ROPE_HOST_DEVICE void rotate_head(const HeadGroup& group, const T* x, T* y, int head_dim, int rotary_dim,
                                  const CosSin& cs, std::int64_t position, Rotation rotation = Rotation::kForward) {
  const int half = rotary_dim / 2;
  const int columns = half / kVec;
  for (int column = group.rank; column < columns; column += group.size) {
    const int first_pair = column * kVec;
    detail::PairChunk<T, kStyle, kVec> chunk;
    chunk.load(x, half, first_pair);
    float c[kVec], s[kVec];
    pair_cos_sin<kVec, T>(cs, position, first_pair, c, s, rotation);
    chunk.rotate_store(y, half, first_pair, c, s);
  }
  if (x == y) return;
  const int tail_columns = (head_dim - rotary_dim) / kVec;
  for (int column = group.rank; column < tail_columns; column += group.size) {
    const int offset = rotary_dim + column * kVec;
    detail::copy_elements<kVec>(x + offset, y + offset);
  }
}

}  // namespace device
}  // namespace rope
