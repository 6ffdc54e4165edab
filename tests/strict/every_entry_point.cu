// SPDX-License-Identifier: MIT
// A consumer translation unit under strict flags: it includes every public header and calls
// every public entry point for every element type, so each template is instantiated (host and
// device code) exactly as a user's build would. Compiled only (-c); never run.

#include <rope/config.cuh>
#include <rope/device.cuh>
#include <rope/device/rotation.cuh>
#include <rope/frequencies.cuh>
#include <rope/kv_cache.cuh>
#include <rope/kv_cache_types.cuh>
#include <rope/kv_cache_validate.cuh>
#include <rope/launch.cuh>
#include <rope/qk_norm.cuh>
#include <rope/qk_norm_types.cuh>
#include <rope/qk_norm_validate.cuh>
#include <rope/rope.cuh>
#include <rope/status.cuh>
#include <rope/types.cuh>
#include <rope/validate.cuh>

#include <cstdint>

namespace {

/// RoPE + KV-cache append with cache element type C: both layouts, both slot types, q only
/// rotated in place and k to the cache without write-back.
template <typename T, typename C>
cudaError_t every_append(rope::RopeParams<T> p, const T* v, C* cache, const std::int64_t* slots64, int* flag,
                         cudaStream_t stream) {
  rope::KvCacheAppend<T, C> a;
  a.v = v;
  a.v_token_stride = 8 * 128;
  a.v_head_stride = 128;
  a.k_cache = rope::nhd_paged_cache<C>(cache, 16, 2, 128);
  a.v_cache = rope::nhd_paged_cache<C>(cache + 64 * 16 * 2 * 128, 16, 2, 128);
  a.num_blocks = 64;
  a.block_size = 16;
  a.slots = rope::slot_mapping(slots64);
  a.slot_out_of_range_flag = flag;
  if (!rope::validate(p, a).ok()) return cudaErrorInvalidValue;
  cudaError_t e = rope::rope_forward_append(p, a, stream);
  a.k_cache = rope::hnd_paged_cache<C>(cache, 16, 2, 128);
  a.v_cache = rope::hnd_paged_cache<C>(cache + 64 * 16 * 2 * 128, 16, 2, 128);
  a.slots = rope::slot_mapping(reinterpret_cast<const std::int32_t*>(slots64));
  p.k.y = nullptr;
  return e != cudaSuccess ? e : rope::rope_forward_append(p, a, stream);
}

/// The device API from a kernel of the user's: every building block, both styles, both rotations.
template <typename T>
__global__ void every_device_call(T* heads, rope::CosSin cs, const std::int64_t* pos) {
  const rope::device::HeadGroup group{static_cast<int>(threadIdx.x % 8), 8};
  const std::int64_t position = pos[threadIdx.x / 8];
  T* head = heads + (threadIdx.x / 8) * 128;
  rope::device::rotate_head<4, rope::Style::kHalfSplit>(group, head, head, 128, 128, cs, position);
  rope::device::rotate_head<2, rope::Style::kInterleaved>(group, head, head, 128, 64, cs, position,
                                                          rope::device::Rotation::kInverse);
  float c[4], s[4], first[4], second[4], pairs[8];
  rope::device::pair_cos_sin<4, T>(cs, position, 0, c, s);
  for (int i = 0; i < 4; ++i) {
    first[i] = pairs[2 * i] = rope::device::reduced_half_turns(position, c[i]);
    second[i] = pairs[2 * i + 1] = s[i];
  }
  rope::device::rotate_half_split(first, second, c, s);
  rope::device::rotate_interleaved(pairs, c, s);
  float y1 = 0.0f, y2 = 0.0f;
  rope::device::rotary_sincos(position, first[0], 1.0f, y1, y2);
  rope::device::rotate_pair(y1, y2, c[0], s[0], y1, y2);
  head[threadIdx.x % 8] = T(y1 + y2 + second[1] + pairs[3]);
}

/// QK-RMSNorm + RoPE with weights of type W: both weightings, q and k, then k only.
template <typename T, typename W>
cudaError_t every_qk_norm(rope::RopeParams<T> p, const W* weights, cudaStream_t stream) {
  rope::QkNorm<T, W> n;
  n.q_weight = weights;
  n.k_weight = weights + 128;
  n.eps = 1e-6f;
  if (!rope::validate(p, n).ok()) return cudaErrorInvalidValue;
  cudaError_t e = rope::rope_forward_qk_norm(p, n, stream);
  n.weighting = rope::NormWeighting::kOnePlus;
  p.q = rope::HeadsTensor<T>{};
  n.q_weight = nullptr;
  return e != cudaSuccess ? e : rope::rope_forward_qk_norm(p, n, stream);
}

/// The attention prologue: norm + RoPE + cache (FP8 here) + q to FP8, then q to FP8 alone.
template <typename T, typename C>
cudaError_t every_prologue(rope::RopeParams<T> p, const T* v, C* cache, const T* weights,
                           __nv_fp8_e4m3* q_fp8, const std::int64_t* slots64, cudaStream_t stream) {
  rope::KvCacheAppend<T, C> a;
  a.v = v;
  a.v_token_stride = 8 * 128;
  a.v_head_stride = 128;
  a.k_cache = rope::nhd_paged_cache<C>(cache, 16, 2, 128);
  a.v_cache = rope::nhd_paged_cache<C>(cache + 64 * 16 * 2 * 128, 16, 2, 128);
  a.num_blocks = 64;
  a.block_size = 16;
  a.slots = rope::slot_mapping(slots64);
  rope::QkNorm<T> n;
  n.q_weight = weights;
  n.k_weight = weights + 128;
  rope::AttentionPrologue<T, C> prologue;
  prologue.norm = &n;
  prologue.cache = &a;
  prologue.q_fp8 = rope::QuantizedQ{q_fp8, 4 * 128, 128, 0.5f};
  if (!rope::validate(p, prologue).ok()) return cudaErrorInvalidValue;
  cudaError_t e = rope::rope_attention_prologue(p, prologue, stream);
  prologue.norm = nullptr;
  prologue.cache = nullptr;
  return e != cudaSuccess ? e : rope::rope_attention_prologue(p, prologue, stream);
}

template <typename T>
cudaError_t every_launch(T* qkv, const float* cos, const float* sin, const T* cos_t, const T* sin_t,
                         const float* inv_freq, const std::int32_t* pos32, const std::int64_t* pos64, int* flag,
                         cudaStream_t stream) {
  rope::RopeParams<T> p;
  p.num_tokens = 16;
  p.head_dim = 128;
  p.rotary_dim = 64;
  p.style = rope::Style::kInterleaved;
  p.q = rope::strided_heads<T>(qkv, qkv, 4, 8 * 128, 128);
  p.k = rope::packed_heads<T>(qkv + 4 * 128, qkv + 4 * 128, 2, 128);
  p.cos_sin = rope::cos_sin_table<float>(cos, sin, 4096, 32, 1.5f);
  p.positions = rope::positions(pos32);
  p.out_of_range_flag = flag;
  if (!rope::validate(p).ok()) return cudaErrorInvalidValue;
  cudaError_t e = rope::rope_forward(p, stream);
  p.cos_sin = rope::fused_cos_sin_cache<T>(cos_t, 4096, 64);
  p.positions = rope::positions(pos64);
  e = e != cudaSuccess ? e : rope::rope_backward(p, stream);
  p.cos_sin = rope::cos_sin_table<T>(cos_t, sin_t, 4096, 64);
  e = e != cudaSuccess ? e : rope::rope_forward(p, stream);
  p.cos_sin = rope::computed_cos_sin(inv_freq, 1.2f);
  e = e != cudaSuccess ? e : rope::rope_forward(p, stream);
  e = e != cudaSuccess ? e : rope::rope_forward<T>(qkv, cos, sin, qkv, 16, 128, stream);
  every_device_call<T><<<1, 32, 0, stream>>>(qkv, p.cos_sin, pos64);
  e = e != cudaSuccess ? e : cudaGetLastError();
  e = e != cudaSuccess ? e : every_qk_norm<T, T>(p, qkv + 10 * 128, stream);
#if !defined(ROPE_STRICT_BF16_ONLY)
  e = e != cudaSuccess ? e : every_qk_norm<T, float>(p, inv_freq, stream);  // fp32 weights
#endif
  e = e != cudaSuccess ? e : every_append<T, T>(p, qkv + 6 * 128, reinterpret_cast<T*>(qkv + 8 * 128), pos64, flag, stream);
  return e != cudaSuccess ? e
                          : every_append<T, __nv_fp8_e4m3>(p, qkv + 6 * 128, reinterpret_cast<__nv_fp8_e4m3*>(qkv + 8 * 128),
                                                           pos64, flag, stream);
}

}  // namespace

