// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// How many tokens a block of a small launch takes: the rule both kernels' launch shapes use
/// (detail/dispatch.cuh, detail/head_group_shape.cuh).

#include <cstdint>
#include <limits>

#include <rope/types.cuh>

namespace rope {
namespace detail {

/// A launch of fewer blocks than this leaves SMs idle or unevenly loaded (2048 single-head tokens
/// in 256-thread blocks are 64 blocks for an H200's 132 SMs): 8 blocks per SM there. Measured on
/// an H200 (bench/NOTES.md, change 25): the seed's sweep at N = 18432 and 26624, the bf16 and fp16
/// sweeps from N = 10240, Llama-3-8B computed mode at T = 4096 and M-RoPE at T = 4096 ran 2-10%
/// faster than with 2 blocks per SM.
constexpr std::int64_t kFewBlocks = 1056;

/// kFewBlocks for launches whose tokens gather table rows by position: 4 blocks per H200 SM.
/// Measured there (change 25): Llama-3-8B table mode gained 1.7% from halving 342 blocks and lost
/// 1.9% from halving 683.
constexpr std::int64_t kFewBlocksGatheringRows = 528;

/// Blocks of a small launch shrink to no fewer threads than this.
constexpr int kMinBlockThreads = 64;

/// The few-blocks bound of a launch: kFewBlocksGatheringRows for table mode with positions,
/// kFewBlocks otherwise.
template <typename T>
std::int64_t few_blocks(const RopeParams<T>& p) {
  const bool gathers_rows = p.cos_sin.kind == CosSin::Kind::kTable && p.positions.type != PositionType::kNone;
  return gathers_rows ? kFewBlocksGatheringRows : kFewBlocks;
}

/// `tokens_per_block` halved until a launch of `num_tokens` has `few` blocks, a block holds one
/// token, halving would leave fewer than kMinBlockThreads threads (`token_threads` threads per
/// token), or it would give the launch `most` blocks or more.
inline int tokens_per_small_block(int tokens_per_block, int token_threads, std::int64_t num_tokens, std::int64_t few,
                                  std::int64_t most = std::numeric_limits<std::int64_t>::max()) {
  auto blocks = [&](int tokens) { return (num_tokens + tokens - 1) / tokens; };
  while (tokens_per_block > 1 && token_threads * (tokens_per_block / 2) >= kMinBlockThreads &&
         blocks(tokens_per_block) < few && blocks(tokens_per_block / 2) < most) {
    tokens_per_block /= 2;
  }
  return tokens_per_block;
}

}  // namespace detail
}  // namespace rope
