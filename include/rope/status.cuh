// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Argument-check results and the reason of the last rejected launch.

#include <cuda_runtime.h>

namespace rope {

/// Result of checking a launch's arguments: `cudaSuccess`, or `cudaErrorInvalidValue` with a
/// static, human-readable reason (CUTLASS's `can_implement` idea; no allocation).
struct Status {
  cudaError_t error = cudaSuccess;  ///< cudaSuccess or cudaErrorInvalidValue
  const char* message = "ok";       ///< static string: the reason, or "ok"

  /// True when the arguments are accepted.
  constexpr bool ok() const { return error == cudaSuccess; }
};

/// A rejection with a static reason.
constexpr Status invalid(const char* why) { return Status{cudaErrorInvalidValue, why}; }

namespace detail {
inline const char*& last_message_slot() {
  thread_local const char* message = "ok";
  return message;
}
}  // namespace detail

/// Why the most recent launcher call on this thread returned an error ("ok" after a success;
/// for CUDA errors from the launch itself, `cudaGetErrorString` of that error). Launchers return
/// their launch's own error: an earlier error of the caller's still pending on this thread is
/// neither returned nor cleared.
inline const char* last_error_message() { return detail::last_message_slot(); }

namespace detail {
inline cudaError_t record(Status s) {
  last_message_slot() = s.message;
  return s.error;
}
inline cudaError_t record(cudaError_t e) {
  last_message_slot() = e == cudaSuccess ? "ok" : cudaGetErrorString(e);
  return e;
}
}  // namespace detail

}  // namespace rope
