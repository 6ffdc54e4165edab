// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The one place the library launches a kernel: a plan's shape, the caller's stream and options.

#include <utility>

#include <cuda_runtime.h>

#include <rope/detail/host/launch_plan.cuh>
#include <rope/launch_options.cuh>

namespace rope {
namespace detail {

/// Launches `kernel(args...)` with `plan`'s grid, block and dynamic shared bytes on `stream`, as
/// `options` say, and returns this launch's own error. Unlike `<<<...>>>` followed by
/// cudaGetLastError, this leaves an earlier error of the caller's own work pending for the caller.
template <typename... Params, typename... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), const LaunchPlan& plan, cudaStream_t stream,
                          const LaunchOptions& options, Args&&... args) {
  cudaLaunchAttribute attributes[1];
  attributes[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attributes[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = plan.grid();
  config.blockDim = plan.block();
  config.dynamicSmemBytes = plan.shared_bytes;
  config.stream = stream;
  config.attrs = options.programmatic_dependent_launch ? attributes : nullptr;
  config.numAttrs = options.programmatic_dependent_launch ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace detail
}  // namespace rope
