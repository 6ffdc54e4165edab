// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The __global__ kernel: a thin shell mapping threads to (token, lane) for the per-token body.

#include <cstdint>

#include <rope/config.cuh>
#include <rope/detail/policy.cuh>
#include <rope/detail/token_body.cuh>
#include <rope/types.cuh>

namespace rope {
namespace detail {

/// Block (lanes, tokens): threadIdx.y picks the block's token, threadIdx.x the lane within it.
/// One token per block row, all heads of that token in the row. `inverse` selects the backward
/// rotation (by -theta); it is uniform across the launch, so the branch costs nothing.
/// `Policy` (a RopePolicy) sets the launch bounds; kHeadBatch is the policy's batch for this kVec.
/// `Append` is the append mode: NoAppend (plain RoPE; an empty parameter) or a CacheAppend.
/// `Norm` is the norm mode: NoNorm (an empty parameter) or an RmsNorm, whose lanes sum across
/// their group with warp shuffles. `kAxes`: how pairs find their positions (one axis or M-RoPE).
template <typename T, typename Policy, Style kStyle, int kVec, int kHeadBatch, AxisLookup kAxes,
          typename Append = NoAppend, typename Norm = NoNorm>
ROPE_KERNEL void __launch_bounds__(Policy::kMaxBlockThreads, Policy::kMinBlocksPerSm)
    rotate_tokens_kernel(const __grid_constant__ RopeParams<T> params, bool inverse,
                         const __grid_constant__ Append append, const __grid_constant__ Norm norm) {
  const std::int64_t token = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (token < params.num_tokens) {
    if constexpr (Norm::kEnabled) {
      const WarpLaneGroup group{(threadIdx.y * blockDim.x + threadIdx.x) % 32u};
      rotate_token<T, kStyle, kVec, kHeadBatch, kAxes, Append, Norm, WarpLaneGroup>(
          params, inverse, token, static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x), append, norm, group);
    } else {
      rotate_token<T, kStyle, kVec, kHeadBatch, kAxes, Append>(params, inverse, token, static_cast<int>(threadIdx.x),
                                                                    static_cast<int>(blockDim.x), append);
    }
  }
}

}  // namespace detail
}  // namespace rope
