// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// A decode step's chain around rope: a producer that writes q and k (standing in for the QKV
/// projection's epilogue), rope, and a consumer that reads the rotated q and k (standing in for
/// attention). Both stand-ins start as programmatic dependent launch asks (wait for the kernel
/// before, then let the next one launch), so the chain can be timed launched one after another or
/// with each launch overlapping the end of the kernel before it.

#include <cstdint>

#include <cuda_runtime.h>

#include <rope/device/grid_dependency.cuh>

#include "workloads.cuh"

namespace bench {

/// Writes q[0, q_n) and k[0, k_n): a value per element, as the projection's epilogue would.
template <typename T>
__global__ void chain_producer(T* q, std::int64_t q_n, T* k, std::int64_t k_n, float seed) {
  rope::device::wait_for_prior_grids();
  rope::device::launch_dependent_grids();
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < q_n + k_n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    (i < q_n ? q[i] : k[i - q_n]) = from_float<T>(seed + static_cast<float>(i & 15) * 0.0625f);
  }
}

/// Reads q[0, q_n) and k[0, k_n) and adds what it read into *sum, one atomic per warp.
template <typename T>
__global__ void chain_consumer(const T* q, std::int64_t q_n, const T* k, std::int64_t k_n, float* sum) {
  rope::device::wait_for_prior_grids();
  rope::device::launch_dependent_grids();
  float s = 0.0f;
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < q_n + k_n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    s += to_float(i < q_n ? q[i] : k[i - q_n]);
  }
  for (int offset = 16; offset > 0; offset /= 2) s += __shfl_down_sync(0xffffffffu, s, offset);
  if (threadIdx.x % 32 == 0) atomicAdd(sum, s);
}

}  // namespace bench
