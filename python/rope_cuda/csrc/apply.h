// SPDX-License-Identifier: MIT
#pragma once

// Maps torch tensors onto rope::RopeParams and runs the library: the whole binding logic.

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>
#include <c10/util/OptionalArrayRef.h>
#include <c10/util/string_view.h>

namespace rope_cuda {

/// The inputs of every op, as the schemas in registration.cpp name them.
struct RopeInputs {
  const at::Tensor& q;
  const std::optional<at::Tensor>& k;
  const std::optional<at::Tensor>& positions;
  const std::optional<at::Tensor>& cos;
  const std::optional<at::Tensor>& sin;
  const std::optional<at::Tensor>& cos_sin_cache;
  const std::optional<at::Tensor>& inv_freq;
  double attention_scaling;
  bool interleaved;
  bool inverse;
  /// Multi-axis positions (M-RoPE, 2D vision): frequencies per position axis (2 or 3 entries,
  /// summing to rotary_dim / 2); positions are then [axes, tokens] or [axes, batch, seq].
  at::OptionalIntArrayRef mrope_section;
  /// How mrope_section maps frequencies to axes: "contiguous" (Qwen2-VL) or "interleaved" (Qwen3-VL).
  c10::string_view mrope_layout;
  /// Programmatic dependent launch (rope::LaunchOptions): the launch may overlap the end of the
  /// kernel before it on the stream; results are unchanged.
  bool enable_pdl;
  /// Packed sequences (THD; rope::PackedSequences): int32 [count + 1] running totals of the full
  /// sequence lengths, instead of positions; q and k are then [total_tokens, heads, head_dim].
  const std::optional<at::Tensor>& cu_seqlens;
  /// With cu_seqlens: int32/int64 [count], the position each sequence starts at.
  const std::optional<at::Tensor>& seqlen_offsets;
  /// Context parallelism over packed sequences: this call holds rank cp_rank's share of each.
  std::int64_t cp_size;
  std::int64_t cp_rank;
  /// "load_balanced" (chunks r and 2 * cp_size - 1 - r; Transformer Engine) or "contiguous".
  c10::string_view cp_layout;
};

/// Per-head RMSNorm of q and k before the rotation (rope::QkNorm): weights [head_dim] in q's dtype.
struct NormInputs {
  const std::optional<at::Tensor>& q_weight;  ///< required when q has heads
  const std::optional<at::Tensor>& k_weight;  ///< required when k has heads
  double eps;
  bool weight_one_plus;  ///< x̂ * (1 + w) (Gemma) instead of x̂ * w (Qwen3)
};

/// The paged KV-cache write of a RoPE + append launch (rope::KvCacheAppend): v and the caches,
/// each cache [num_blocks, block_size, kv_heads, head_dim] ("NHD", vLLM) or [num_blocks, kv_heads,
/// block_size, head_dim] ("HND", FlashInfer), or [num_slots, kv_heads, head_dim] (one row per block).
struct AppendInputs {
  const at::Tensor& v;
  const at::Tensor& k_cache;
  const at::Tensor& v_cache;
  const at::Tensor& slot_mapping;
  c10::string_view cache_layout;
  /// "auto": caches in q's dtype; "fp8" / "fp8_e4m3": FP8 E4M3 caches (float8_e4m3fn or uint8 bytes).
  c10::string_view kv_cache_dtype;
  double k_scale;
  double v_scale;
  bool k_write_back;  ///< the rotated k also stays in k (false: to the cache only)
};

/// Checks every argument (the binding's own shape/dtype/device checks, then rope::validate for
/// every launch) and, if `run` is true, launches on the current CUDA stream of q's device.
/// `q_out` / `k_out` receive the result; they are q / k themselves for the in-place ops. With
/// `norm`, the launch is rope::rope_forward_qk_norm (q and k normalized, then rotated).
/// Throws c10::ValueError (Python ValueError) with the reason before anything is written.
void apply(const RopeInputs& in, const at::Tensor& q_out, const std::optional<at::Tensor>& k_out, bool run,
           const NormInputs* norm = nullptr, const AppendInputs* append = nullptr);

}  // namespace rope_cuda
