// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The parameter types of the attention prologue: what runs between the QKV projection and
/// attention, in one launch (see rope/prologue.cuh for the launcher).

#include <cstdint>

#include <cuda_fp8.h>

#include <rope/config.cuh>
#include <rope/kv_cache_types.cuh>
#include <rope/qk_norm_types.cuh>
#include <rope/types.cuh>

namespace rope {

/// q quantized to FP8 E4M3 for an FP8 attention kernel: each value of the rotated (and, with a
/// norm, normalized) q, rounded to the tensor's type, stored as `saturate(x / scale)` (fp32 IEEE
/// division, round to nearest even, finite values clamped to +-448, NaN kept), the same
/// conversion as an FP8 cache's. Element [t, h, d] is at `data[t * token_stride + h * head_stride
/// + d]`, q.num_heads heads.
struct QuantizedQ {
  __nv_fp8_e4m3* data = nullptr;  ///< null: q is not quantized
  std::int64_t token_stride = 0;  ///< elements between tokens
  std::int64_t head_stride = 0;   ///< elements between heads
  float scale = 1.0f;             ///< per-tensor, in [2^-64, 2^64]
};

/// The attention prologue: RoPE (or M-RoPE, from RopeParams) with any subset of
///
/// - `norm`: per-head RMSNorm of q and k before the rotation (Qwen3, Gemma 3, OLMo 2);
/// - `cache`: the rotated k and the untouched v written to paged caches of element type C (the
///   tensor's type or FP8 E4M3), as rope_forward_append writes them (its own q_fp8 fields must
///   stay unset: q to FP8 is `q_fp8` below);
/// - `q_fp8`: the rotated q quantized to FP8, with any cache or none;
///
/// in one launch. `W` is the norm weights' type (T or float). Without a cache, q.y and k.y must
/// be written (q.y may be null when q goes to q_fp8 only); with one, k.y may be null (k to the
/// cache only).
template <typename T, typename C = T, typename W = T>
struct AttentionPrologue {
  const QkNorm<T, W>* norm = nullptr;          ///< optional
  const KvCacheAppend<T, C>* cache = nullptr;  ///< optional
  QuantizedQ q_fp8;                            ///< optional (data null: none)
};

}  // namespace rope
