// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The per-token work: everything one token of one launch does, as a __host__ __device__
/// function of (params, token, lane, lane count). The kernel calls it with its thread index;
/// host tests call it in a loop, so all indexing, vector and tail logic is tested without a GPU.

#include <cstdint>

#include <rope/config.cuh>
#include <rope/detail/angle.cuh>
#include <rope/detail/vector.cuh>
#include <rope/types.cuh>

namespace rope {
namespace detail {

/// cos and sin of pairs [first_pair, first_pair + kVec) at `position`, from the table or
/// computed. `inverse` negates sin: rotation by -theta, the gradient of the forward rotation.
template <int kVec, typename T>
ROPE_HOST_DEVICE void load_cos_sin(const CosSin& cs, std::int64_t position, int first_pair,
                                   bool inverse, float (&c)[kVec], float (&s)[kVec]) {
  if (cs.kind == CosSin::Kind::kComputed) {
    float inv_freq[kVec];
    load_floats<kVec>(cs.inv_freq + first_pair, inv_freq);
#pragma unroll
    for (int i = 0; i < kVec; ++i) rotary_sincos(position, inv_freq[i], cs.attention_scaling, s[i], c[i]);
  } else {
    const std::int64_t offset = position * cs.row_stride + first_pair;
    if (cs.table_type == TableType::kFloat32) {
      load_floats<kVec>(static_cast<const float*>(cs.cos) + offset, c);
      load_floats<kVec>(static_cast<const float*>(cs.sin) + offset, s);
    } else {  // validate() admits only float or T
      load_floats<kVec>(static_cast<const T*>(cs.cos) + offset, c);
      load_floats<kVec>(static_cast<const T*>(cs.sin) + offset, s);
    }
  }
  if (inverse) {
#pragma unroll
    for (int i = 0; i < kVec; ++i) s[i] = -s[i];
  }
}

/// Rotates pairs [first_pair, first_pair + kVec) of one head from x into y.
template <Style kStyle, int kVec, typename T>
ROPE_HOST_DEVICE void rotate_pairs(const T* x, T* y, int half, int first_pair, const float (&c)[kVec],
                                   const float (&s)[kVec]) {
  if (kStyle == Style::kHalfSplit) {
    // Pair i is (x[i], x[i + half]): one vector from each half.
    float lo[kVec], hi[kVec];
    load_floats<kVec>(x + first_pair, lo);
    load_floats<kVec>(x + half + first_pair, hi);
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const float x1 = lo[i], x2 = hi[i];
      lo[i] = x1 * c[i] - x2 * s[i];
      hi[i] = x1 * s[i] + x2 * c[i];
    }
    store_floats<kVec>(y + first_pair, lo);
    store_floats<kVec>(y + half + first_pair, hi);
  } else {
    // Pair i is (x[2i], x[2i + 1]): kVec pairs are 2 * kVec consecutive elements. The scalar
    // path (kVec == 1) promises no alignment beyond the element, so it loads one at a time.
    constexpr int kChunk = kVec == 1 ? 1 : Access<T, 2 * kVec>::value;
    float z[2 * kVec];
    load_floats<2 * kVec, T, kChunk>(x + 2 * first_pair, z);
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const float x1 = z[2 * i], x2 = z[2 * i + 1];
      z[2 * i] = x1 * c[i] - x2 * s[i];
      z[2 * i + 1] = x1 * s[i] + x2 * c[i];
    }
    store_floats<2 * kVec, T, kChunk>(y + 2 * first_pair, z);
  }
}

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

/// All work of one token, shared by `lanes` cooperating threads (this one is `lane`).
///
/// The rotary part of a head is split into columns of kVec pairs. Lane `lane` takes column
/// `lane % columns` for a group of heads (`lane / columns`, then every `groups`-th head), so it
/// fetches or computes that column's cos/sin once and reuses them for each of its q and k
/// heads. With fewer lanes than columns each lane walks several columns.
template <typename T, Style kStyle, int kVec>
ROPE_HOST_DEVICE void rotate_token(const RopeParams<T>& p, bool inverse, std::int64_t token, int lane,
                                   int lanes) {
  std::int64_t position = token;
  if (p.positions.type == PositionType::kInt32) {
    position = static_cast<const std::int32_t*>(p.positions.data)[token];
  } else if (p.positions.type == PositionType::kInt64) {
    position = static_cast<const std::int64_t*>(p.positions.data)[token];
  }
  if (p.cos_sin.kind == CosSin::Kind::kTable && (position < 0 || position >= p.cos_sin.rows)) {
    // Never read outside the table: leave the token unwritten and tell the caller.
    if (p.out_of_range_flag != nullptr) *p.out_of_range_flag = 1;
    return;
  }

  const int rotary_dim = p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
  const int half = rotary_dim / 2;
  const int heads = p.q.num_heads + p.k.num_heads;
  const int columns = half / kVec;
  const int groups = lanes >= columns ? lanes / columns : 1;
  for (int item = lane; item < columns * groups; item += lanes) {
    const int column = item % columns;
    const int first_pair = column * kVec;
    float c[kVec], s[kVec];
    load_cos_sin<kVec, T>(p.cos_sin, position, first_pair, inverse, c, s);
    for (int h = item / columns; h < heads; h += groups) {
      const HeadPointers<T> ptr = head_pointers(p, token, h);
      rotate_pairs<kStyle, kVec>(ptr.x, ptr.y, half, first_pair, c, s);
    }
  }

  // Partial rotary: elements [rotary_dim, head_dim) pass through (nothing to do in place).
  const int tail_columns = (p.head_dim - rotary_dim) / kVec;
  for (int item = lane; item < tail_columns * heads; item += lanes) {
    const HeadPointers<T> ptr = head_pointers(p, token, item / tail_columns);
    if (ptr.x == ptr.y) continue;
    const int offset = rotary_dim + (item % tail_columns) * kVec;
    copy_elements<kVec>(ptr.x + offset, ptr.y + offset);
  }
}

}  // namespace detail
}  // namespace rope
