// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Host launchers: validate, pick the template instance, launch on the caller's stream.
/// They never throw, never allocate and never synchronize, so they can be captured in a CUDA graph.

#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include <rope/detail/dispatch.cuh>
#include <rope/detail/head_group_shape.cuh>
#include <rope/detail/kernel.cuh>
#include <rope/status.cuh>
#include <rope/types.cuh>
#include <rope/validate.cuh>

namespace rope {
namespace detail {

template <typename T>
constexpr bool kSupportedType = std::is_same<T, float>::value || std::is_same<T, __half>::value ||
                                std::is_same<T, __nv_bfloat16>::value;

/// Blocks of `threads` threads of `kernel` that the current device holds at once, or 0 when the
/// runtime cannot say (the launch then takes one block per row of tokens).
template <typename Kernel>
std::int64_t resident_blocks(Kernel kernel, int threads, std::size_t shared_bytes) {
  int device = 0, sms = 0, per_sm = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, shared_bytes) != cudaSuccess) {
    (void)cudaGetLastError();  // not the launch's error: the launch goes ahead uncapped
    return 0;
  }
  return static_cast<std::int64_t>(sms) * per_sm;
}

/// Whether `kernel` may stage in `shared_bytes` of dynamic shared memory per block of `threads`
/// and still keep `resident` blocks on the device (detail/staging.cuh): on an H200 the bf16 norm
/// instances keep their two blocks per SM with it, where GPUs with less shared memory per SM would
/// lose blocks. Beyond 48 KiB the kernel must first consent (a function attribute); it is set to
/// `max_shared_bytes`, what the instance's largest block needs, so that launches of other block
/// shapes (from other host threads too) never lower it under one another. If the runtime refuses,
/// the launch does not stage.
template <typename Kernel>
bool stage_costs_no_blocks(Kernel kernel, int threads, std::size_t shared_bytes, std::size_t max_shared_bytes,
                           std::int64_t resident) {
  if (resident <= 0) return false;
  if (shared_bytes > static_cast<std::size_t>(kDynamicSharedBytesWithoutOptIn) &&
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(max_shared_bytes)) !=
          cudaSuccess) {
    (void)cudaGetLastError();  // not the launch's error: it goes ahead without staging
    return false;
  }
  return resident_blocks(kernel, threads, shared_bytes) == resident;
}

/// Launches a validated plain launch of few tokens or few heads in all as head groups
/// (detail/head_groups.cuh), at the dispatch's width or the wide one (head_group_vec).
template <typename T, typename StyleConstant, typename VecConstant>
void launch_head_groups(const RopeParams<T>& params, bool inverse, StyleConstant, VecConstant, cudaStream_t stream) {
  constexpr int kVec = head_group_vec<T>(VecConstant::value);
  const HeadGroupShape shape = choose_head_group_shape(params, kVec);
  rotate_head_groups_kernel<T, StyleConstant::value, kVec>
      <<<shape.grid(params.num_tokens), shape.block(), static_cast<std::size_t>(shape.shared_bytes), stream>>>(
          params, inverse ? device::Rotation::kInverse : device::Rotation::kForward);
}

