// SPDX-License-Identifier: MIT
#pragma once

// Floats that test rounding to bf16 and fp16 (the kernels' paired rounding, host and GPU):
// specials, bf16 and fp16 ties of either sign, uniformly drawn bit patterns, and values whose
// low bits (where each type's rounding is decided) are drawn.

#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace rope_test {

inline std::vector<float> rounding_test_values(std::uint32_t seed, int random_patterns) {
  std::vector<float> values = {0.0f, -0.0f, 1.0f, -1.5f, 65504.0f, 65520.0f, 1e-8f, -1e-40f, 3.4e38f,
                               std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::denorm_min()};
  auto push_bits = [&](std::uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    values.push_back(f);
  };
  // Ties, each also negated. bf16: halfway past 1 (to even: down) and past 1.0078125 (to even:
  // up), a subnormal tie, and halfway past the largest finite (to infinity). fp16: 1 + 2^-11,
  // 3 + 2^-10, 65520 (halfway past 65504: to infinity), 2^-25 (halfway to the smallest subnormal:
  // to zero) and 1.5 * 2^-24 (between two subnormals).
  for (std::uint32_t bits : {0x3f808000u, 0x3f818000u, 0x00008000u, 0x7f7f8000u, 0x3f801000u, 0x40401000u, 0x477ff000u,
                             0x33000000u, 0x33c00000u}) {
    push_bits(bits);
    push_bits(bits | 0x80000000u);
  }
  std::mt19937 rng(seed);
  for (int i = 0; i < random_patterns; ++i) push_bits(static_cast<std::uint32_t>(rng()));
  // Near 1 with the low 16 bits drawn (bf16's rounding), near 3 with the low 13 (fp16's).
  for (int i = 0; i < random_patterns / 16; ++i) {
    push_bits(0x3f800000u | (static_cast<std::uint32_t>(rng()) & 0xffffu));
    push_bits(0x40400000u | (static_cast<std::uint32_t>(rng()) & 0x1fffu));
  }
  return values;
}

}  // namespace rope_test
