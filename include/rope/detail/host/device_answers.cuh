// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// What the CUDA runtime says of a device or of a kernel on it (SM count, resident blocks, the
/// shared-memory consent), asked once per process and kept, so that a launch asks the runtime
/// nothing but the current device.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <tuple>

#include <cuda_runtime.h>

namespace rope {
namespace detail {

/// One question to the runtime: `kind` of `kernel` (nullptr: of the device) on `device`, for
/// blocks of `threads` threads with `shared_bytes` of dynamic shared memory.
struct DeviceQuestion {
  enum class Kind : int { kSmCount, kBlocksPerSm, kSharedBytesConsent, kWaitsForPriorGrids };
  Kind kind;
  int device;
  const void* kernel;
  int threads;
  std::size_t shared_bytes;

  bool operator<(const DeviceQuestion& o) const {
    return std::tie(kind, device, kernel, threads, shared_bytes) <
           std::tie(o.kind, o.device, o.kernel, o.threads, o.shared_bytes);
  }
};

#if defined(ROPE_OBSERVE_LAUNCH_PLANS)
/// Tests only: how many questions went to the runtime (answers not yet kept).
inline std::atomic<std::int64_t>& observed_runtime_questions() {
  static std::atomic<std::int64_t> count{0};
  return count;
}
#endif

/// Whether an error is pending on this thread (cudaPeekAtLastError, which clears nothing).
inline bool runtime_error_pending() { return cudaPeekAtLastError() != cudaSuccess; }

/// The runtime's answers, shared by every host thread: readers take a shared lock, the askers of
/// a new question an exclusive one. The answers hold until the process ends (a cudaDeviceReset
/// drops the shared-memory consent; this library does not notice one).
class DeviceAnswers {
 public:
  /// The kept answer to `question`, else `ask(answer)`'s (a cudaError_t-returning call), kept:
  /// `fallback` when the runtime refuses it (that refusal is kept too, and its error cleared).
  /// While an error of the caller's is pending (`error_pending()`), nothing is asked, so none
  /// can replace it: the launch takes `fallback` and a later launch asks again.
  template <typename Ask, typename Pending = bool (*)()>
  std::int64_t answer(const DeviceQuestion& question, std::int64_t fallback, Ask&& ask,
                      Pending error_pending = &runtime_error_pending) {
    {
      std::shared_lock<std::shared_mutex> read(mutex_);
      const auto found = answers_.find(question);
      if (found != answers_.end()) return found->second;
    }
    // The first askers of a question queue here, so the runtime hears each question once.
    std::unique_lock<std::shared_mutex> write(mutex_);
    const auto found = answers_.find(question);
    if (found != answers_.end()) return found->second;
    if (error_pending()) return fallback;
#if defined(ROPE_OBSERVE_LAUNCH_PLANS)
    ++observed_runtime_questions();
#endif
    std::int64_t value = 0;
    if (ask(value) != cudaSuccess) {
      (void)cudaGetLastError();  // not the launch's error: it goes ahead with `fallback`
      value = fallback;
    }
    answers_.emplace(question, value);
    return value;
  }

 private:
  std::shared_mutex mutex_;
  std::map<DeviceQuestion, std::int64_t> answers_;
};

/// The process's one DeviceAnswers, never destroyed (a launch from another thread during exit
/// must not find it gone).
inline DeviceAnswers& device_answers() {
  static DeviceAnswers* answers = new DeviceAnswers;
  return *answers;
}

/// Blocks of `threads` threads of `kernel` that the current device holds at once, or 0 when the
/// runtime cannot say (the launch then takes one block per row of tokens).
template <typename Kernel>
std::int64_t resident_blocks(Kernel kernel, int threads, std::size_t shared_bytes) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 0;  // no device: the launch itself reports it
  using Kind = DeviceQuestion::Kind;
  const std::int64_t sms = device_answers().answer({Kind::kSmCount, device, nullptr, 0, 0}, 0, [&](std::int64_t& v) {
    int count = 0;
    const cudaError_t e = cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device);
    v = count;
    return e;
  });
  const std::int64_t per_sm = device_answers().answer(
      {Kind::kBlocksPerSm, device, reinterpret_cast<const void*>(kernel), threads, shared_bytes}, 0,
      [&](std::int64_t& v) {
        int blocks = 0;
        const cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, shared_bytes);
        v = blocks;
        return e;
      });
  return sms * per_sm;
}

/// Whether `kernel` may take `bytes` of dynamic shared memory on the current device (beyond
/// 48 KiB a kernel must first consent: a function attribute, set here once per device).
template <typename Kernel>
bool consents_to_shared_bytes(Kernel kernel, std::size_t bytes) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  const std::int64_t consents = device_answers().answer(
      {DeviceQuestion::Kind::kSharedBytesConsent, device, reinterpret_cast<const void*>(kernel), 0, bytes}, 0,
      [&](std::int64_t& v) {
        const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   static_cast<int>(bytes));
        v = e == cudaSuccess;
        return e;
      });
  return consents != 0;
}

/// Whether `kernel`'s code for the current device waits for the grids before it under
/// programmatic dependent launch: built for sm_90 or newer (device/grid_dependency.cuh compiles the
/// wait only there). Code JIT-compiled from older PTX, or an older GPU, would not wait, so the
/// launcher then launches without the attribute.
template <typename Kernel>
bool kernel_waits_for_prior_grids(Kernel kernel) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;  // the launch itself reports it
  return device_answers().answer({DeviceQuestion::Kind::kWaitsForPriorGrids, device,
                                  reinterpret_cast<const void*>(kernel), 0, 0},
                                 0, [&](std::int64_t& v) {
                                   cudaFuncAttributes attributes{};
                                   const cudaError_t e = cudaFuncGetAttributes(&attributes, kernel);
                                   v = attributes.ptxVersion >= 90;
                                   return e;
                                 }) != 0;
}

}  // namespace detail
}  // namespace rope
