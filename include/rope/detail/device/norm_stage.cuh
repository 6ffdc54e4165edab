// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The QK-RMSNorm stage of the per-token body: which norm a kernel instance does (a template
/// parameter: none, or RmsNorm with weights of type W), how a head's lanes form a group, and the
/// group's sum of partial sums (a warp shuffle on the GPU; the host tests supply their own).
///
/// The lane rule of norm launches, in one place: the lanes of one head are a group of
/// `norm_group_width(columns)` consecutive lanes, a power of two of at most 32, starting at a
/// multiple of that width. The launch gives every token a multiple of the width as its lane count,
/// so a group never straddles a warp. Lanes past the head's columns (rotary_dim / 2 / kVec not a
/// power of two) join the sums with zero; a head wider than 32 columns has each lane walk columns.

#include <cmath>

#include <rope/config.cuh>
#include <rope/qk_norm_types.cuh>

namespace rope {
namespace detail {

/// The plain launch: no norm. Empty, so every use of it compiles away.
struct NoNorm {
  static constexpr bool kEnabled = false;
  using Weight = float;  // names a type for the (unused) weight chunks
};

/// The kernel-side form of a QkNorm (resolved once by the launcher): the weighting as the offset
/// added to every weight (0 for w, 1 for 1 + w), and 1 / head_dim, so that a head's mean square
/// is a product rather than a division per head.
template <typename W>
struct RmsNorm {
  static constexpr bool kEnabled = true;
  using Weight = W;
  const W* q_weight;
  const W* k_weight;
  float eps;
  float weight_offset;
  float inv_head_dim;
};

template <typename T, typename W>
RmsNorm<W> make_rms_norm(const QkNorm<T, W>& n, int head_dim) {
  return RmsNorm<W>{n.q_weight, n.k_weight, n.eps, n.weighting == NormWeighting::kOnePlus ? 1.0f : 0.0f,
                    1.0f / static_cast<float>(head_dim)};
}

/// Lanes per head in a norm launch: the columns rounded up to a power of two, at most a warp.
ROPE_HOST_DEVICE int norm_group_width(int columns) {
  int width = 1;
  while (width < columns && width < 32) width *= 2;
  return width;
}

/// 1 / sqrt(v): the hardware's on the GPU (as torch.rsqrt), the exact one on the host.
ROPE_HOST_DEVICE float reciprocal_sqrt(float v) {
#if defined(__CUDA_ARCH__)
  return rsqrtf(v);
#else
  return 1.0f / std::sqrt(v);
#endif
}

/// No group: plain launches never sum across lanes.
struct NoLaneGroup {
  template <int N>
  ROPE_HOST_DEVICE void sum(float (&)[N], int) const {}
};

/// The GPU's group: butterfly shuffles over the `width` lanes that share this lane's aligned
/// block of the warp; only those lanes are in the mask, so other tokens' lanes in the warp (or
/// lanes of a token past the end, which never call this) do not take part.
struct WarpLaneGroup {
  unsigned warp_lane;  ///< this thread's lane in its warp

  template <int N>
  ROPE_HOST_DEVICE void sum(float (&v)[N], int width) const {
#if defined(__CUDA_ARCH__)
    const unsigned base = warp_lane & ~static_cast<unsigned>(width - 1);
    const unsigned mask = width == 32 ? 0xffffffffu : ((1u << width) - 1u) << base;
    for (int offset = width / 2; offset > 0; offset /= 2) {
ROPE_UNROLL
      for (int i = 0; i < N; ++i) v[i] += __shfl_xor_sync(mask, v[i], offset);
    }
#else
    (void)v;
    (void)width;  // host runs supply a group of their own (tests/host_run.hpp)
#endif
  }
};

}  // namespace detail
}  // namespace rope
