// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// How a launcher launches, beside the stream it launches on.

namespace rope {

/// Options every launcher takes after its stream; the defaults launch as `<<<...>>>` does.
struct LaunchOptions {
  /// Programmatic dependent launch (sm_90 and newer): the kernel is launched with the
  /// programmatic stream serialization attribute, so its launch and setup may overlap the end of
  /// the kernel before it on the stream. It still reads nothing before that kernel has completed
  /// and its writes are visible (rope/device/grid_dependency.cuh), so results do not change. It
  /// saves time only when the kernel before it lets dependents launch early (as rope's own kernels
  /// do); the next kernel overlaps rope's end when it is launched with the attribute too. Works
  /// under CUDA graph capture. The attribute is set only where the kernel's code for the device
  /// was built for sm_90 or newer (the code that waits); elsewhere the option changes nothing.
  bool programmatic_dependent_launch = false;
};

}  // namespace rope
