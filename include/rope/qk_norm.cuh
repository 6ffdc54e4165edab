// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// QK-RMSNorm + RoPE in one launch: per-head RMSNorm of q and of k (Qwen3's q_norm/k_norm,
/// Gemma 3's (1 + w) variant), then the rotation, in one pass over memory instead of a norm
/// kernel that reads and writes q and k followed by RoPE that reads and writes them again.

#include <cuda_runtime.h>

#include <rope/detail/device/norm_stage.cuh>
#include <rope/launch.cuh>
#include <rope/qk_norm_types.cuh>
#include <rope/qk_norm_validate.cuh>
#include <rope/status.cuh>
#include <rope/types.cuh>

namespace rope {

/// Normalizes every head of q (if given) and of k (if given) and rotates it as
/// `rope_forward(params)` does: for each head x of a token, over all head_dim elements,
///
///     y = rotate(x * rsqrt(mean(x^2) + eps) * w)      (NormWeighting::kMultiply, Qwen3)
///     y = rotate(x * rsqrt(mean(x^2) + eps) * (1 + w)) (NormWeighting::kOnePlus, Gemma 3)
///
/// with w = norm.q_weight for q's heads and norm.k_weight for k's. All in fp32 (the sum of
/// squares too), rounded to T once. Partial rotary: the tail [rotary_dim, head_dim) counts in the
/// mean and is normalized and weighted, but not rotated. In place (y == x) or not; views as
/// `rope_forward` takes them (fused-QKV slices, GQA, q-only, k-only); table or computed cos/sin;
/// a token whose position is out of the table writes nothing and sets `params.out_of_range_flag`.
///
/// Forward only: there is no backward of the fused operation (training takes the norm's
/// gradient separately).
///
/// Returns `cudaErrorInvalidValue` without launching (and without writing anything) when an
/// argument is bad; `rope::last_error_message()` then says which. Zero tokens: `cudaSuccess`,
/// no launch. Asynchronous on `stream`; no allocation, no synchronization; `options` as for
/// rope_forward.
template <typename T, typename W>
cudaError_t rope_forward_qk_norm(const RopeParams<T>& params, const QkNorm<T, W>& norm, cudaStream_t stream = nullptr,
                                 const LaunchOptions& options = {}) {
  static_assert(detail::kSupportedType<T>, "rope supports float, __half and __nv_bfloat16 tensors");
  const Status status = validate(params, norm);
  if (!status.ok()) return detail::record(status);
  if (params.num_tokens == 0) return detail::record(cudaSuccess);
  return detail::launch_validated<detail::NormPolicy>(params, false, detail::NoAppend{}, stream, options,
                                                        detail::make_rms_norm(norm, params.head_dim));
}

}  // namespace rope
