// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The GPU the benchmarks run on: its properties (into the JSON context), and the
/// device-to-device copy bandwidth that every `pct_of_copy` counter is relative to.

#include <algorithm>
#include <cstdint>
#include <string>

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include "timer.cuh"

namespace bench {

/// What the whole process shares: the device, its timer, and the copy bandwidth.
struct Gpu {
  cudaDeviceProp prop{};
  std::size_t l2_bytes = 0;
  double copy_bytes_per_s = 0.0;         ///< the ceiling: the faster of the two below
  double memcpy_bytes_per_s = 0.0;       ///< read + write bytes of a 2 GiB cudaMemcpyAsync, per second
  double copy_kernel_bytes_per_s = 0.0;  ///< the same through copy_kernel
  Timer timer;
};

inline Gpu& gpu() {
  static Gpu g;
  return g;
}

/// Input sets per timed sample for calls that each touch `set_bytes`: enough that one sample
/// moves about 16x the L2 size (so event resolution and the L2's contents are noise), at least
/// one, and at most 256 (tiny calls: 256 back-to-back launches are plenty to average).
inline int batch_for(double set_bytes) {
  const double want = 16.0 * static_cast<double>(gpu().l2_bytes) / (set_bytes > 1.0 ? set_bytes : 1.0);
  return want < 1.0 ? 1 : want > 256.0 ? 256 : static_cast<int>(want + 0.999);
}

/// A plain vectorized copy kernel: 16-byte accesses, four in flight per thread, grid-stride.
/// cudaMemcpyAsync's device-to-device path falls well short of the memory roofline on large
/// copies (seen on an H200: ~2.8 TB/s at 2 GiB against ~4.2 TB/s for this kernel), so the
/// ceiling is the faster of the two.
__global__ void copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, std::size_t n) {
  constexpr int kUnroll = 4;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + (kUnroll - 1) * stride < n; i += kUnroll * stride) {
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = src[i + u * stride];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) dst[i + u * stride] = v[u];
  }
  for (; i < n; i += stride) dst[i] = src[i];
}

/// Launches copy_kernel over `bytes` (a multiple of 16) with a full grid: four 16-byte elements
/// per thread, or, for copies smaller than that on one block per SM (a decode step's few KB), one
/// element per thread, so every load is in flight at once instead of a thread's loads following
/// each other (T = 1 of the Llama shapes: 640 elements, one block, three round trips before).
inline cudaError_t launch_copy_kernel(const void* src, void* dst, std::size_t bytes, cudaStream_t s) {
  const std::size_t n = bytes / 16;
  const std::size_t sms = static_cast<std::size_t>(gpu().prop.multiProcessorCount);
  const std::size_t per_thread = n < 4 * 256 * sms ? 1 : 4;
  std::size_t blocks = (n + per_thread * 256 - 1) / (per_thread * 256);
  const std::size_t cap = sms * 8;
  if (blocks > cap * 16) blocks = cap * 16;
  if (blocks == 0) blocks = 1;
  copy_kernel<<<static_cast<unsigned>(blocks), 256, 0, s>>>(static_cast<const uint4*>(src), static_cast<uint4*>(dst), n);
  return cudaGetLastError();
}

/// Measures the copy bandwidth: 2 GiB device-to-device, read + write bytes counted, both with
/// cudaMemcpyAsync and with copy_kernel; the faster is the ceiling.
inline std::string measure_copy_bandwidth() {
  const std::size_t bytes = std::size_t{2} << 30;
  void* src = nullptr;
  void* dst = nullptr;
  BENCH_TRY(cudaMalloc(&src, bytes));
  const cudaError_t got_dst = cudaMalloc(&dst, bytes);
  double memcpy_seconds = 0.0, kernel_seconds = 0.0;
  std::string error = cuda_error("cudaMalloc (copy bandwidth destination)", got_dst);
  if (error.empty()) error = cuda_error("cudaMemset", cudaMemset(src, 1, bytes));
  if (error.empty()) error = cuda_error("cudaDeviceSynchronize", cudaDeviceSynchronize());
  if (error.empty()) {
    error = gpu().timer.time_batched(
        [&](int, cudaStream_t s) { return cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s); }, 1,
        memcpy_seconds);
  }
  if (error.empty()) {
    error = gpu().timer.time_batched([&](int, cudaStream_t s) { return launch_copy_kernel(src, dst, bytes, s); }, 1,
                                     kernel_seconds);
  }
  const cudaError_t freed_src = cudaFree(src), freed_dst = cudaFree(dst);
  if (error.empty()) error = cuda_error("cudaFree (copy bandwidth buffers)", freed_src != cudaSuccess ? freed_src : freed_dst);
  if (error.empty()) {
    gpu().memcpy_bytes_per_s = 2.0 * static_cast<double>(bytes) / memcpy_seconds;
    gpu().copy_kernel_bytes_per_s = 2.0 * static_cast<double>(bytes) / kernel_seconds;
    gpu().copy_bytes_per_s = std::max(gpu().memcpy_bytes_per_s, gpu().copy_kernel_bytes_per_s);
  }
  return error;
}

