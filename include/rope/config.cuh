// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Compiler glue shared by every rope header.

#include <cuda_runtime.h>

/// Marks code that runs both in kernels and in host tests of the per-token body.
#define ROPE_HOST_DEVICE __host__ __device__ __forceinline__

/// `#pragma unroll` in device compilation only: host compilers do not know the pragma and warn
/// about it under -Wall, and the body's loops also compile for the host.
#if defined(__CUDA_ARCH__)
#define ROPE_UNROLL _Pragma("unroll")
#else
#define ROPE_UNROLL
#endif

/// Kernels get hidden visibility so two shared libraries that both include rope
/// do not export (and then clash on) the same template instances; CCCL does the same.
#if defined(_WIN32)
#define ROPE_KERNEL __global__
#else
#define ROPE_KERNEL __global__ __attribute__((visibility("hidden")))
#endif

/// Library version (also in CMake's ropeConfigVersion.cmake).
#define ROPE_VERSION_MAJOR 0
#define ROPE_VERSION_MINOR 1
#define ROPE_VERSION_PATCH 0
