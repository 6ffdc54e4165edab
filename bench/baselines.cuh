// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// What the library is compared with, in the same binary and with the same bytes counted:
/// an eager-PyTorch-like chain of elementwise kernels, the straightforward fused kernel,
/// and an empty kernel (the floor for launch-bound calls). The copy ceiling is the faster of
/// cudaMemcpyAsync and device.cuh's copy kernel, both registered in rope_bench.cu.

#include <cstdint>

#include <cuda_runtime.h>

#include "workloads.cuh"

namespace bench {

/// One thread, no work: its time is pure launch overhead.
__global__ void empty_kernel() {}

// ---- unfused: y = cat(x1 * cos - x2 * sin, x1 * sin + x2 * cos), one kernel per operator ----
// Intermediates are in T, as in HF models (cos/sin are cast to x's dtype once per forward; that
// cast is not timed here). One thread per element, scalar accesses, like PyTorch's generic
// elementwise path.

inline unsigned blocks_for(std::int64_t n) { return static_cast<unsigned>((n + 255) / 256); }

template <typename T>
__global__ void slice_columns(const T* src, T* dst, std::int64_t rows, int src_cols, int first, int cols) {
  const std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (i < rows * cols) dst[i] = src[i / cols * src_cols + first + i % cols];
}

template <typename T>
__global__ void multiply(const T* a, const float* b, T* out, std::int64_t n) {
  const std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (i < n) out[i] = from_float<T>(to_float(a[i]) * b[i]);
}

template <typename T, bool kAdd>
__global__ void add_or_subtract(const T* a, const T* b, T* out, std::int64_t n) {
  const std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (i < n) out[i] = from_float<T>(kAdd ? to_float(a[i]) + to_float(b[i]) : to_float(a[i]) - to_float(b[i]));
}

template <typename T>
__global__ void concatenate(const T* a, const T* b, T* out, std::int64_t rows, int cols) {
  const std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (i >= rows * 2 * cols) return;
  const std::int64_t r = i / (2 * cols);
  const int c = static_cast<int>(i % (2 * cols));
  out[i] = c < cols ? a[r * cols + c] : b[r * cols + c - cols];
}

/// The unfused chain's intermediate buffers ([rows, half] each): shared by all input sets, as
/// a caching allocator would hand the same blocks back on every call.
template <typename T>
struct UnfusedScratch {
  SetArray<T> buffers;  // 8 "sets": x1, x2, x1*cos, x2*sin, difference, x1*sin, x2*cos, sum
  std::string allocate(std::int64_t rows, int half) { return buffers.allocate(static_cast<std::size_t>(rows) * half, 8); }
};

/// Nine launches: two slices, four products, a difference, a sum, a concatenation.
template <typename T>
cudaError_t unfused_rope(const T* x, const float* cos, const float* sin, T* y, std::int64_t rows, int head_dim,
                         const UnfusedScratch<T>& s, cudaStream_t stream) {
  const int half = head_dim / 2;
  const std::int64_t n = rows * half;
  const SetArray<T>& b = s.buffers;
  T *x1 = b[0], *x2 = b[1], *x1c = b[2], *x2s = b[3], *lo = b[4], *x1s = b[5], *x2c = b[6], *hi = b[7];
  const unsigned g = blocks_for(n);
  slice_columns<<<g, 256, 0, stream>>>(x, x1, rows, head_dim, 0, half);
  slice_columns<<<g, 256, 0, stream>>>(x, x2, rows, head_dim, half, half);
  multiply<<<g, 256, 0, stream>>>(x1, cos, x1c, n);
  multiply<<<g, 256, 0, stream>>>(x2, sin, x2s, n);
  add_or_subtract<T, false><<<g, 256, 0, stream>>>(x1c, x2s, lo, n);
  multiply<<<g, 256, 0, stream>>>(x1, sin, x1s, n);
  multiply<<<g, 256, 0, stream>>>(x2, cos, x2c, n);
  add_or_subtract<T, true><<<g, 256, 0, stream>>>(x1s, x2c, hi, n);
  concatenate<<<blocks_for(2 * n), 256, 0, stream>>>(lo, hi, y, rows, half);
  return cudaGetLastError();
}

// ---- naive fused: one thread per rotation pair, scalar loads, cos/sin re-read for every head ----

/// q [tokens, q_heads, head_dim] and k [tokens, k_heads, head_dim], packed, half-split pairs,
/// full rotary; cos/sin fp32 tables with `half` values per row; `positions` may be null
/// (row = token). `y` may equal `x`.
template <typename T>
__global__ void naive_fused_rope(const T* qx, T* qy, int q_heads, const T* kx, T* ky, int k_heads,
                                 const std::int64_t* positions, const float* cos, const float* sin,
                                 std::int64_t tokens, int head_dim) {
  const int half = head_dim / 2, heads = q_heads + k_heads;
  const std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (i >= tokens * heads * half) return;
  const int pair = static_cast<int>(i % half);
  const int h = static_cast<int>(i / half % heads);
  const std::int64_t t = i / half / heads;
  const std::int64_t row = positions != nullptr ? positions[t] : t;
  const float c = cos[row * half + pair], s = sin[row * half + pair];
  const bool in_q = h < q_heads;
  const std::int64_t offset = in_q ? (t * q_heads + h) * head_dim : (t * k_heads + h - q_heads) * head_dim;
  const T* x = (in_q ? qx : kx) + offset;
  T* y = (in_q ? qy : ky) + offset;
  const float x1 = to_float(x[pair]), x2 = to_float(x[pair + half]);
  y[pair] = from_float<T>(x1 * c - x2 * s);
  y[pair + half] = from_float<T>(x1 * s + x2 * c);
}

template <typename T>
cudaError_t naive_fused(const T* qx, T* qy, int q_heads, const T* kx, T* ky, int k_heads,
                        const std::int64_t* positions, const float* cos, const float* sin, std::int64_t tokens,
                        int head_dim, cudaStream_t stream) {
  naive_fused_rope<<<blocks_for(tokens * (q_heads + k_heads) * (head_dim / 2)), 256, 0, stream>>>(
      qx, qy, q_heads, kx, ky, k_heads, positions, cos, sin, tokens, head_dim);
  return cudaGetLastError();
}

}  // namespace bench
