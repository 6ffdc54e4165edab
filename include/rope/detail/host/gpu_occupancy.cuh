// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// What the current GPU holds of a per-token kernel instance, as plan_launch asks it: the
/// launcher's answer, from the CUDA runtime's occupancy calculator, asked once per device and
/// instance (device_answers.cuh).

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include <rope/detail/host/device_answers.cuh>
#include <rope/detail/host/dispatch.cuh>
#include <rope/detail/device/kernel.cuh>
#include <rope/detail/device/staging.cuh>

namespace rope {
namespace detail {

/// The occupancy of rotate_tokens_kernel's instances for launches with tuning `Policy`, element
/// type T, append mode `Append` and norm mode `Norm`.
template <typename Policy, typename T, typename Append, typename Norm>
struct GpuOccupancy {
  std::int64_t resident_blocks(const Instance& instance, int threads, std::size_t shared_bytes) const {
    std::int64_t resident = 0;
    with_instance<Policy, T, Norm>(instance, [&](auto style, auto vec, auto head_batch, auto axes) {
      resident = detail::resident_blocks(
          rotate_tokens_kernel<T, Policy, decltype(style)::value, decltype(vec)::value, decltype(head_batch)::value,
                               decltype(axes)::value, Append, Norm>,
          threads, shared_bytes);
    });
    return resident;
  }

  /// Beyond 48 KiB a kernel must first consent (a function attribute). It is set to what the
  /// instance's largest block stages, so that launches of other block shapes (from other host
  /// threads too) never lower it under one another. If the runtime refuses, the launch does not
  /// stage. The attribute is set once per device and instance.
  bool consents_to_shared_bytes(const Instance& instance, std::size_t bytes) const {
    if (bytes <= static_cast<std::size_t>(kDynamicSharedBytesWithoutOptIn)) return true;
    bool consents = false;
    with_instance<Policy, T, Norm>(instance, [&](auto style, auto vec, auto head_batch, auto axes) {
      constexpr int kLaneSlots =
          kStageLaneSlots<T, decltype(style)::value, decltype(vec)::value, decltype(head_batch)::value>;
      const auto kernel = rotate_tokens_kernel<T, Policy, decltype(style)::value, decltype(vec)::value,
                                               decltype(head_batch)::value, decltype(axes)::value, Append, Norm>;
      consents = detail::consents_to_shared_bytes(kernel, stage_bytes(Policy::kMaxBlockThreads, kLaneSlots));
    });
    return consents;
  }
};

}  // namespace detail
}  // namespace rope
