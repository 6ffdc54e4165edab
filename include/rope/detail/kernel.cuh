// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The __global__ kernel: a thin shell mapping threads to (token, lane) for the per-token body.

#include <cstdint>

#include <rope/config.cuh>
#include <rope/detail/token_body.cuh>
#include <rope/types.cuh>

namespace rope {
namespace detail {

/// Threads per block, at most; the launch shape never asks for more.
constexpr int kMaxBlockThreads = 256;

// Tuning knobs for benchmarking only (bench/NOTES.md); the defaults are the measured best.
#ifndef ROPE_MIN_BLOCKS
#define ROPE_MIN_BLOCKS 1
#endif
#ifndef ROPE_HEAD_BATCH
#define ROPE_HEAD_BATCH 4
#endif

/// Block (lanes, tokens): threadIdx.y picks the block's token, threadIdx.x the lane within it.
/// One token per block row, all heads of that token in the row. `inverse` selects the backward
/// rotation (by -theta); it is uniform across the launch, so the branch costs nothing.
template <typename T, Style kStyle, int kVec, int kHeadBatch>
ROPE_KERNEL void __launch_bounds__(kMaxBlockThreads, ROPE_MIN_BLOCKS) rope_forward(const __grid_constant__ RopeParams<T> params,
                                                                   bool inverse) {
  const std::int64_t token = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (token < params.num_tokens) {
    rotate_token<T, kStyle, kVec, kHeadBatch>(params, inverse, token, static_cast<int>(threadIdx.x),
                                  static_cast<int>(blockDim.x));
  }
}

}  // namespace detail
}  // namespace rope
