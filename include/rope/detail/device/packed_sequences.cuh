// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Positions of packed sequences (rope::PackedSequences): which sequence a token belongs to, and
/// its position there, under context parallelism too. Host and device share these functions.

#include <cstdint>

#include <rope/config.cuh>
#include <rope/detail/device/divisor.cuh>
#include <rope/types.cuh>

namespace rope {
namespace detail {

/// Where sequence `s` starts among this rank's tokens: its full start over the ranks.
ROPE_HOST_DEVICE std::int64_t local_sequence_start(const PackedSequences& ps, const Divisor& ranks, int s) {
  return ranks.quotient(static_cast<std::int64_t>(ps.cu_seqlens[s]));
}

/// The sequence of this rank's token `token`: the last s whose local start is at most `token`,
/// found by bisection (ceil(log2(count)) reads, every one within cu_seqlens[0, count)). Empty
/// sequences share their start with the next one, so the last such s is the one that holds it.
ROPE_HOST_DEVICE int sequence_of_token(const PackedSequences& ps, const Divisor& ranks, std::int64_t token) {
  int lo = 0, hi = ps.count - 1;
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    if (local_sequence_start(ps, ranks, mid) <= token) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

/// The position of this rank's token `token`: its index in its full sequence (ContextSplit says
/// which chunks the rank holds), plus the sequence's offset where there are offsets.
ROPE_HOST_DEVICE std::int64_t packed_sequence_position(const PackedSequences& ps, std::int64_t token) {
  const ContextParallel& cp = ps.context;
  const Divisor ranks(cp.size);
  const int s = sequence_of_token(ps, ranks, token);
  const std::int64_t start = local_sequence_start(ps, ranks, s);
  const std::int64_t share = local_sequence_start(ps, ranks, s + 1) - start;  // this rank's tokens of s
  const std::int64_t local = token - start;
  std::int64_t position = local;
  if (cp.size > 1) {
    if (cp.split == ContextSplit::kContiguous) {
      position = cp.rank * share + local;
    } else {  // chunks rank and 2 * size - 1 - rank, share / 2 tokens each
      const std::int64_t chunk = share / 2;
      position = local < chunk ? cp.rank * chunk + local : (2 * cp.size - 1 - cp.rank) * chunk + (local - chunk);
    }
  }
  if (ps.offsets != nullptr) {
    position += ps.offsets_type == PositionType::kInt32 ? static_cast<const std::int32_t*>(ps.offsets)[s]
                                                        : static_cast<const std::int64_t*>(ps.offsets)[s];
  }
  return position;
}

}  // namespace detail
}  // namespace rope
