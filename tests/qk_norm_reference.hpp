// SPDX-License-Identifier: MIT
#pragma once
// The CPU reference of the QK-RMSNorm stage, in double precision from the definitions of
// transformers' Qwen3RMSNorm (x * rsqrt(mean(x^2) + eps) * w) and Gemma3RMSNorm (the same times
// (1 + w)). The rotation that follows is reference.hpp's.

#include <cmath>

namespace rope_test {

/// out[d] = x[d] / sqrt(mean(x^2) + eps) * (one_plus ? 1 + w[d] : w[d]) for d < n (out may be x).
inline void reference_rms_norm(const double* x, int n, const double* w, double eps, bool one_plus, double* out) {
  double squares = 0.0;
  for (int d = 0; d < n; ++d) squares += x[d] * x[d];
  const double inv_rms = 1.0 / std::sqrt(squares / n + eps);
  for (int d = 0; d < n; ++d) out[d] = x[d] * inv_rms * (one_plus ? 1.0 + w[d] : w[d]);
}

}  // namespace rope_test
