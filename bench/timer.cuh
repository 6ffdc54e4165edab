// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// How every benchmark is timed. One sample: flush L2 (outside the events), hold the stream
/// with a kernel that waits for the host, enqueue [start event, CUDA graph of `batch` calls,
/// stop event], release. The graph replays `batch` calls back to back, each on its own input
/// set, so no host launch gap and no L2 hit is inside the events; per-call time is the
/// elapsed time / batch. The reported time is the median over `samples` samples.
/// Latency mode instead times one direct launch on an idle stream: host launch cost included.
/// Warm mode (L2::kWarm) replays `batch` calls on the same input set with no flush: the regime
/// of a kernel that reads what the previous kernel just wrote (decode, small prefill).

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <cuda_runtime.h>

namespace bench {

/// "what: cudaErrorName (description)", or empty when `e` is cudaSuccess.
inline std::string cuda_error(const char* what, cudaError_t e) {
  if (e == cudaSuccess) return {};
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

/// Returns the error text from the enclosing function (which returns std::string) on failure.
#define BENCH_TRY(call)                                                        \
  do {                                                                         \
    const std::string bench_error_ = ::bench::cuda_error(#call, (call));       \
    if (!bench_error_.empty()) return bench_error_;                            \
  } while (0)

/// Enqueues call number `set` (0 <= set < batch) on the stream; returns its error code.
using LaunchFn = std::function<cudaError_t(int set, cudaStream_t stream)>;

/// Whether a sample starts with the inputs out of the L2 (flushed, each call on its own input
/// set) or in it (warm: every call on input set 0, nothing flushed).
enum class L2 { kFlushed, kWarm };

/// Waits (on the GPU) until the host sets `*release`, so that everything enqueued behind it
/// is already queued when it starts: the timed region then holds no host launch gaps.
/// Gives up after `timeout_ns` and says so in `*timed_out` rather than hang.
__global__ void wait_for_host(const volatile int* release, volatile int* timed_out,
                              unsigned long long timeout_ns) {
  unsigned long long start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  while (*release == 0) {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    if (now - start > timeout_ns) {
      *timed_out = 1;
      return;
    }
    __nanosleep(1000);
  }
}

/// The benchmark's own stream, events, L2 flush buffer and host handshake; one per process.
class Timer {
 public:
  /// Creates everything; `flush_bytes` should be several times the L2 size.
  std::string init(std::size_t flush_bytes, int samples) {
    samples_ = samples;
    flush_bytes_ = flush_bytes;
    BENCH_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    BENCH_TRY(cudaEventCreate(&start_));
    BENCH_TRY(cudaEventCreate(&stop_));
    BENCH_TRY(cudaMalloc(&flush_, flush_bytes_));
    BENCH_TRY(cudaHostAlloc(reinterpret_cast<void**>(&handshake_), 2 * sizeof(int), cudaHostAllocMapped));
    BENCH_TRY(cudaHostGetDevicePointer(reinterpret_cast<void**>(&handshake_device_), handshake_, 0));
    return {};
  }

  cudaStream_t stream() const { return stream_; }
  int samples() const { return samples_; }
  std::size_t flush_bytes() const { return flush_bytes_; }

  /// Median seconds per call of `launch` over `batch` input sets (graph replay, see above).
  /// `launch` is called directly once per set first: warm-up, and its errors surface here.
  std::string time_batched(const LaunchFn& launch_set, int batch, double& seconds_per_call, L2 l2 = L2::kFlushed) {
    const bool warm = l2 == L2::kWarm;
    const LaunchFn launch = warm ? LaunchFn([&](int, cudaStream_t s) { return launch_set(0, s); }) : launch_set;
    for (int i = 0; i < batch; ++i) BENCH_TRY(launch(i, stream_));
    BENCH_TRY(cudaStreamSynchronize(stream_));
    cudaGraph_t graph = nullptr;
    BENCH_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    cudaError_t captured = cudaSuccess;
    for (int i = 0; i < batch && captured == cudaSuccess; ++i) captured = launch(i, stream_);
    const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
    if (captured != cudaSuccess || ended != cudaSuccess) {
      if (graph != nullptr) cudaGraphDestroy(graph);
      return cuda_error("capturing the timed calls in a CUDA graph", captured != cudaSuccess ? captured : ended);
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t made = cudaGraphInstantiateWithFlags(&exec, graph, 0);
    const cudaError_t destroyed = cudaGraphDestroy(graph);
    BENCH_TRY(made);
    BENCH_TRY(destroyed);
    const std::string error = sample_loop(batch, seconds_per_call, [&] {
      return cudaGraphLaunch(exec, stream_);
    }, /*hold_stream=*/true, /*flush=*/!warm);
    const cudaError_t freed = cudaGraphExecDestroy(exec);
    return error.empty() ? cuda_error("cudaGraphExecDestroy", freed) : error;
  }

  /// Median seconds of one direct launch on an idle stream: includes the host's launch cost,
  /// as a single decode step that nothing else hides would see it.
  std::string time_single(const LaunchFn& launch, double& seconds) {
    BENCH_TRY(launch(0, stream_));  // warm-up
    BENCH_TRY(cudaStreamSynchronize(stream_));
    return sample_loop(1, seconds, [&] { return launch(0, stream_); }, /*hold_stream=*/false, /*flush=*/true);
  }

 private:
  template <typename Enqueue>
  std::string sample_loop(int batch, double& seconds_per_call, Enqueue&& enqueue, bool hold_stream, bool flush) {
    std::vector<double> per_call;
    per_call.reserve(samples_);
    // One unrecorded sample first: the first graph launch uploads the graph.
    for (int s = -1; s < samples_; ++s) {
      // A different fill byte each time, so no sample finds its flush already done.
      if (flush) BENCH_TRY(cudaMemsetAsync(flush_, (s + 2) & 0xff, flush_bytes_, stream_));
      if (hold_stream) {
        handshake_[0] = 0;  // release flag
        handshake_[1] = 0;  // timed-out flag
        wait_for_host<<<1, 1, 0, stream_>>>(handshake_device_, handshake_device_ + 1, 2'000'000'000ull);
        BENCH_TRY(cudaGetLastError());
      } else {
        BENCH_TRY(cudaStreamSynchronize(stream_));
      }
      BENCH_TRY(cudaEventRecord(start_, stream_));
      const cudaError_t queued = enqueue();
      const cudaError_t stopped = cudaEventRecord(stop_, stream_);
      if (hold_stream) __atomic_store_n(&handshake_[0], 1, __ATOMIC_RELEASE);
      BENCH_TRY(queued);
      BENCH_TRY(stopped);
      BENCH_TRY(cudaEventSynchronize(stop_));
      if (hold_stream && __atomic_load_n(&handshake_[1], __ATOMIC_ACQUIRE) != 0) {
        return "the host took over 2 s to enqueue one sample; timing would include host gaps";
      }
      float ms = 0.0f;
      BENCH_TRY(cudaEventElapsedTime(&ms, start_, stop_));
      if (s >= 0) per_call.push_back(1e-3 * ms / batch);
    }
    std::sort(per_call.begin(), per_call.end());
    const std::size_t n = per_call.size();
    seconds_per_call = n % 2 == 1 ? per_call[n / 2] : 0.5 * (per_call[n / 2 - 1] + per_call[n / 2]);
    return {};
  }

  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
  void* flush_ = nullptr;
  std::size_t flush_bytes_ = 0;
  int* handshake_ = nullptr;         // host view: [release, timed_out]
  int* handshake_device_ = nullptr;  // the same two ints, as the GPU sees them
  int samples_ = 0;
};

}  // namespace bench
