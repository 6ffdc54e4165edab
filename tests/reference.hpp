// SPDX-License-Identifier: MIT
#pragma once
// The CPU reference: plain double-precision RoPE written from the formulas in DESIGN.md,
// independent of the library's per-token body (which is what the tests check).

#include <cmath>
#include <cstdint>
#include <vector>

namespace rope_test {

/// Everything the reference needs, as plain host values (already converted to double).
struct ReferenceInput {
  std::int64_t tokens = 0;
  int head_dim = 0;
  int rotary_dim = 0;
  bool interleaved = false;
  bool backward = false;
  std::vector<std::int64_t> positions;  // one per token
  // Table mode: cos(row, i), sin(row, i) from these (row-major, row_stride apart).
  bool computed = false;
  std::vector<double> cos_table, sin_table;
  std::int64_t table_rows = 0, table_row_stride = 0;
  // Computed mode.
  std::vector<double> inv_freq;
  // Both modes: cos and sin are multiplied by this.
  double attention_scaling = 1.0;
};

/// Index of the two elements of pair i.
inline void pair_indices(const ReferenceInput& in, int i, int& a, int& b) {
  if (in.interleaved) {
    a = 2 * i;
    b = 2 * i + 1;
  } else {
    a = i;
    b = i + in.rotary_dim / 2;
  }
}

/// Whether token t's position has a table row (computed mode: always).
inline bool position_valid(const ReferenceInput& in, std::int64_t t) {
  const std::int64_t pos = in.positions[t];
  return in.computed || (pos >= 0 && pos < in.table_rows);
}

/// Rotates one head (head_dim values of x, in double) of token t into out.
inline void reference_head(const ReferenceInput& in, std::int64_t t, const double* x, double* out) {
  const std::int64_t pos = in.positions[t];
  for (int d = in.rotary_dim; d < in.head_dim; ++d) out[d] = x[d];
  for (int i = 0; i < in.rotary_dim / 2; ++i) {
    double c, s;
    if (in.computed) {
      const double angle = static_cast<double>(pos) * in.inv_freq[i];
      c = std::cos(angle) * in.attention_scaling;
      s = std::sin(angle) * in.attention_scaling;
    } else {
      c = in.cos_table[pos * in.table_row_stride + i] * in.attention_scaling;
      s = in.sin_table[pos * in.table_row_stride + i] * in.attention_scaling;
    }
    if (in.backward) s = -s;  // rotation by -theta
    int a, b;
    pair_indices(in, i, a, b);
    out[a] = x[a] * c - x[b] * s;
    out[b] = x[a] * s + x[b] * c;
  }
}

}  // namespace rope_test
