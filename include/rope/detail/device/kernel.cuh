// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The __global__ kernels, thin shells over host-testable bodies: the per-token kernel maps
/// threads to (token, lane) for the per-token body; the head group kernel maps them to (token,
/// head, group rank) for the head group body (detail/device/head_groups.cuh).

#include <cstdint>
#include <type_traits>

#include <rope/config.cuh>
#include <rope/device/grid_dependency.cuh>
#include <rope/detail/device/head_groups.cuh>
#include <rope/detail/policy.cuh>
#include <rope/detail/device/staging.cuh>
#include <rope/detail/device/token_body.cuh>
#include <rope/types.cuh>

namespace rope {
namespace detail {

/// Under programmatic dependent launch (LaunchOptions), what a kernel does before its first read:
/// positions, x, tables and weights may all be the previous kernel's output, so it waits for
/// that kernel here, then lets the next one launch. A walking grid is at most one wave of resident
/// blocks, so the next kernel's blocks take only SM room this one leaves idle; a grid of several
/// waves lets it launch only once its last wave has started.
ROPE_HOST_DEVICE void start_after_prior_grids() {
  device::wait_for_prior_grids();
  device::launch_dependent_grids();
}

/// Whether the (kAxes, Append, Norm) kernel instance walks tokens a grid apart (below): all but
/// the per-pair multi-axis instances and multi-axis appends and norms, whose registers the walk's
/// read-ahead positions would take past 128 (one block of 256 threads per SM instead of two, or
/// spills under NormPolicy). Those are launched one row per token.
template <AxisLookup kAxes, typename Append, typename Norm>
constexpr bool kWalksTokens = kAxes == AxisLookup::kSingleAxis ||
                              (kAxes == AxisLookup::kPerColumn && !Append::kEnabled && !Norm::kEnabled);

/// Whether rows of the instance that walk stage their next token in shared memory
/// (detail/device/staging.cuh): the norm instances that walk, but for the scalar path of 2-byte elements.
/// Measured on an H200: staged, QK-norm ran 5-6% faster from T = 4096, while the plain instance
/// (up to 17% slower) and the appends (up to 15%) lost: the staging's registers (the bf16 append
/// spilled) cost them more than the overlap gained.
template <typename T, Style kStyle, int kVec, AxisLookup kAxes, typename Append, typename Norm>
constexpr bool kStagesTokens =
    kWalksTokens<kAxes, Append, Norm> && Norm::kEnabled && PairChunk<T, kStyle, kVec>::kStageable;

/// Slots per lane of a staging instance: its first batch's accesses.
template <typename T, Style kStyle, int kVec, int kHeadBatch>
constexpr int kStageLaneSlots = kHeadBatch * PairChunk<T, kStyle, kVec>::kVectors;

/// Block (lanes, tokens): threadIdx.y picks the block's token row, threadIdx.x the lane within
/// it; all heads of a token are in its row. The grid may be smaller than the token count (at most
/// what the GPU holds at once): each row then takes tokens blockIdx.x * blockDim.y + threadIdx.y,
/// then that plus gridDim.x * blockDim.y, and so on, and reads each next token's positions before
/// working on the current one, so the next token's table reads do not wait for its positions.
/// `inverse` selects the backward rotation (by -theta); it is uniform across the launch, so the
/// branch costs nothing. `Policy` (a RopePolicy) sets the launch bounds; kHeadBatch is the
/// policy's batch for this kVec. `Append` is the append mode: NoAppend (plain RoPE; an empty
/// parameter) or a CacheAppend. `Norm` is the norm mode: NoNorm (an empty parameter) or an
/// RmsNorm, whose lanes sum across their group with warp shuffles (a row's lanes always work on
/// the same token). `kAxes`: how pairs find their positions (one axis or M-RoPE). Norm instances
/// whose rows walk stage each next token's first batch in the block's dynamic shared memory
/// (kStagesTokens) when the launch provides it.
template <typename T, typename Policy, Style kStyle, int kVec, int kHeadBatch, AxisLookup kAxes,
          typename Append = NoAppend, typename Norm = NoNorm>
ROPE_KERNEL void __launch_bounds__(Policy::kMaxBlockThreads, Policy::kMinBlocksPerSm)
    rotate_tokens_kernel(const __grid_constant__ RopeParams<T> params, bool inverse,
                         const __grid_constant__ Append append, const __grid_constant__ Norm norm) {
  const std::int64_t rows = static_cast<std::int64_t>(gridDim.x) * blockDim.y;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  const int lane = static_cast<int>(threadIdx.x), lanes = static_cast<int>(blockDim.x);
  const unsigned thread = threadIdx.y * blockDim.x + threadIdx.x;
  start_after_prior_grids();
  auto work = [&](std::int64_t token, const AxisPositions& positions, const auto& stage) {
    using Stage = std::decay_t<decltype(stage)>;
    if constexpr (Norm::kEnabled) {
      const WarpLaneGroup group{thread % 32u};
      rotate_token<T, kStyle, kVec, kHeadBatch, kAxes, Append, Norm, WarpLaneGroup, Stage>(
          params, inverse, token, positions, lane, lanes, append, norm, group, stage);
    } else {
      rotate_token<T, kStyle, kVec, kHeadBatch, kAxes, Append, Norm, NoLaneGroup, Stage>(
          params, inverse, token, positions, lane, lanes, append, norm, NoLaneGroup{}, stage);
    }
  };
  if constexpr (kStagesTokens<T, kStyle, kVec, kAxes, Append, Norm>) {
    // Rows that walk stage each next token's first batch in shared memory (detail/device/staging.cuh)
    // when the launch gave the block its slots (launch.cuh says when).
    extern __shared__ __align__(16) unsigned char stage_slots[];
    const int threads = static_cast<int>(blockDim.x * blockDim.y);
    constexpr int kLaneSlots = kStageLaneSlots<T, kStyle, kVec, kHeadBatch>;
    const SharedStage stage = make_shared_stage(stage_slots, static_cast<int>(thread), threads, kLaneSlots);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const bool slots_given = dynamic_shared_bytes() >= static_cast<unsigned>(stage_bytes(threads, kLaneSlots));
#else
    const bool slots_given = false;  // cp.async starts with sm_80: older GPUs walk unstaged
#endif
    walk_tokens_staged<kAxes>(params, first, rows, stage, slots_given, work);
  } else if constexpr (kWalksTokens<kAxes, Append, Norm>) {
    walk_tokens<kAxes>(params, first, rows,
                       [&](std::int64_t token, const AxisPositions& positions) { work(token, positions, NoStage{}); });
  } else if (first < params.num_tokens) {
    work(first, token_positions<kAxes>(params, first), NoStage{});
  }
}

/// The head group kernel for few tokens or few heads (detail/device/head_groups.cuh; its shape:
/// choose_head_group_shape), thread coordinates as head_group_thread says. In computed mode the
/// block first computes its tokens' cos/sin rows into its dynamic shared memory, once for all its
/// heads.
template <typename T, Style kStyle, int kVec>
ROPE_KERNEL void __launch_bounds__(kHeadGroupBlockThreads)
    rotate_head_groups_kernel(const __grid_constant__ RopeParams<T> params, device::Rotation rotation) {
  const HeadGroupThread at = head_group_thread(blockIdx, threadIdx, blockDim);
  start_after_prior_grids();
  const float* computed_row = nullptr;
  if (params.cos_sin.kind == CosSin::Kind::kComputed) {
    extern __shared__ __align__(16) float computed_rows[];
    compute_token_rows(params, at.first_token, static_cast<int>(blockDim.z), at.thread, at.threads, computed_rows);
    __syncthreads();
    computed_row = computed_rows + threadIdx.z * rotated_dim(params);
  }
  if (at.token >= params.num_tokens || at.head >= params.q.num_heads + params.k.num_heads) return;
  rotate_token_head<T, kStyle, kVec>(params, rotation, at.token, at.head, at.group, computed_row);
}

}  // namespace detail
}  // namespace rope
