// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The one place the library launches a kernel: a grid, block and dynamic shared bytes on the
/// caller's stream, as the caller's LaunchOptions say.

#include <cstddef>
#include <utility>

#include <cuda_runtime.h>

#include <rope/detail/host/device_answers.cuh>
#include <rope/launch_options.cuh>

namespace rope {
namespace detail {

/// Launches `kernel(args...)` and returns this launch's own error. A failed launch's error is
/// returned, not left pending, unless an error of the caller's own work was already pending: then
/// nothing is cleared (the runtime keeps the later of the two). Programmatic dependent launch
/// is asked for only where the kernel can honour it (kernel_waits_for_prior_grids).
template <typename... Params, typename... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared_bytes,
                          cudaStream_t stream, const LaunchOptions& options, Args&&... args) {
  cudaLaunchAttribute attributes[1];
  attributes[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attributes[0].val.programmaticStreamSerializationAllowed = 1;
  const bool programmatic = options.programmatic_dependent_launch && kernel_waits_for_prior_grids(kernel);
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = programmatic ? attributes : nullptr;
  config.numAttrs = programmatic ? 1 : 0;
  const bool caller_error_pending = cudaPeekAtLastError() != cudaSuccess;
  const cudaError_t error = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  if (error != cudaSuccess && !caller_error_pending) (void)cudaGetLastError();
  return error;
}

}  // namespace detail
}  // namespace rope