cudaError_t strict_consumer(float* f32, __half* f16, __nv_bfloat16* bf16, float* inv_freq, float* cos, float* sin,
                            __half* cos_h, __half* sin_h, __nv_bfloat16* cos_b, __nv_bfloat16* sin_b,
                            const std::int32_t* pos32, const std::int64_t* pos64, int* flag, cudaStream_t stream) {
  float host_freq[32];
  float attention = 1.0f;
  const float factors[32] = {};
  const rope::RopeScaling scalings[] = {
      rope::RopeScaling::unscaled(10000.0),
      rope::RopeScaling::linear(10000.0, 2.0),
      rope::RopeScaling::ntk(10000.0, 2.0),
      rope::RopeScaling::dynamic_ntk(10000.0, 2.0, 4096),
      rope::RopeScaling::yarn(10000.0, 4.0, 4096),
      rope::RopeScaling::llama3(500000.0),
      rope::RopeScaling::longrope(10000.0, factors, factors, 4096, 131072),
  };
  for (const rope::RopeScaling& s : scalings) {
    const rope::Status status = rope::compute_inv_freq(s, 64, host_freq, &attention, 8192);
    if (!status.ok()) return status.error;
  }
  float host_cos[64], host_sin[64];
  cudaError_t e = rope::fill_cos_sin_table_host(host_freq, 64, attention, 2, host_cos, host_sin, 32);
  e = e != cudaSuccess ? e : rope::fill_cos_sin_table(inv_freq, 64, attention, 4096, cos, sin, 32, stream);
  e = e != cudaSuccess ? e : rope::fill_cos_sin_table(inv_freq, 64, attention, 4096, cos_h, sin_h, 32, stream);
  e = e != cudaSuccess ? e : rope::fill_cos_sin_table(inv_freq, 64, attention, 4096, cos_b, sin_b, 32, stream);
#if !defined(ROPE_STRICT_BF16_ONLY)
  // The attention prologue compiles for one architecture only: it is the largest instance set.
  {
    rope::RopeParams<__nv_bfloat16> p;
    p.num_tokens = 16;
    p.head_dim = 128;
    p.q = rope::strided_heads<__nv_bfloat16>(bf16, bf16, 4, 8 * 128, 128);
    p.k = rope::strided_heads<__nv_bfloat16>(bf16 + 4 * 128, bf16 + 4 * 128, 2, 8 * 128, 128);
    p.cos_sin = rope::cos_sin_table<float>(cos, sin, 4096, 64);
    p.positions = rope::positions(pos64);
    e = e != cudaSuccess ? e
                         : every_prologue<__nv_bfloat16, __nv_fp8_e4m3>(
                               p, bf16 + 6 * 128, reinterpret_cast<__nv_fp8_e4m3*>(bf16 + 20 * 128), bf16 + 10 * 128,
                               reinterpret_cast<__nv_fp8_e4m3*>(f32), pos64, stream);
  }
#endif
#if defined(ROPE_STRICT_BF16_ONLY)
  // The per-architecture and C++20 compiles: every entry point for bf16 (the element type whose
  // conversions differ most between architectures) and the FP8 cache; sm_90 C++17 compiles all.
  (void)f32;
  (void)f16;
#else
  e = e != cudaSuccess ? e : every_launch<float>(f32, cos, sin, cos, sin, inv_freq, pos32, pos64, flag, stream);
  e = e != cudaSuccess ? e : every_launch<__half>(f16, cos, sin, cos_h, sin_h, inv_freq, pos32, pos64, flag, stream);
#endif
  e = e != cudaSuccess ? e : every_launch<__nv_bfloat16>(bf16, cos, sin, cos_b, sin_b, inv_freq, pos32, pos64, flag, stream);
  return e != cudaSuccess ? e : (rope::last_error_message() != nullptr ? cudaSuccess : cudaErrorUnknown);
}
