// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Input data for the benchmarks: per-set device arrays, random fills, cos/sin tables,
/// frequencies and positions. Values only need to be realistic (finite, |x| <= 1); nothing here
/// is checked for accuracy (the tests do that). Setup runs on the default stream, in order with
/// the cudaMemcpy/cudaMemset calls around it; the benchmarks synchronize before timing.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "timer.cuh"

namespace bench {

__host__ __device__ inline float to_float(float v) { return v; }
__host__ __device__ inline float to_float(__half v) { return __half2float(v); }
__host__ __device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __host__ __device__ T from_float(float v);
template <> __host__ __device__ inline float from_float<float>(float v) { return v; }
template <> __host__ __device__ inline __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __host__ __device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

/// `sets` copies of an array of `count` elements in one allocation, each copy starting on a
/// 256-byte boundary; copy i is `(*this)[i]`. One copy per input set keeps every timed call's
/// inputs out of the L2 (see timer.cuh).
template <typename T>
class SetArray {
 public:
  SetArray() = default;
  SetArray(const SetArray&) = delete;
  SetArray& operator=(const SetArray&) = delete;
  ~SetArray() { cudaFree(data_); }

  std::string allocate(std::size_t count, int sets) {
    const std::size_t align = 256 / sizeof(T);
    stride_ = (count + align - 1) / align * align;
    count_ = count;
    sets_ = sets;
    BENCH_TRY(cudaMalloc(&data_, stride_ * sets * sizeof(T)));
    return {};
  }
  /// Copies `sets * count` packed host values, set after set, into the sets.
  std::string upload(const std::vector<T>& host) {
    BENCH_TRY(cudaMemcpy2D(data_, stride_ * sizeof(T), host.data(), count_ * sizeof(T), count_ * sizeof(T), sets_,
                           cudaMemcpyHostToDevice));
    return {};
  }
  T* operator[](int set) const { return data_ + static_cast<std::size_t>(set) * stride_; }
  T* data() const { return data_; }
  std::size_t count() const { return count_; }
  std::size_t total() const { return stride_ * sets_; }  ///< elements including padding
  std::size_t bytes() const { return count_ * sizeof(T); }  ///< of one set, no padding

 private:
  T* data_ = nullptr;
  std::size_t stride_ = 0, count_ = 0;
  int sets_ = 0;
};

/// A cheap well-mixed hash (splitmix64's finalizer): independent values per element, no state.
__host__ __device__ inline std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

template <typename T>
__global__ void fill_uniform_kernel(T* p, std::size_t n, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x) {
    const float u = static_cast<float>(mix(seed * 0x9e3779b97f4a7c15ull + i) >> 40) * 0x1p-24f;  // [0, 1)
    p[i] = from_float<T>(2.0f * u - 1.0f);
  }
}

/// Fills all sets of `a` (padding too) with uniform values in [-1, 1).
template <typename T>
std::string fill_uniform(const SetArray<T>& a, std::uint64_t seed) {
  fill_uniform_kernel<<<1024, 256>>>(a.data(), a.total(), seed);
  BENCH_TRY(cudaGetLastError());
  return {};
}

/// Inverse frequencies base^(-2i / rotary_dim), i < rotary_dim / 2 (plain RoPE).
inline std::vector<float> inv_freq(double base, int rotary_dim) {
  std::vector<float> f(rotary_dim / 2);
  for (int i = 0; i < rotary_dim / 2; ++i) f[i] = static_cast<float>(std::pow(base, -2.0 * i / rotary_dim));
  return f;
}

__global__ void fill_cos_sin_kernel(float* cos, float* sin, std::int64_t rows, int half, const float* inv_freq) {
  const std::int64_t n = rows * half;
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n; i += std::int64_t{gridDim.x} * blockDim.x) {
    // fp32 angle: these tables only feed timing, so its accuracy at large rows does not matter.
    sincosf(static_cast<float>(i / half) * inv_freq[i % half], &sin[i], &cos[i]);
  }
}

