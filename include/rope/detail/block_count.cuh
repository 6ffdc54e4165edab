// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// How many tokens a block of a small launch takes: the rule both kernels' launch shapes use
/// (detail/dispatch.cuh, detail/head_group_shape.cuh).

#include <cstdint>

namespace rope {
namespace detail {

/// A launch of fewer blocks than this leaves SMs idle or unevenly loaded (2048 single-head tokens
/// in 256-thread blocks are 64 blocks for an H200's 132 SMs): 8 blocks per SM there. Measured on
/// an H200 (bench/NOTES.md, change 25): the seed's sweep at N = 10240 to 26624 and Llama-3-8B
/// computed mode at T = 4096 ran 2-10% faster than with 2 blocks per SM.
constexpr std::int64_t kFewBlocks = 1056;

/// kFewBlocks for launches that gather table rows by position: 4 blocks per H200 SM. Measured
/// there (change 25): Llama-3-8B table mode gained 1.7% from halving 342 blocks and lost 1.9% from
/// halving 683.
constexpr std::int64_t kFewBlocksGatheringRows = 528;

/// Blocks of a small launch shrink to no fewer threads than this.
constexpr int kMinBlockThreads = 64;

/// `tokens_per_block` halved until a launch of `num_tokens` has `few_blocks` blocks, a block
/// holds one token, or halving would leave fewer than kMinBlockThreads threads (`token_threads`
/// threads per token).
inline int tokens_per_small_block(int tokens_per_block, int token_threads, std::int64_t num_tokens,
                                  std::int64_t few_blocks) {
  while (tokens_per_block > 1 && token_threads * (tokens_per_block / 2) >= kMinBlockThreads &&
         (num_tokens + tokens_per_block - 1) / tokens_per_block < few_blocks) {
    tokens_per_block /= 2;
  }
  return tokens_per_block;
}

}  // namespace detail
}  // namespace rope
