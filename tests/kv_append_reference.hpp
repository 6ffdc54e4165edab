// SPDX-License-Identifier: MIT
#pragma once
// The CPU reference of the cache append, written from the definitions: FP8 E4M3 decoded from its
// bit fields and quantized by searching the representable values (not CUDA's converter), and the
// slot -> (block, row) arithmetic of a paged cache. The rotation itself is reference.hpp's.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace rope_test {

/// The value of an FP8 E4M3 (OCP "fn") code: 1 sign, 4 exponent (bias 7), 3 mantissa bits;
/// exponent 0 is subnormal; S.1111.111 is NaN; there are no infinities (largest finite 448).
inline double e4m3_value(unsigned code) {
  const double sign = (code & 0x80u) != 0 ? -1.0 : 1.0;
  const unsigned exponent = (code >> 3) & 0xFu, mantissa = code & 0x7u;
  if (exponent == 0xF && mantissa == 0x7) return NAN;
  if (exponent == 0) return sign * std::ldexp(mantissa / 8.0, -6);
  return sign * std::ldexp(1.0 + mantissa / 8.0, static_cast<int>(exponent) - 7);
}

/// The E4M3 code of `v` as the engines store it: saturated to +-448, rounded to the nearest
/// representable value, ties to the even code (mantissa LSB 0). NaN gives 0x7F.
inline unsigned e4m3_quantize(double v) {
  if (std::isnan(v)) return 0x7Fu;
  // The finite non-negative values, ascending with their codes 0 .. 0x7E.
  static const std::vector<double> values = [] {
    std::vector<double> t;
    for (unsigned code = 0; code < 0x7Fu; ++code) t.push_back(e4m3_value(code));
    return t;
  }();
  const unsigned sign = std::signbit(v) ? 0x80u : 0u;
  const double a = std::fmin(std::fabs(v), 448.0);
  const auto above = std::lower_bound(values.begin(), values.end(), a);  // first value >= a
  unsigned hi = static_cast<unsigned>(above - values.begin());
  if (hi == 0 || values[hi] == a) return sign | hi;
  const unsigned lo = hi - 1;
  const double below_gap = a - values[lo], above_gap = values[hi] - a;
  if (below_gap != above_gap) return sign | (below_gap < above_gap ? lo : hi);
  return sign | ((lo & 1u) == 0 ? lo : hi);
}

/// Where slot s of a paged cache lies: block s / block_size, row s % block_size; nothing for a
/// negative slot or one past the cache.
inline bool slot_row(std::int64_t slot, std::int64_t num_blocks, int block_size, std::int64_t& block,
                     std::int64_t& row) {
  if (slot < 0 || slot >= num_blocks * block_size) return false;
  block = slot / block_size;
  row = slot % block_size;
  return true;
}

}  // namespace rope_test
