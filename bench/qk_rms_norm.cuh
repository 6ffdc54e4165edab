// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The unfused baseline's first kernel: per-head RMSNorm of q and k in place (Qwen3's q_norm /
/// k_norm as an engine runs it before RoPE), written well: one group of kDim / 8 lanes per head,
/// 16-byte loads and stores (eight bf16), the sum of squares by warp shuffles within the group,
/// fp32 math, rounded to bf16 once. Heads of a token are [q heads | k heads] of a row of
/// `token_stride` elements (a fused QKV buffer).

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace bench {

template <int kDim>
__global__ void qk_rms_norm_kernel(__nv_bfloat16* qkv, std::int64_t token_stride, std::int64_t tokens, int q_heads,
                                   int k_heads, const __nv_bfloat16* __restrict__ q_weight,
                                   const __nv_bfloat16* __restrict__ k_weight, float eps) {
  constexpr int kLanes = kDim / 8;
  static_assert(kLanes >= 1 && kLanes <= 32 && (kLanes & (kLanes - 1)) == 0, "a head's lanes are part of a warp");
  const int heads = q_heads + k_heads;
  const std::int64_t group = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kLanes;
  const int lane = static_cast<int>(threadIdx.x % kLanes);
  // Lanes past the last head still take part in the shuffles (the whole warp is in the mask).
  const bool valid = group < tokens * heads;
  const std::int64_t t = valid ? group / heads : 0;
  const int h = valid ? static_cast<int>(group % heads) : 0;
  __nv_bfloat16* x = qkv + t * token_stride + static_cast<std::int64_t>(h) * kDim + lane * 8;
  uint4 raw = valid ? *reinterpret_cast<const uint4*>(x) : make_uint4(0, 0, 0, 0);
  const uint4 wraw = *reinterpret_cast<const uint4*>((h < q_heads ? q_weight : k_weight) + lane * 8);
  __nv_bfloat16* e = reinterpret_cast<__nv_bfloat16*>(&raw);
  const __nv_bfloat16* w = reinterpret_cast<const __nv_bfloat16*>(&wraw);
  float v[8], sum = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    v[i] = __bfloat162float(e[i]);
    sum += v[i] * v[i];
  }
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  const float inv_rms = rsqrtf(sum / kDim + eps);
#pragma unroll
  for (int i = 0; i < 8; ++i) e[i] = __float2bfloat16_rn(v[i] * inv_rms * __bfloat162float(w[i]));
  if (valid) *reinterpret_cast<uint4*>(x) = raw;
}

/// Launches qk_rms_norm_kernel<kDim>: 256 threads per block, 256 / (kDim / 8) heads per block.
template <int kDim>
cudaError_t qk_rms_norm(__nv_bfloat16* qkv, std::int64_t token_stride, std::int64_t tokens, int q_heads, int k_heads,
                        const __nv_bfloat16* q_weight, const __nv_bfloat16* k_weight, float eps, cudaStream_t stream) {
  constexpr int kThreads = 256, kHeadsPerBlock = kThreads / (kDim / 8);
  const std::int64_t heads = tokens * (q_heads + k_heads);
  const unsigned grid = static_cast<unsigned>((heads + kHeadsPerBlock - 1) / kHeadsPerBlock);
  qk_rms_norm_kernel<kDim><<<grid, kThreads, 0, stream>>>(qkv, token_stride, tokens, q_heads, k_heads, q_weight,
                                                          k_weight, eps);
  return cudaGetLastError();
}

}  // namespace bench