/// Rows [0, rows) of separate cos and sin tables, `half` values per row, packed.
inline std::string fill_cos_sin(float* cos, float* sin, std::int64_t rows, int half, const float* inv_freq_device) {
  fill_cos_sin_kernel<<<1024, 256>>>(cos, sin, rows, half, inv_freq_device);
  BENCH_TRY(cudaGetLastError());
  return {};
}

/// Random positions in [0, rows), `tokens` per set; returns the mean count of distinct
/// positions per set (the cos/sin rows a call must read at least once).
inline double random_positions(std::int64_t tokens, std::int64_t rows, int sets, std::uint64_t seed,
                               std::vector<std::int64_t>& out) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int64_t> pick(0, rows - 1);
  out.assign(static_cast<std::size_t>(tokens) * sets, 0);
  double distinct = 0.0;
  std::vector<unsigned char> seen(static_cast<std::size_t>(rows));
  for (int s = 0; s < sets; ++s) {
    std::fill(seen.begin(), seen.end(), 0);
    for (std::int64_t t = 0; t < tokens; ++t) {
      const std::int64_t p = pick(rng);
      out[static_cast<std::size_t>(s) * tokens + t] = p;
      distinct += seen[p] == 0;
      seen[p] = 1;
    }
  }
  return distinct / sets;
}

/// Positions of a prefill batch: `tokens` split into `sequences` sequences of (nearly) equal
/// length, each counting from 0; the same in every set. Returns the distinct positions per set
/// (the longest sequence's length).
inline double sequence_positions(std::int64_t tokens, int sequences, int sets, std::vector<std::int64_t>& out) {
  out.assign(static_cast<std::size_t>(tokens) * sets, 0);
  const std::int64_t length = (tokens + sequences - 1) / sequences;
  for (int s = 0; s < sets; ++s) {
    for (std::int64_t t = 0; t < tokens; ++t) out[static_cast<std::size_t>(s) * tokens + t] = t % length;
  }
  return static_cast<double>(tokens < length ? tokens : length);
}

/// Multi-axis positions of a batch of Qwen2-VL prompts, as transformers' `get_rope_index`
/// assigns them: each prompt is 96 text tokens, one image of 32 x 32 merged patches and 32 more
/// text tokens, counting from 0. Text tokens take the running index on all three axes; the
/// image's tokens keep the temporal axis at the index where the image starts and count rows and
/// columns from there, and the text after it resumes one past the largest of those. `out` is
/// [sets][3][tokens], the same in every set. Returns the distinct positions per axis.
inline std::vector<double> image_prompt_positions(std::int64_t tokens, int sets, std::vector<std::int64_t>& out) {
  constexpr std::int64_t kTextBefore = 96, kGrid = 32, kTextAfter = 32;
  std::vector<std::int64_t> one(static_cast<std::size_t>(3 * tokens), 0);
  std::int64_t t = 0;
  auto put = [&](std::int64_t a0, std::int64_t a1, std::int64_t a2) {
    if (t >= tokens) return;
    one[static_cast<std::size_t>(t)] = a0;
    one[static_cast<std::size_t>(tokens + t)] = a1;
    one[static_cast<std::size_t>(2 * tokens + t)] = a2;
    ++t;
  };
  while (t < tokens) {
    std::int64_t next = 0;  // each prompt counts from 0
    for (std::int64_t i = 0; i < kTextBefore; ++i, ++next) put(next, next, next);
    for (std::int64_t r = 0; r < kGrid; ++r) {
      for (std::int64_t c = 0; c < kGrid; ++c) put(next, next + r, next + c);
    }
    next += kGrid;
    for (std::int64_t i = 0; i < kTextAfter; ++i, ++next) put(next, next, next);
  }
  out.clear();
  for (int s = 0; s < sets; ++s) out.insert(out.end(), one.begin(), one.end());
  std::vector<double> distinct(3, 0.0);
  for (int a = 0; a < 3; ++a) {
    std::vector<std::int64_t> axis(one.begin() + a * tokens, one.begin() + (a + 1) * tokens);
    std::sort(axis.begin(), axis.end());
    distinct[static_cast<std::size_t>(a)] = static_cast<double>(std::unique(axis.begin(), axis.end()) - axis.begin());
  }
  return distinct;
}

}  // namespace bench
