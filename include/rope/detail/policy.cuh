// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Tuning of the RoPE kernel as a type (CUB's tuning policies are the model). The policy is a
/// template argument of the kernel, so two translation units that tune differently get two
/// distinct kernel instances instead of one name with two bodies.

namespace rope {
namespace detail {

/// `HeadBatch`: heads a lane keeps loads in flight for before it rotates any (the double-width
/// access uses one, as it already has four 16-byte loads per head). `MinBlocksPerSm`: the second
/// argument of `__launch_bounds__`. The defaults measured best on an H200.
template <int HeadBatch = 4, int MinBlocksPerSm = 1>
struct RopePolicy {
  static_assert(HeadBatch >= 1, "a lane needs at least one head per batch");
  static_assert(MinBlocksPerSm >= 1, "__launch_bounds__ needs at least one block per SM");
  static constexpr int kHeadBatch = HeadBatch;
  static constexpr int kMinBlocksPerSm = MinBlocksPerSm;
  /// Threads per block, at most; the launch shape never asks for more.
  static constexpr int kMaxBlockThreads = 256;
};

/// What the public launchers use: two blocks per SM, so ptxas keeps every instance at or under
/// 128 registers. Without the bound it chose 125-130 for the batched instances (sm_90, CUDA 13.0),
/// and one register past 128 halves the blocks per SM (on an H200 the Qwen2-VL instance lost 25%
/// that way).
using DefaultPolicy = RopePolicy<4, 2>;

/// What norm launches (rope_forward_qk_norm) use: four heads per batch, as plain launches, and
/// two blocks per SM. The bf16 instance fits 122 registers without spills once the weight chunks
/// are read per head and the walked columns come after the batch's stores; at 128 and one block
/// per SM it would have half the loads in flight.
using NormPolicy = RopePolicy<4, 2>;

}  // namespace detail
}  // namespace rope
