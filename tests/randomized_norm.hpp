// SPDX-License-Identifier: MIT
#pragma once
// Randomized differential testing of QK-RMSNorm + RoPE: case (seed, index) is a drawn RoPE
// configuration (random_case, from a seed of its own) with the norm on top: weighting, weight
// type, eps and weight alignment drawn, backward off (the norm is forward only), host lane
// overrides kept (the host runner rounds them to whole groups). Replayed like the RoPE cases:
//   ROPE_RANDOM_CASE=<seed>:<index> <test binary> --gtest_filter='<suite>.*'

#include <cstdint>

#include "randomized.hpp"

namespace rope_test {

/// Tokens drawn for norm cases on the host are capped lower: each lane runs as a thread there.
constexpr std::int64_t kHostNormMaxTokens = 40;

inline RandomCase random_norm_case(std::uint64_t seed, std::uint64_t index, Backend backend) {
  RandomCase r = random_case(seed ^ 0x9E0A11ull, index, backend);
  r.seed = seed;
  r.index = index;
  Draw d(mix(seed ^ 0x40C4A11ull, index));
  CaseConfig& c = r.cfg;
  c.qk_norm = true;
  c.backward = false;
  c.weighting = d.chance(0.5) ? rope::NormWeighting::kOnePlus : rope::NormWeighting::kMultiply;
  c.float_weights = d.chance(0.3);
  const float eps_values[] = {1e-6f, 1e-5f, 1e-6f, 0.0f, 0.25f};
  c.eps = d.pick(eps_values);
  c.weight_misalign = d.chance(0.8) ? 0 : static_cast<int>(d.range(1, 4));
  if (backend == Backend::kHost && c.tokens > kHostNormMaxTokens) c.tokens = d.range(1, kHostNormMaxTokens);
  return r;
}

}  // namespace rope_test