/// Selects device 0 and gets everything ready; a message saying what is missing otherwise.
inline std::string init_gpu(int samples) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    return "no CUDA device found (" + std::string(e == cudaSuccess ? "0 devices" : cudaGetErrorString(e)) +
           "): rope_bench measures a GPU and needs one";
  }
  Gpu& g = gpu();
  BENCH_TRY(cudaSetDevice(0));
  BENCH_TRY(cudaGetDeviceProperties(&g.prop, 0));
  g.l2_bytes = static_cast<std::size_t>(g.prop.l2CacheSize);
  // 256 MiB, or 4x the L2 where that is larger: every line of the L2 is replaced.
  const std::size_t flush = std::max<std::size_t>(std::size_t{256} << 20, 4 * g.l2_bytes);
  std::string error = g.timer.init(flush, samples);
  if (error.empty()) error = measure_copy_bandwidth();
  return error;
}

/// GPU, driver and method facts, so a JSON file says where and how it was measured.
inline std::string add_context() {
  const Gpu& g = gpu();
  int runtime = 0, driver = 0, mem_khz = 0;
  BENCH_TRY(cudaRuntimeGetVersion(&runtime));
  BENCH_TRY(cudaDriverGetVersion(&driver));
  BENCH_TRY(cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, 0));  // not in cudaDeviceProp since CUDA 13
  auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
  benchmark::AddCustomContext("gpu_name", g.prop.name);
  benchmark::AddCustomContext("gpu_compute_capability", std::to_string(g.prop.major) + "." + std::to_string(g.prop.minor));
  benchmark::AddCustomContext("gpu_sm_count", std::to_string(g.prop.multiProcessorCount));
  benchmark::AddCustomContext("gpu_l2_bytes", std::to_string(g.l2_bytes));
  benchmark::AddCustomContext("gpu_memory_bytes", std::to_string(g.prop.totalGlobalMem));
  benchmark::AddCustomContext("gpu_memory_clock_khz", std::to_string(mem_khz));
  benchmark::AddCustomContext("gpu_memory_bus_width_bits", std::to_string(g.prop.memoryBusWidth));
  // Double data rate: 2 transfers per clock on every bit of the bus.
  const double peak = 2.0 * mem_khz * 1e3 * g.prop.memoryBusWidth / 8.0 / 1e9;
  benchmark::AddCustomContext("gpu_memory_peak_GBps_nominal", std::to_string(peak));
  benchmark::AddCustomContext("cuda_runtime_version", version(runtime));
  benchmark::AddCustomContext("cuda_driver_version", version(driver));
  benchmark::AddCustomContext("copy_GBps", std::to_string(g.copy_bytes_per_s / 1e9));
  benchmark::AddCustomContext("copy_memcpy_GBps", std::to_string(g.memcpy_bytes_per_s / 1e9));
  benchmark::AddCustomContext("copy_kernel_GBps", std::to_string(g.copy_kernel_bytes_per_s / 1e9));
  benchmark::AddCustomContext("timing",
                              "median of " + std::to_string(g.timer.samples()) +
                                  " samples; a sample = CUDA events around a CUDA-graph replay of back-to-back "
                                  "calls on distinct input sets, per call = elapsed / calls; *_latency: one direct "
                                  "launch on an idle stream");
  benchmark::AddCustomContext("l2", "flushed before every sample by a " + std::to_string(g.timer.flush_bytes() >> 20) +
                                        " MiB cudaMemsetAsync outside the events");
  return {};
}

}  // namespace bench
