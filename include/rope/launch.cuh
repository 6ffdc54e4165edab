// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Host launchers: validate, pick the template instance, launch on the caller's stream.
/// They never throw, never allocate and never synchronize, so they can be captured in a CUDA graph.

#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include <rope/detail/host/dispatch.cuh>
#include <rope/detail/host/gpu_occupancy.cuh>
#include <rope/detail/host/kernel_launch.cuh>
#include <rope/detail/host/launch_plan.cuh>
#include <rope/detail/device/kernel.cuh>
#include <rope/launch_options.cuh>
#include <rope/status.cuh>
#include <rope/types.cuh>
#include <rope/validate.cuh>

namespace rope {
namespace detail {

template <typename T>
constexpr bool kSupportedType = std::is_same<T, float>::value || std::is_same<T, __half>::value ||
                                std::is_same<T, __nv_bfloat16>::value;

/// Launches `plan` (plan_launch) of a validated, non-empty launch on `stream`; returns the
/// launch's own error.
template <typename Policy, typename T, typename Append, typename Norm>
cudaError_t launch_plan(const LaunchPlan& plan, const RopeParams<T>& params, bool inverse, const Append& append,
                        const Norm& norm, cudaStream_t stream, const LaunchOptions& options) {
#if defined(ROPE_OBSERVE_LAUNCH_PLANS)
  observed_launch_plan() = plan;
#endif
  cudaError_t error = cudaErrorInvalidConfiguration;  // the plan names no instance of this launch
  with_instance<Policy, T, Norm>(plan.instance, [&](auto style, auto vec, auto head_batch, auto axes) {
    constexpr Style kStyle = decltype(style)::value;
    constexpr int kVec = decltype(vec)::value;
    if (plan.kernel == KernelKind::kHeadGroups) {
      // Head groups move at most 16 bytes per access: the plan's width is one of the narrower ones.
      if constexpr (!Append::kEnabled && !Norm::kEnabled && decltype(axes)::value == AxisLookup::kSingleAxis &&
                    kVec == head_group_vec<T>(kVec)) {
        error = launch_kernel(rotate_head_groups_kernel<T, kStyle, kVec>, plan.grid(), plan.block(),
                              plan.shared_bytes, stream, options, params,
                              inverse ? device::Rotation::kInverse : device::Rotation::kForward);
      }
      return;
    }
    error = launch_kernel(
        rotate_tokens_kernel<T, Policy, kStyle, kVec, decltype(head_batch)::value, decltype(axes)::value, Append, Norm>,
        plan.grid(), plan.block(), plan.shared_bytes, stream, options, params, inverse, append, norm);
  });
  return error;
}

/// Plans (plan_launch, with what the current GPU holds) and launches a validated, non-empty launch.
template <typename Policy, typename T, typename Append, typename Norm = NoNorm>
cudaError_t launch_validated(const RopeParams<T>& params, bool inverse, const Append& append, cudaStream_t stream,
                             const LaunchOptions& options, const Norm& norm = Norm{}) {
  const LaunchPlan plan = plan_launch<Policy>(params, append, norm, GpuOccupancy<Policy, T, Append, Norm>{});
  return record(launch_plan<Policy>(plan, params, inverse, append, norm, stream, options));
}

/// Validates and launches with tuning `Policy` (a RopePolicy); the public launchers use the default.
template <typename Policy, typename T>
cudaError_t launch(const RopeParams<T>& params, bool inverse, cudaStream_t stream, const LaunchOptions& options) {
  static_assert(kSupportedType<T>, "rope supports float, __half and __nv_bfloat16 tensors");
  const Status status = validate(params);
  if (!status.ok()) return record(status);
  if (params.num_tokens == 0) return record(cudaSuccess);
  return launch_validated<Policy>(params, inverse, NoAppend{}, stream, options);
}

}  // namespace detail

/// Applies RoPE to q (and k, if given): y = rotate(x, +theta).
///
/// Returns `cudaErrorInvalidValue` without launching (and without writing anything) when an
/// argument is bad; `rope::last_error_message()` then says which. Zero tokens: `cudaSuccess`,
/// no launch. Asynchronous on `stream`; `options` (LaunchOptions) opts into programmatic
/// dependent launch. A launch error is returned; an earlier error of the caller's own work is
/// neither returned nor cleared.
template <typename T>
cudaError_t rope_forward(const RopeParams<T>& params, cudaStream_t stream = nullptr, const LaunchOptions& options = {}) {
  return detail::launch<detail::DefaultPolicy>(params, false, stream, options);
}

/// The gradient of rope_forward: rotates by -theta (same arguments: x holds dL/dy, y receives
/// dL/dx). Same speed as forward.
template <typename T>
cudaError_t rope_backward(const RopeParams<T>& params, cudaStream_t stream = nullptr,
                          const LaunchOptions& options = {}) {
  return detail::launch<detail::DefaultPolicy>(params, true, stream, options);
}

/// The simplest case, one call: x [num_tokens, head_dim] and y [num_tokens, head_dim] packed,
/// cos and sin fp32 [num_tokens, head_dim / 2] (row t holds token t's angles), half-split pairs.
template <typename T>
cudaError_t rope_forward(const T* x, const float* cos, const float* sin, T* y, std::int64_t num_tokens,
                         int head_dim, cudaStream_t stream = nullptr) {
  RopeParams<T> params;
  params.num_tokens = num_tokens;
  params.head_dim = head_dim;
  params.q = packed_heads(x, y, 1, head_dim);
  params.cos_sin = cos_sin_table(cos, sin, num_tokens, head_dim / 2);
  return rope_forward(params, stream);
}

}  // namespace rope
