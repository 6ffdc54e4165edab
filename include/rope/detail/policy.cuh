// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Every tuned constant of the library, in one place (CUB's tuning policies are the model): the
/// kernels' policies (template arguments of the kernels, so two translation units that tune
/// differently get two distinct instances rather than one name with two bodies) and the launch
/// planning's thresholds (detail/host/).
///
/// Architectures: the values were measured on sm_90 (H100, H200). sm_80 (A100) and sm_100
/// (B200) run the same values; they were not measured there. A measured set for another
/// architecture belongs here, selected by the architecture.

#include <cstdint>

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

/// Append launches: v items a lane reads with its heads, before the rotation. v depends on neither
/// the position nor the slot, and read after the rotation it cost each token a round trip of its
/// own (on an H200 the fused appends ran 3-6% faster at T = 4096 and 16384 for reading it early).
constexpr int kEarlyV = 2;

// ---- Launch planning (detail/host/): block shapes, token thresholds, the walking rule ----

/// Tokens with at most this many heads (q + k) take the double width when it fits.
constexpr int kFewHeads = 2;

/// Launches of at least this many tokens give each lane two batches of heads (choose_launch_shape),
/// so that each (token, column) cos/sin is computed or read half as often, where that costs more
/// than the second batch's round trip: computed mode (arithmetic per lane), and plain multi-axis
/// table launches whose columns each lie in one section (each column gathers its axis's row of the
/// table; measured on an H200: Qwen2-VL-7B table mode 4-5% faster at T = 4096 and 16384). Few
/// tokens (decode) are latency-bound instead, and a second batch would be a second round trip to
/// memory.
constexpr std::int64_t kManyTokens = 1024;

/// Launches of fewer blocks than this take one block per row of tokens: the launcher skips the
/// occupancy query (a few microseconds of host time) and never caps their grid, so their rows
/// never walk.
constexpr std::int64_t kQueryBlocks = 1024;

/// The grid of a launch of `blocks` blocks of an instance that walks tokens (kWalksTokens in
/// detail/device/kernel.cuh) where the GPU holds `resident` at once (0: unknown): launches that
/// read
/// positions ahead and have at least kResidentMultiple times the resident blocks take at most
/// the resident ones (how many: kBalancingGiveUpDivisor). Measured on an H200: from 3 times,
/// T = 4096 walks too, and the fused bf16 append ran 7% and QK-norm 5% faster there; from 2 times
/// no bench row moved further.
constexpr std::int64_t kResidentMultiple = 3;

/// A walking grid takes the fewest blocks that keep its number of rounds (tokens per row), so
/// that its last round is fuller, where that gives up at most resident / kBalancingGiveUpDivisor
/// blocks; otherwise every resident block. Measured on an H200: at T = 16384 (264 -> 261 blocks)
/// table mode, the appends and QK-norm ran 0.7-1.2% faster; at T = 4096 (264 -> 228) QK-norm and
/// the FP8 append ran 3-7% slower (fewer warps hide their chains less well). 1/32 lies between
/// those two points (3 and 36 blocks of 264); it is not a measured threshold.
constexpr std::int64_t kBalancingGiveUpDivisor = 32;

/// Append and norm launches of at most this many tokens (decode steps, short prompts) give each
/// lane about one head instead of a batch (plain ones take head groups instead: head_groups.cuh).
/// Their few tokens leave most of the GPU idle, so a token's time is its lanes' chain of loads,
/// conversions and stores, which is shorter over more lanes. Measured on an H200 for 40 heads of
/// 8 columns (Llama-3-8B, Qwen3-8B): fused append and QK-norm 4-14% faster at T = 1 to 256, but
/// 21-33% slower at T = 512 (a second wave of blocks). Other head counts were not measured.
constexpr std::int64_t kSpreadHeadsMaxTokens = 256;

/// A launch of fewer blocks than this leaves SMs idle or unevenly loaded (2048 single-head tokens
/// in 256-thread blocks are 64 blocks for an H200's 132 SMs): 8 blocks per SM there. Measured on
/// an H200: the small sweeps (fp32 at N = 18432 and 26624, bf16 and fp16 from N = 10240),
/// Llama-3-8B computed mode and M-RoPE at T = 4096 ran 2-10% faster than with 2 blocks per SM.
constexpr std::int64_t kFewBlocks = 1056;

/// kFewBlocks for launches whose tokens gather table rows by position: 4 blocks per H200 SM.
/// Measured on an H200: Llama-3-8B table mode gained 1.7% from halving 342 blocks and lost 1.9%
/// from halving 683.
constexpr std::int64_t kFewBlocksGatheringRows = 528;

/// Blocks of a small launch shrink to no fewer threads than this.
constexpr int kMinBlockThreads = 64;

// ---- Head groups (few tokens or few heads in all) ----

/// Plain launches of at most this many tokens take head groups. Measured on an H200: decode
/// (T = 1 to 256) 0.07-0.40 us faster, Llama-3-8B at T = 512 about 1% faster.
constexpr std::int64_t kHeadGroupMaxTokens = 512;

/// Plain launches of at most this many heads in all (tokens times heads per token) take head
/// groups too, whatever their token count. Measured on an H200: the seed's single-head fp32
/// sweep at N = 2048 and 10240 ran 7-9% faster with head groups, at N = 18432 34% slower
/// (unexplained), so the bound sits at the larger of the two that gained.
constexpr std::int64_t kHeadGroupMaxHeads = 10240;
static_assert(kHeadGroupMaxHeads <= 65535, "a head group grid's y dimension (token blocks) may reach this");

/// Threads per head group block, at most.
constexpr int kHeadGroupBlockThreads = 256;

/// Tokens per head group block, at most: CUDA's limit on a block's z dimension.
constexpr int kHeadGroupBlockTokens = 64;

}  // namespace detail
}  // namespace rope