/// Launches a validated, non-empty launch: one kernel instance per (style, width, append mode,
/// norm mode). Plain launches of few tokens (or few heads in all) with one position axis take the
/// head group kernel (launch_head_groups). Large table-mode launches with positions take at most
/// the blocks the GPU holds at once (grid_blocks in detail/dispatch.cuh), each block row walking
/// tokens a grid apart and reading its next token's positions while it works on the current one
/// (detail/kernel.cuh); in norm launches the rows also stage their next token in shared memory
/// (detail/staging.cuh) where that costs no resident blocks. Other launches, and any of fewer than
/// kQueryBlocks blocks (which skip the occupancy query and its few microseconds of host time),
/// take one block per row of tokens.
template <typename Policy, typename T, typename Append, typename Norm = NoNorm>
cudaError_t launch_validated(const RopeParams<T>& params, bool inverse, const Append& append, cudaStream_t stream,
                             const Norm& norm = Norm{}) {
  dispatch<Policy>(
      params, append,
      [&](auto style, auto vec, auto head_batch, auto axes) {
        if constexpr (!Append::kEnabled && !Norm::kEnabled && decltype(axes)::value == AxisLookup::kSingleAxis) {
          if (takes_head_groups(params)) return launch_head_groups(params, inverse, style, vec, stream);
        }
        const LaunchShape shape = choose_launch_shape<Policy>(params, vec, head_batch, kLaunchKind<Append, Norm>);
        const auto kernel = rotate_tokens_kernel<T, Policy, decltype(style)::value, decltype(vec)::value,
                                                 decltype(head_batch)::value, decltype(axes)::value, Append, Norm>;
        const dim3 block(static_cast<unsigned>(shape.lanes_per_token), static_cast<unsigned>(shape.tokens_per_block));
        const int threads = static_cast<int>(block.x * block.y);
        constexpr Style kStyle = decltype(style)::value;
        constexpr int kVec = decltype(vec)::value;
        constexpr int kLaneSlots = kStageLaneSlots<T, kStyle, kVec, decltype(head_batch)::value>;
        const std::size_t staged_bytes = kStagesTokens<T, kStyle, kVec, decltype(axes)::value, Append, Norm>
                                             ? static_cast<std::size_t>(stage_bytes(threads, kLaneSlots))
                                             : 0;
        std::int64_t blocks = ceil_div(params.num_tokens, shape.tokens_per_block);
        std::size_t shared_bytes = 0;
        if (kWalksTokens<decltype(axes)::value, Append, Norm> && blocks >= kQueryBlocks && reads_positions_ahead(params)) {
          const std::int64_t resident = resident_blocks(kernel, threads, 0);
          blocks = grid_blocks(params, blocks, resident);
          const bool rows_walk = blocks * shape.tokens_per_block < params.num_tokens;
          const std::size_t max_staged_bytes = static_cast<std::size_t>(stage_bytes(Policy::kMaxBlockThreads, kLaneSlots));
          if (staged_bytes > 0 && rows_walk &&
              stage_costs_no_blocks(kernel, threads, staged_bytes, max_staged_bytes, resident)) {
            shared_bytes = staged_bytes;
          }
        }
        kernel<<<static_cast<unsigned>(blocks), block, shared_bytes, stream>>>(params, inverse, append, norm);
      },
      norm);
  return record(cudaGetLastError());
}

/// Validates and launches with tuning `Policy` (a RopePolicy); the public launchers use the default.
template <typename Policy, typename T>
cudaError_t launch(const RopeParams<T>& params, bool inverse, cudaStream_t stream) {
  static_assert(kSupportedType<T>, "rope supports float, __half and __nv_bfloat16 tensors");
  const Status status = validate(params);
  if (!status.ok()) return record(status);
  if (params.num_tokens == 0) return record(cudaSuccess);
  return launch_validated<Policy>(params, inverse, NoAppend{}, stream);
}

}  // namespace detail

/// Applies RoPE to q (and k, if given): y = rotate(x, +theta).
///
/// Returns `cudaErrorInvalidValue` without launching (and without writing anything) when an
/// argument is bad; `rope::last_error_message()` then says which. Zero tokens: `cudaSuccess`,
/// no launch. Asynchronous on `stream`.
template <typename T>
cudaError_t rope_forward(const RopeParams<T>& params, cudaStream_t stream = nullptr) {
  return detail::launch<detail::DefaultPolicy>(params, false, stream);
}

/// The gradient of rope_forward: rotates by -theta (same arguments: x holds dL/dy, y receives
/// dL/dx). Same speed as forward.
template <typename T>
cudaError_t rope_backward(const RopeParams<T>& params, cudaStream_t stream = nullptr) {
  return detail::launch<detail::DefaultPolicy>(params, true, stream);
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
