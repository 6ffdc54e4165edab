// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The attention prologue in one launch: QK-RMSNorm, RoPE or M-RoPE, the paged k/v write and q
/// to FP8, any subset of the three around the rotation (rope/prologue_types.cuh says what each
/// stage does).

#include <cuda_runtime.h>

#include <rope/detail/device/norm_stage.cuh>
#include <rope/detail/host/prologue_args.cuh>
#include <rope/kv_cache_validate.cuh>
#include <rope/launch.cuh>
#include <rope/prologue_types.cuh>
#include <rope/prologue_validate.cuh>
#include <rope/status.cuh>
#include <rope/types.cuh>

namespace rope {
namespace detail {

/// Launches a validated, non-empty prologue: the norm stage (RmsNorm or NoNorm) and the append
/// stage (caches and q_fp8, q_fp8 alone, or none) as the kernel's template parameters.
template <typename T, typename C, typename W, typename Norm>
cudaError_t launch_prologue(const RopeParams<T>& params, const AttentionPrologue<T, C, W>& prologue, const Norm& norm,
                            cudaStream_t stream, const LaunchOptions& options) {
  using Policy = std::conditional_t<Norm::kEnabled, NormPolicy, DefaultPolicy>;
  if (prologue.cache == nullptr && prologue.q_fp8.data == nullptr) {
    return launch_validated<Policy>(params, false, NoAppend{}, stream, options, norm);
  }
  const KvCacheAppend<T, C> a = prologue_append(prologue);
  const RopeParams<T> resolved = resolve_outputs(params, a);
  if (prologue.cache != nullptr) {
    return launch_validated<Policy>(resolved, false, make_prologue_append<true>(params, a), stream, options, norm);
  }
  return launch_validated<Policy>(resolved, false, make_prologue_append<false>(params, a), stream, options, norm);
}

}  // namespace detail

/// The attention prologue: rotates q and k (RopeParams: RoPE or M-RoPE, table or computed,
/// full or partial, either pair style) and, in the same pass, any subset of: per-head RMSNorm of
/// q and k before the rotation, the rotated k and the untouched v written to paged caches (any
/// cache type the append takes, FP8 scales), and the rotated q quantized to FP8. Results are
/// those of the separate launches in sequence (norm, RoPE, cache write, q quantization).
///
/// Returns `cudaErrorInvalidValue` without launching (and without writing anything) when an
/// argument is bad; `rope::last_error_message()` then says which. Zero tokens: `cudaSuccess`,
/// no launch. Asynchronous on `stream`; `options` as for rope_forward.
template <typename T, typename C, typename W>
cudaError_t rope_attention_prologue(const RopeParams<T>& params, const AttentionPrologue<T, C, W>& prologue,
                                    cudaStream_t stream = nullptr, const LaunchOptions& options = {}) {
  static_assert(detail::kSupportedType<T>, "rope supports float, __half and __nv_bfloat16 tensors");
  const Status status = validate(params, prologue);
  if (!status.ok()) return detail::record(status);
  if (params.num_tokens == 0) return detail::record(cudaSuccess);
  if (prologue.norm != nullptr) {
    return detail::launch_prologue(params, prologue, detail::make_rms_norm(*prologue.norm, params.head_dim), stream,
                                   options);
  }
  return detail::launch_prologue(params, prologue, detail::NoNorm{}, stream, options);
}

}  // namespace rope
