// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Every check of a QK-RMSNorm + RoPE launch: the RoPE part as `validate(params)` checks it, then
/// the norm's arguments. Nothing is read from device memory.

#include <cmath>
#include <cstdint>
#include <type_traits>

#include <rope/qk_norm_types.cuh>
#include <rope/status.cuh>
#include <rope/types.cuh>
#include <rope/validate.cuh>

namespace rope {

namespace detail {

/// The norm's own checks, for RoPE arguments `p` already checked (with any null y resolved).
template <typename T, typename W>
Status validate_norm(const RopeParams<T>& p, const QkNorm<T, W>& n) {
  static_assert(std::is_same<W, T>::value || std::is_same<W, float>::value,
                "qk-norm weights are of the tensor's type or float");
  if (!(n.eps >= 0.0f) || !std::isfinite(n.eps)) return invalid("qk-norm eps must be finite and non-negative");
  if (n.weighting != NormWeighting::kMultiply && n.weighting != NormWeighting::kOnePlus) {
    return invalid("qk-norm weighting is not a rope::NormWeighting value");
  }
  if (p.q.num_heads == 0 && n.q_weight != nullptr) return invalid("q_weight is set but q.num_heads is 0");
  if (p.k.num_heads == 0 && n.k_weight != nullptr) return invalid("k_weight is set but k.num_heads is 0");

  // Pointers are only dereferenced when there is a token: empty launches may carry nullptr.
  if (p.num_tokens == 0) return Status{};

  if (p.q.num_heads > 0 && n.q_weight == nullptr) return invalid("q_weight is null (q has heads: it needs its [head_dim] weight)");
  if (p.k.num_heads > 0 && n.k_weight == nullptr) return invalid("k_weight is null (k has heads: it needs its [head_dim] weight)");
  if (!detail::is_aligned(n.q_weight, sizeof(W)) || !detail::is_aligned(n.k_weight, sizeof(W))) {
    return invalid("q_weight or k_weight is not aligned to its element type");
  }
  // The weights are read while q.y and k.y are written: they may not lie in either.
  const std::size_t weight_bytes = static_cast<std::size_t>(p.head_dim) * sizeof(W);
  const detail::ViewGeometry outputs[] = {{p.q.y, p.q.num_heads, p.q.y_token_stride, p.q.y_head_stride},
                                          {p.k.y, p.k.num_heads, p.k.y_token_stride, p.k.y_head_stride}};
  const W* const weights[] = {n.q_weight, n.k_weight};
  for (const W* weight : weights) {
    if (weight == nullptr) continue;
    const std::uintptr_t w0 = reinterpret_cast<std::uintptr_t>(weight), w1 = w0 + weight_bytes;
    for (detail::ViewGeometry out : outputs) {
      if (out.heads == 0) continue;
      if (out.heads > 1 && out.head_stride == 0) out.heads = 1;
      std::uintptr_t o0, o1;
      detail::byte_extent(out, p.num_tokens, p.head_dim, sizeof(T), o0, o1);
      if (w0 < o1 && o0 < w1) return invalid("q_weight or k_weight overlaps q.y or k.y (weights are read while they are written)");
    }
  }
  // A flag store into a weight would change the norm of the tokens after it.
  return detail::arguments_apart(
      {}, {detail::bytes_at(n.q_weight, weight_bytes), detail::bytes_at(n.k_weight, weight_bytes)}, {},
      {{detail::bytes_at(p.out_of_range_flag, sizeof(int)), detail::kFlagInArgument}});
}

}  // namespace detail

/// Checks every argument of a QK-RMSNorm + RoPE launch (`rope_forward_qk_norm`):
/// `cudaErrorInvalidValue` and the reason on the first problem found.
template <typename T, typename W>
Status validate(const RopeParams<T>& p, const QkNorm<T, W>& n) {
  const Status s = validate(p);
  if (!s.ok()) return s;
  return detail::validate_norm(p, n);
}

}  // namespace rope
