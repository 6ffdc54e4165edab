// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// How many tokens a block of a small launch takes: the rule both kernels' launch shapes use
/// (detail/host/dispatch.cuh, detail/host/head_group_shape.cuh).

#include <cstdint>
#include <limits>

#include <rope/detail/policy.cuh>
#include <rope/types.cuh>

namespace rope {
namespace detail {

/// a / b rounded up (a >= 0, b > 0), in the type a + b has: block counts, rounds of blocks,
/// heads per group.
template <typename A, typename B>
constexpr auto ceil_div(A a, B b) {
  return (a + b - 1) / b;
}

/// No bound on a launch's blocks (tokens_per_small_block's `most` when the caller has none).
constexpr std::int64_t kAnyBlocks = std::numeric_limits<std::int64_t>::max();

/// Whether each token of a launch reads the table rows its position names (table mode with a
/// positions array or packed sequences), rather than computing its cos/sin or reading the row of
/// its own index. Packed sequences are taken as a positions array (not measured apart).
template <typename T>
bool gathers_table_rows(const RopeParams<T>& p) {
  return p.cos_sin.kind == CosSin::Kind::kTable && looks_up_positions(p.positions);
}

/// The few-blocks bound of a launch: kFewBlocksGatheringRows where it gathers table rows,
/// kFewBlocks otherwise.
template <typename T>
std::int64_t few_blocks(const RopeParams<T>& p) {
  return gathers_table_rows(p) ? kFewBlocksGatheringRows : kFewBlocks;
}

/// `tokens_per_block` halved until a launch of `num_tokens` has `few` blocks, a block holds one
/// token, halving would leave fewer than kMinBlockThreads threads (`token_threads` threads per
/// token), or it would give the launch `most` blocks or more.
inline int tokens_per_small_block(int tokens_per_block, int token_threads, std::int64_t num_tokens, std::int64_t few,
                                  std::int64_t most = kAnyBlocks) {
  while (tokens_per_block > 1 && token_threads * (tokens_per_block / 2) >= kMinBlockThreads &&
         ceil_div(num_tokens, tokens_per_block) < few && ceil_div(num_tokens, tokens_per_block / 2) < most) {
    tokens_per_block /= 2;
  }
  return tokens_per_block;
}

}  // namespace detail
}  // namespace rope
