// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Device API, part 3: programmatic dependent launch (Hopper and newer). A kernel launched with
/// the programmatic stream serialization attribute may start while the kernel before it on the
/// stream is still running; it must then wait before it reads anything that kernel wrote. The
/// library's kernels call these two functions, and so can the kernels you chain with them:
///
/// - `wait_for_prior_grids()` before the first read of the previous kernel's results;
/// - `launch_dependent_grids()` once the kernel's reads no longer need its SM slots to itself,
///   so that the next kernel (if launched with the attribute) starts its own launch and setup.
///
/// Both do nothing when the kernel was launched without the attribute, before sm_90, and in host
/// code (the per-token body's host tests), so they cost a kernel at most one instruction each.

#include <rope/config.cuh>

namespace rope {
namespace device {

/// Waits until every kernel this one programmatically depends on has completed and its memory
/// operations are visible (PTX `griddepcontrol.wait`); returns at once when there is none.
ROPE_HOST_DEVICE void wait_for_prior_grids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/// Lets the kernel that depends on this one launch once every block of this one has called this
/// or exited (PTX `griddepcontrol.launch_dependents`). It makes none of this kernel's writes
/// visible early: the dependent's own wait_for_prior_grids() still waits for this kernel to end.
ROPE_HOST_DEVICE void launch_dependent_grids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::);
#endif
}

}  // namespace device
}  // namespace rope
