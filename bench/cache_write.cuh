// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The unfused baseline's second kernel: writes each token's (already rotated) k and its v into
/// an NHD paged cache at its slot, as vLLM's `reshape_and_cache_flash` does, written well: one
/// block row per token, 16-byte loads (eight bf16), the row of a token contiguous in the cache
/// (NHD: slot * heads * head_dim), FP8 as saturate(x / scale) through CUDA's converter.

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

namespace bench {

/// Eight cache elements from eight bf16 values: a 16-byte store for bf16, 8 bytes for FP8.
template <typename C> struct Eight;
template <> struct Eight<__nv_bfloat16> {
  using Store = uint4;
  __device__ static Store convert(uint4 in, float) { return in; }
};
template <> struct Eight<__nv_fp8_e4m3> {
  using Store = uint2;
  __device__ static Store convert(uint4 in, float scale) {
    const __nv_bfloat16* x = reinterpret_cast<const __nv_bfloat16*>(&in);
    unsigned char b[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) b[i] = __nv_cvt_float_to_fp8(__bfloat162float(x[i]) / scale, __NV_SATFINITE, __NV_E4M3);
    uint2 out;
    out.x = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<unsigned>(b[3]) << 24);
    out.y = b[4] | (b[5] << 8) | (b[6] << 16) | (static_cast<unsigned>(b[7]) << 24);
    return out;
  }
};

/// Block (row_threads, tokens_per_block); k and v of token t are [heads * head_dim] at
/// `k + t * token_stride` (likewise v); a negative slot writes nothing. heads * head_dim % 8 == 0.
template <typename C>
__global__ void write_kv_cache_kernel(const __nv_bfloat16* __restrict__ k, const __nv_bfloat16* __restrict__ v,
                                      std::int64_t token_stride, std::int64_t tokens, int row_elems,
                                      const std::int64_t* __restrict__ slots, C* __restrict__ k_cache,
                                      C* __restrict__ v_cache, float k_scale, float v_scale) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (t >= tokens) return;
  const std::int64_t slot = slots[t];
  if (slot < 0) return;
  const int vectors = row_elems / 8;
  for (int i = threadIdx.x; i < 2 * vectors; i += blockDim.x) {
    const bool is_v = i >= vectors;
    const int e = (is_v ? i - vectors : i) * 8;
    const uint4 in = *reinterpret_cast<const uint4*>((is_v ? v : k) + t * token_stride + e);
    C* dst = (is_v ? v_cache : k_cache) + slot * row_elems + e;
    *reinterpret_cast<typename Eight<C>::Store*>(dst) = Eight<C>::convert(in, is_v ? v_scale : k_scale);
  }
}

/// Launches write_kv_cache_kernel: 256 threads per block, one token per 2 * row / 8 threads.
template <typename C>
cudaError_t write_kv_cache(const __nv_bfloat16* k, const __nv_bfloat16* v, std::int64_t token_stride,
                           std::int64_t tokens, int row_elems, const std::int64_t* slots, C* k_cache, C* v_cache,
                           float k_scale, float v_scale, cudaStream_t stream) {
  const int threads = 2 * row_elems / 8 < 256 ? 2 * row_elems / 8 : 256;
  const int per_block = 256 / threads;
  const dim3 block(static_cast<unsigned>(threads), static_cast<unsigned>(per_block));
  const unsigned grid = static_cast<unsigned>((tokens + per_block - 1) / per_block);
  write_kv_cache_kernel<C><<<grid, block, 0, stream>>>(k, v, token_stride, tokens, row_elems, slots, k_cache, v_cache,
                                                       k_scale, v_scale);
  return cudaGetLastError();
}

/// The unfused baseline's q quantization: token t's q row [row_elems] at `src + t * token_stride`
/// to FP8 as saturate(x / scale) at `dst + t * row_elems`, eight elements per thread.
__global__ void quantize_rows_fp8_kernel(const __nv_bfloat16* __restrict__ src, std::int64_t token_stride,
                                         std::int64_t tokens, int row_elems, __nv_fp8_e4m3* __restrict__ dst,
                                         float scale) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (t >= tokens) return;
  for (int i = threadIdx.x; i < row_elems / 8; i += blockDim.x) {
    const uint4 in = *reinterpret_cast<const uint4*>(src + t * token_stride + i * 8);
    *reinterpret_cast<uint2*>(dst + t * row_elems + i * 8) = Eight<__nv_fp8_e4m3>::convert(in, scale);
  }
}

/// Launches quantize_rows_fp8_kernel: 256 threads per block, one token per row / 8 threads.
inline cudaError_t quantize_rows_fp8(const __nv_bfloat16* src, std::int64_t token_stride, std::int64_t tokens,
                                     int row_elems, __nv_fp8_e4m3* dst, float scale, cudaStream_t stream) {
  const int threads = row_elems / 8 < 256 ? row_elems / 8 : 256;
  const int per_block = 256 / threads;
  const dim3 block(static_cast<unsigned>(threads), static_cast<unsigned>(per_block));
  const unsigned grid = static_cast<unsigned>((tokens + per_block - 1) / per_block);
  quantize_rows_fp8_kernel<<<grid, block, 0, stream>>>(src, token_stride, tokens, row_elems, dst, scale);
  return cudaGetLastError();
}

}  // namespace bench
