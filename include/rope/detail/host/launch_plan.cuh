// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The launch plan: everything a launch decides (which kernel, which instance, grid, block,
/// dynamic shared memory), made once from validated arguments and what the device holds. The
/// launcher executes the plan on the GPU (launch.cuh); the tests' host runner executes the same
/// plan on the host. No decision is made anywhere else.

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include <rope/detail/host/block_count.cuh>
#include <rope/detail/host/dispatch.cuh>
#include <rope/detail/host/head_group_shape.cuh>
#include <rope/detail/device/kernel.cuh>
#include <rope/detail/device/staging.cuh>
#include <rope/types.cuh>

namespace rope {
namespace detail {

/// Which kernel runs a launch: the per-token kernel (rotate_tokens_kernel, any launch) or the
/// head group kernel (rotate_head_groups_kernel, plain one-axis launches of few tokens or heads).
enum class KernelKind : int { kTokens, kHeadGroups };

/// Which kernels a plan may take: any (what the launchers do), or the per-token kernel only
/// (the host tests' way to run a few-token launch through the per-token body).
enum class Kernels : int { kAny, kTokensOnly };

/// A launch, decided. `instance.vec` is the width the chosen kernel moves (the head group kernel
/// moves at most 16 bytes per access: head_group_vec).
struct LaunchPlan {
  KernelKind kernel = KernelKind::kTokens;
  Instance instance{Style::kHalfSplit, 1, AxisLookup::kSingleAxis};
  unsigned grid_x = 0, grid_y = 1;
  unsigned block_x = 0, block_y = 1, block_z = 1;
  std::size_t shared_bytes = 0;  ///< dynamic: head groups' computed rows, or staged tokens
  bool walks = false;            ///< the grid has fewer rows of tokens than tokens: rows walk

  dim3 grid() const { return dim3(grid_x, grid_y); }
  dim3 block() const { return dim3(block_x, block_y, block_z); }
  int threads() const { return static_cast<int>(block_x * block_y * block_z); }
  /// Rows of tokens of a per-token launch (each walks tokens this many apart).
  std::int64_t rows() const { return static_cast<std::int64_t>(grid_x) * block_y; }
};

constexpr bool operator==(const LaunchPlan& a, const LaunchPlan& b) {
  return a.kernel == b.kernel && a.instance == b.instance && a.grid_x == b.grid_x && a.grid_y == b.grid_y &&
         a.block_x == b.block_x && a.block_y == b.block_y && a.block_z == b.block_z &&
         a.shared_bytes == b.shared_bytes && a.walks == b.walks;
}

#if defined(ROPE_OBSERVE_LAUNCH_PLANS)
/// Tests only: the plan the launcher last executed on this thread (launch_plan records it).
inline LaunchPlan& observed_launch_plan() {
  thread_local LaunchPlan plan;
  return plan;
}
#endif

/// Plans a validated, non-empty launch with tuning `Policy`, append mode `Append` (NoAppend or a
/// CacheAppend) and norm mode `Norm` (NoNorm or an RmsNorm). `occupancy` says what the device
/// holds of an instance (the launcher's GpuOccupancy asks the runtime; a host run models a
/// device):
///
///   std::int64_t resident_blocks(const Instance&, int threads, std::size_t shared_bytes)
///     blocks of the per-token kernel the device holds at once, 0 when unknown;
///   bool consents_to_shared_bytes(const Instance&, std::size_t bytes)
///     whether the instance may take `bytes` of dynamic shared memory per block.
///
/// Plain one-axis launches of few tokens or few heads take head groups (takes_head_groups) unless
/// `kernels` is Kernels::kTokensOnly.
/// Others take one block per row of tokens, except large table-mode launches with positions of
/// an instance that walks tokens (kWalksTokens): those take at most the resident blocks
/// (grid_blocks), their rows walking tokens a grid apart; norm launches' rows then also stage
/// their next token in shared memory where that costs no resident blocks. Launches of fewer than
/// kQueryBlocks blocks never ask `occupancy`.
template <typename Policy, typename T, typename Append, typename Norm, typename Occupancy>
LaunchPlan plan_launch(const RopeParams<T>& p, const Append& append, const Norm& norm, Occupancy&& occupancy,
                       Kernels kernels = Kernels::kAny) {
  LaunchPlan plan;
  plan.instance = choose_instance(p, append, norm);
  with_instance<Policy, T, Norm>(plan.instance, [&](auto style, auto vec, auto head_batch, auto axes) {
    constexpr Style kStyle = decltype(style)::value;
    constexpr int kVec = decltype(vec)::value;
    constexpr AxisLookup kAxes = decltype(axes)::value;
    if constexpr (!Append::kEnabled && !Norm::kEnabled && kAxes == AxisLookup::kSingleAxis) {
      if (kernels == Kernels::kAny && takes_head_groups(p)) {
        const HeadGroupShape shape = choose_head_group_shape(p, head_group_vec<T>(kVec));
        plan.kernel = KernelKind::kHeadGroups;
        plan.instance.vec = head_group_vec<T>(kVec);
        const dim3 grid = shape.grid(p.num_tokens), block = shape.block();
        plan.grid_x = grid.x;
        plan.grid_y = grid.y;
        plan.block_x = block.x;
        plan.block_y = block.y;
        plan.block_z = block.z;
        plan.shared_bytes = static_cast<std::size_t>(shape.shared_bytes);
        return;
      }
    }
    const LaunchShape shape = choose_launch_shape<Policy>(p, kVec, decltype(head_batch)::value, kLaunchKind<Append, Norm>);
    plan.block_x = static_cast<unsigned>(shape.lanes_per_token);
    plan.block_y = static_cast<unsigned>(shape.tokens_per_block);
    const int threads = plan.threads();
    std::int64_t blocks = ceil_div(p.num_tokens, shape.tokens_per_block);
    if (kWalksTokens<kAxes, Append, Norm> && blocks >= kQueryBlocks && reads_positions_ahead(p)) {
      const std::int64_t resident = occupancy.resident_blocks(plan.instance, threads, 0);
      blocks = grid_blocks(p, blocks, resident);
      const bool rows_walk = blocks * shape.tokens_per_block < p.num_tokens;
      constexpr int kLaneSlots = kStageLaneSlots<T, kStyle, kVec, decltype(head_batch)::value>;
      const std::size_t staged_bytes = kStagesTokens<T, kStyle, kVec, kAxes, Append, Norm>
                                           ? static_cast<std::size_t>(stage_bytes(threads, kLaneSlots))
                                           : 0;
      if (staged_bytes > 0 && rows_walk && resident > 0 &&
          occupancy.consents_to_shared_bytes(plan.instance, staged_bytes) &&
          occupancy.resident_blocks(plan.instance, threads, staged_bytes) == resident) {
        plan.shared_bytes = staged_bytes;
      }
    }
    plan.grid_x = static_cast<unsigned>(blocks);
    plan.walks = blocks * shape.tokens_per_block < p.num_tokens;
  });
  return plan;
}

}  // namespace detail
}  // namespace rope
