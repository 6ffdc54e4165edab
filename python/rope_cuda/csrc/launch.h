// SPDX-License-Identifier: MIT
#pragma once

// The one bridge between the torch binding (compiled by the host compiler) and the library's
// kernels (compiled by nvcc in launch.cu). Keeping ATen out of the .cu file and the kernels out of
// the .cpp files keeps each translation unit small and quick to build.

#include <cuda_runtime.h>

#include <cuda_fp8.h>

#include <rope/kv_cache_types.cuh>
#include <rope/qk_norm_types.cuh>
#include <rope/types.cuh>

namespace rope_cuda {

/// rope::rope_forward (inverse = false) or rope::rope_backward (inverse = true) on `stream`,
/// with programmatic dependent launch when `programmatic` (rope::LaunchOptions).
/// Instantiated for float, __half and __nv_bfloat16 in launch.cu.
template <typename T>
cudaError_t launch(const rope::RopeParams<T>& params, bool inverse, cudaStream_t stream, bool programmatic);

/// rope::rope_forward_append on `stream` (caches of T or FP8 E4M3), likewise.
template <typename T, typename C>
cudaError_t launch_append(const rope::RopeParams<T>& params, const rope::KvCacheAppend<T, C>& append,
                          cudaStream_t stream, bool programmatic);

/// rope::rope_forward_qk_norm on `stream` (weights in the tensors' type), likewise.
template <typename T>
cudaError_t launch_qk_norm(const rope::RopeParams<T>& params, const rope::QkNorm<T, T>& norm, cudaStream_t stream,
                           bool programmatic);

}  // namespace rope_cuda
