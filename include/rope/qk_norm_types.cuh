// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The parameter types of QK-RMSNorm + RoPE: per-head RMSNorm of q and of k before the rotation,
/// in the same pass (see rope/qk_norm.cuh for the launcher).

#include <rope/config.cuh>
#include <rope/types.cuh>

namespace rope {

/// How the normalized value x̂ = x / sqrt(mean(x^2) + eps) meets its weight w.
enum class NormWeighting : int {
  kMultiply = 0,  ///< x̂ * w: Qwen3's q_norm/k_norm (`Qwen3RMSNorm`), Llama-style RMSNorm
  kOnePlus = 1,   ///< x̂ * (1 + w): Gemma's zero-centered weights (`Gemma3RMSNorm`)
};

/// Per-head RMSNorm of q and of k, applied before the rotation: for each head of each token,
/// over all head_dim elements (the pass-through tail of partial rotary included),
/// y = rotate(x * rsqrt(mean(x^2) + eps) * weight), in fp32 and rounded to T once.
///
/// `W` is the weights' element type: T (model weights as stored) or float.
template <typename T, typename W = T>
struct QkNorm {
  const W* q_weight = nullptr;  ///< [head_dim], device memory; required when q has heads, null otherwise
  const W* k_weight = nullptr;  ///< [head_dim], device memory; required when k has heads, null otherwise
  float eps = 1e-6f;            ///< added to mean(x^2); finite, >= 0
  NormWeighting weighting = NormWeighting::kMultiply;  ///< w or 1 + w
};

}  // namespace rope
