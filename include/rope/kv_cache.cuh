// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// RoPE + KV-cache append in one launch: rotate q and k as `rope_forward` does, and write the
/// rotated k and the untouched v of every token into a paged KV cache (of the tensor's type or
/// FP8 E4M3) at its slot. One pass over memory instead of RoPE followed by a cache-write kernel.

#include <cstdint>

#include <cuda_runtime.h>

#include <rope/detail/device/cache_append.cuh>
#include <rope/kv_cache_types.cuh>
#include <rope/kv_cache_validate.cuh>
#include <rope/launch.cuh>
#include <rope/status.cuh>
#include <rope/types.cuh>

namespace rope {

/// Applies RoPE to q (if given) and k as `rope_forward(params)` does, and appends: for each token t
/// with a slot s = slots[t] in [0, num_blocks * block_size), head h of the rotated k and of v go
/// to row s % block_size of block s / block_size of k_cache and v_cache (FP8 caches: quantized
/// with k_scale / v_scale). Partial rotary: k's tail passes through into the cache unrotated.
///
/// A negative slot writes no cache row (padding); a slot past the cache writes none and sets
/// `append.slot_out_of_range_flag`. `params.k.y` may be null: the rotated k then goes only to
/// the cache. With an FP8 cache, `append.q_fp8` also stores the rotated q as FP8 (`params.q.y`
/// may then be null). `params.out_of_range_flag` works as in `rope_forward`: a token whose position is
/// out of the table writes nothing at all, cache rows included.
///
/// Returns `cudaErrorInvalidValue` without launching (and without writing anything) when an
/// argument is bad; `rope::last_error_message()` then says which. Zero tokens: `cudaSuccess`,
/// no launch. Asynchronous on `stream`; no allocation, no synchronization; `options` as for
/// rope_forward.
template <typename T, typename C>
cudaError_t rope_forward_append(const RopeParams<T>& params, const KvCacheAppend<T, C>& append,
                                cudaStream_t stream = nullptr, const LaunchOptions& options = {}) {
  static_assert(detail::kSupportedType<T>, "rope supports float, __half and __nv_bfloat16 tensors");
  const Status status = validate(params, append);
  if (!status.ok()) return detail::record(status);
  if (params.num_tokens == 0) return detail::record(cudaSuccess);
  return detail::launch_validated<detail::DefaultPolicy>(detail::resolve_outputs(params, append), false,
                                                        detail::make_cache_append(params, append), stream, options);
}

}  // namespace rope
