// SPDX-License-Identifier: MIT
// GPU hardening tests: what the launcher promises beyond the arithmetic. 64-bit indexing of
// tensors past 2^31 elements, capture in a CUDA graph (no allocation, no synchronization, replay
// on new data), launches on other devices and streams, and launchers that return without
// waiting for the GPU. Without a CUDA device every test is skipped.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <rope/rope.cuh>

#include "harness.hpp"
#include "reference.hpp"

namespace {

using rope_test::Tolerance;

#define ROPE_ASSERT_CUDA(expr)                                                              \
  do {                                                                                      \
    const cudaError_t rope_err_ = (expr);                                                   \
    ASSERT_EQ(rope_err_, cudaSuccess) << #expr << ": " << cudaGetErrorString(rope_err_);    \
  } while (0)

#define ROPE_EXPECT_CUDA(expr)                                                              \
  do {                                                                                      \
    const cudaError_t rope_err_ = (expr);                                                   \
    EXPECT_EQ(rope_err_, cudaSuccess) << #expr << ": " << cudaGetErrorString(rope_err_);    \
  } while (0)

/// Makes `device` current for a scope and restores the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    cudaGetDevice(&previous_);
    cudaSetDevice(device);
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

/// Busy-waits `ns` nanoseconds of GPU time: something long-running to enqueue work behind.
/// %globaltimer is wall-clock time, so the wait does not depend on the SM clock.
__global__ void spin_kernel(unsigned long long ns) {
  unsigned long long start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < ns);
}

constexpr unsigned long long kMillisecond = 1000000ull;

/// One q/k launch on one device, its inputs, and its check against the CPU reference. Outputs are
/// separate from inputs (out of place), so the same inputs can be run any number of times.
/// Every copy here is followed by a device synchronization: the launches under test may run on
/// non-blocking streams, which do not wait for the legacy-stream copies.
template <typename T>
class DeviceProblem {
 public:
  struct Shape {
    std::int64_t tokens = 1000;
    int q_heads = 8;
    int k_heads = 2;
    int head_dim = 128;
    int rotary_dim = 0;  // 0: the whole head
    rope::Style style = rope::Style::kHalfSplit;
    bool computed = false;           // else an fp32 table indexed by int32 positions
    std::int64_t table_rows = 4096;  // table mode
  };

  DeviceProblem(int device, const Shape& shape, std::uint64_t seed) : device_(device), s_(shape), rng_(seed) {
    DeviceGuard guard(device_);
    const int rot = rotary_dim();
    q_elems_ = s_.tokens * s_.q_heads * s_.head_dim;
    k_elems_ = s_.tokens * s_.k_heads * s_.head_dim;
    alloc(&xq_, q_elems_);
    alloc(&yq_, q_elems_);
    if (s_.k_heads > 0) {
      alloc(&xk_, k_elems_);
      alloc(&yk_, k_elems_);
    }
    alloc(&pos_, s_.tokens);
    // cos/sin table of random angles, or the plain base-10000 frequencies.
    ref_.tokens = s_.tokens;
    ref_.head_dim = s_.head_dim;
    ref_.rotary_dim = rot;
    ref_.interleaved = s_.style == rope::Style::kInterleaved;
    ref_.computed = s_.computed;
    if (s_.computed) {
      std::vector<float> f(rot / 2);
      for (int i = 0; i < rot / 2; ++i) {
        f[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / rot));
        ref_.inv_freq.push_back(f[i]);
      }
      alloc(&inv_freq_, f.size());
      copy_in(inv_freq_, f);
    } else {
      std::vector<float> c(s_.table_rows * (rot / 2)), s(c.size());
      std::uniform_real_distribution<double> angle(-3.2, 3.2);
      for (std::size_t i = 0; i < c.size(); ++i) {
        const double a = angle(rng_);
        c[i] = static_cast<float>(std::cos(a));
        s[i] = static_cast<float>(std::sin(a));
      }
      ref_.cos_table.assign(c.begin(), c.end());
      ref_.sin_table.assign(s.begin(), s.end());
      ref_.table_rows = s_.table_rows;
      ref_.table_row_stride = rot / 2;
      alloc(&cos_, c.size());
      alloc(&sin_, s.size());
      copy_in(cos_, c);
      copy_in(sin_, s);
    }
    new_inputs();
  }

  ~DeviceProblem() {
    DeviceGuard guard(device_);
    for (void* p : {static_cast<void*>(xq_), static_cast<void*>(yq_), static_cast<void*>(xk_),
                    static_cast<void*>(yk_), static_cast<void*>(pos_), static_cast<void*>(cos_),
                    static_cast<void*>(sin_), static_cast<void*>(inv_freq_)}) {
      if (p != nullptr) cudaFree(p);
    }
  }
  DeviceProblem(const DeviceProblem&) = delete;
  DeviceProblem& operator=(const DeviceProblem&) = delete;

  /// The first CUDA error of construction or of a copy (cudaSuccess if none).
  cudaError_t error() const { return error_; }

  /// Fresh random x and positions (repeated, out of order) written into the same buffers.
  void new_inputs() {
    DeviceGuard guard(device_);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    hq_.resize(q_elems_);
    hk_.resize(k_elems_);
    for (T& v : hq_) v = rope::detail::from_float<T>(u(rng_));
    for (T& v : hk_) v = rope::detail::from_float<T>(u(rng_));
    const std::int64_t limit = s_.computed ? (std::int64_t{1} << 20) : s_.table_rows;
    std::uniform_int_distribution<std::int64_t> pick(0, limit - 1);
    std::vector<std::int32_t> pos(s_.tokens);
    ref_.positions.resize(s_.tokens);
    for (std::int64_t t = 0; t < s_.tokens; ++t) ref_.positions[t] = pos[t] = static_cast<std::int32_t>(pick(rng_));
    copy_in(xq_, hq_);
    if (s_.k_heads > 0) copy_in(xk_, hk_);
    copy_in(pos_, pos);
    note(cudaDeviceSynchronize());
  }

  /// Fills the outputs with NaN (all-ones bits are NaN in float, half and bf16).
  void poison_outputs() {
    DeviceGuard guard(device_);
    note(cudaMemset(yq_, 0xFF, q_elems_ * sizeof(T)));
    if (s_.k_heads > 0) note(cudaMemset(yk_, 0xFF, k_elems_ * sizeof(T)));
    note(cudaDeviceSynchronize());
  }

  rope::RopeParams<T> params() const {
    rope::RopeParams<T> p;
    p.num_tokens = s_.tokens;
    p.head_dim = s_.head_dim;
    p.rotary_dim = s_.rotary_dim;
    p.style = s_.style;
    p.q = rope::packed_heads<T>(xq_, yq_, s_.q_heads, s_.head_dim);
    if (s_.k_heads > 0) p.k = rope::packed_heads<T>(xk_, yk_, s_.k_heads, s_.head_dim);
    p.cos_sin = s_.computed ? rope::computed_cos_sin(inv_freq_)
                            : rope::cos_sin_table(cos_, sin_, s_.table_rows, rotary_dim() / 2);
    p.positions = rope::positions(pos_);
    return p;
  }

  /// Copies both outputs to the host (the caller has synchronized the launch's stream).
  cudaError_t download(std::vector<T>& yq, std::vector<T>& yk) {
    DeviceGuard guard(device_);
    yq.resize(q_elems_);
    yk.resize(k_elems_);
    note(cudaMemcpy(yq.data(), yq_, q_elems_ * sizeof(T), cudaMemcpyDeviceToHost));
    if (s_.k_heads > 0) note(cudaMemcpy(yk.data(), yk_, k_elems_ * sizeof(T), cudaMemcpyDeviceToHost));
    return error_;
  }

  /// Outputs against the reference: relative L2 and max abs at T's rounding, no NaN.
  ::testing::AssertionResult check(const std::vector<T>& yq, const std::vector<T>& yk, bool backward) {
    ref_.backward = backward;
    double err2 = 0, ref2 = 0, max_abs = 0;
    std::vector<double> x(s_.head_dim), want(s_.head_dim);
    auto one = [&](const std::vector<T>& in, const std::vector<T>& out, int heads, const char* name) {
      for (std::int64_t t = 0; t < s_.tokens; ++t) {
        for (int h = 0; h < heads; ++h) {
          const std::int64_t at = (t * heads + h) * s_.head_dim;
          for (int d = 0; d < s_.head_dim; ++d) x[d] = rope::detail::to_float(in[at + d]);
          rope_test::reference_head(ref_, t, x.data(), want.data());
          for (int d = 0; d < s_.head_dim; ++d) {
            const double got = rope::detail::to_float(out[at + d]);
            if (std::isnan(got)) {
              return ::testing::AssertionFailure() << name << " NaN (unwritten?) at token " << t << " head " << h
                                                   << " dim " << d << " on device " << device_;
            }
            err2 += (got - want[d]) * (got - want[d]);
            ref2 += want[d] * want[d];
            max_abs = std::max(max_abs, std::fabs(got - want[d]));
          }
        }
      }
      return ::testing::AssertionSuccess();
    };
    ::testing::AssertionResult r = one(hq_, yq, s_.q_heads, "q");
    if (!r) return r;
    r = one(hk_, yk, s_.k_heads, "k");
    if (!r) return r;
    const double rel = std::sqrt(err2 / ref2);
    if (!(rel <= Tolerance<T>::kRelL2) || !(max_abs <= Tolerance<T>::kMaxAbs)) {
      return ::testing::AssertionFailure() << "relative L2 error " << rel << ", max abs " << max_abs << " on device "
                                           << device_ << (backward ? " (backward)" : " (forward)");
    }
    return ::testing::AssertionSuccess();
  }

  /// Downloads and checks (after the caller's launch and stream synchronization).
  ::testing::AssertionResult download_and_check(bool backward) {
    std::vector<T> yq, yk;
    const cudaError_t e = download(yq, yk);
    if (e != cudaSuccess) return ::testing::AssertionFailure() << "download: " << cudaGetErrorString(e);
    return check(yq, yk, backward);
  }

  T* q_output() const { return yq_; }
  std::int64_t q_elements() const { return q_elems_; }

 private:
  int rotary_dim() const { return s_.rotary_dim == 0 ? s_.head_dim : s_.rotary_dim; }
  void note(cudaError_t e) {
    if (error_ == cudaSuccess) error_ = e;
  }
  template <typename E>
  void alloc(E** p, std::size_t n) {
    note(cudaMalloc(reinterpret_cast<void**>(p), std::max<std::size_t>(n, 1) * sizeof(E)));
  }
  template <typename E>
  void copy_in(E* dst, const std::vector<E>& src) {
    if (!src.empty() && dst != nullptr) note(cudaMemcpy(dst, src.data(), src.size() * sizeof(E), cudaMemcpyHostToDevice));
  }

  int device_;
  Shape s_;
  std::mt19937_64 rng_;
  cudaError_t error_ = cudaSuccess;
  std::int64_t q_elems_ = 0, k_elems_ = 0;
  T *xq_ = nullptr, *yq_ = nullptr, *xk_ = nullptr, *yk_ = nullptr;
  std::int32_t* pos_ = nullptr;
  float *cos_ = nullptr, *sin_ = nullptr, *inv_freq_ = nullptr;
  std::vector<T> hq_, hk_;
  rope_test::ReferenceInput ref_;
};

/// A stream created for one test and destroyed after it.
class OwnedStream {
 public:
  explicit OwnedStream(unsigned flags = cudaStreamNonBlocking) { error_ = cudaStreamCreateWithFlags(&s_, flags); }
  ~OwnedStream() {
    if (s_ != nullptr) cudaStreamDestroy(s_);
  }
  OwnedStream(const OwnedStream&) = delete;
  OwnedStream& operator=(const OwnedStream&) = delete;
  cudaStream_t get() const { return s_; }
  cudaError_t error() const { return error_; }

 private:
  cudaStream_t s_ = nullptr;
  cudaError_t error_ = cudaSuccess;
};

// ---------------------------------------------------------------------------------------------
// 64-bit indexing: one tensor of more than 2^31 elements. An int32 element offset anywhere
// (token * token_stride, a block index times tokens per block, ...) would wrap and write the
// wrong place, so the tokens past element 2^31 are the ones checked.

/// The value of element i of x, computable on host and device alike (the tensor is too large to
/// build on the host): a hash of the index, in [-1, 1).
__host__ __device__ inline float hashed_value(std::uint64_t i) {
  std::uint64_t z = i * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 8388608.0f) - 1.0f;  // 24 bits -> exact in fp32
}

__global__ void fill_hashed(__nv_bfloat16* x, std::int64_t n) {
  const std::int64_t step = std::int64_t{gridDim.x} * blockDim.x;
  for (std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += step) {
    x[i] = __float2bfloat16_rn(hashed_value(static_cast<std::uint64_t>(i)));
  }
}

struct BigTensor {
  static constexpr int kHeads = 32, kHeadDim = 128;
  static constexpr std::int64_t kTokenElems = std::int64_t{kHeads} * kHeadDim;
  // 1024 tokens past 2^31 elements: 2^31 + 4 Mi elements, 4.3 GB of bf16.
  static constexpr std::int64_t kTokens = (std::int64_t{1} << 31) / kTokenElems + 1024;
  static constexpr std::int64_t kElems = kTokens * kTokenElems;
  static_assert(kElems > (std::int64_t{1} << 31), "the tensor must pass 2^31 elements");
  static constexpr std::int64_t kTableRows = 8192;

  /// Tokens checked: the first ones, those on either side of element 2^31, spread samples, the last.
  static std::vector<std::int64_t> checked_tokens() {
    const std::int64_t boundary = (std::int64_t{1} << 31) / kTokenElems;  // first token at element >= 2^31
    std::vector<std::int64_t> t = {0, 1, 2, 3, boundary - 2, boundary - 1, boundary, boundary + 1};
    for (std::int64_t i = 1; i < 16; ++i) t.push_back(i * (kTokens / 16) + i);
    for (std::int64_t i = kTokens - 16; i < kTokens; ++i) t.push_back(i);
    return t;
  }
};

/// Rotates the >2^31-element tensor in place with `cos_sin` and `positions` (device pointers;
/// `host_position(t)`, `host_cos_sin(t, i, c, s)` give the same on the host for the reference).
template <typename PosFn, typename CosSinFn>
void run_big_tensor(const rope::CosSin& cos_sin, rope::Positions positions, PosFn host_position,
                    CosSinFn host_cos_sin, __nv_bfloat16* x) {
  using B = BigTensor;
  fill_hashed<<<4096, 256>>>(x, B::kElems);
  ROPE_ASSERT_CUDA(cudaGetLastError());
  rope::RopeParams<__nv_bfloat16> p;
  p.num_tokens = B::kTokens;
  p.head_dim = B::kHeadDim;
  p.q = rope::packed_heads<__nv_bfloat16>(x, x, B::kHeads, B::kHeadDim);
  p.cos_sin = cos_sin;
  p.positions = positions;
  ROPE_ASSERT_CUDA(rope::rope_forward(p));
  ROPE_ASSERT_CUDA(cudaDeviceSynchronize());

  // Copy back only the checked tokens, and compare each with the reference of that token alone.
  std::vector<__nv_bfloat16> got(B::kTokenElems);
  const int half = B::kHeadDim / 2;
  for (std::int64_t t : B::checked_tokens()) {
    ROPE_ASSERT_CUDA(cudaMemcpy(got.data(), x + t * B::kTokenElems, B::kTokenElems * sizeof(__nv_bfloat16),
                                cudaMemcpyDeviceToHost));
    const std::int64_t pos = host_position(t);
    double err2 = 0, ref2 = 0, max_abs = 0;
    for (int h = 0; h < B::kHeads; ++h) {
      const std::int64_t base = t * B::kTokenElems + std::int64_t{h} * B::kHeadDim;
      for (int i = 0; i < half; ++i) {
        // The input as the fill kernel stored it (bf16-rounded), then the half-split rotation.
        const double x1 = __bfloat162float(__float2bfloat16_rn(hashed_value(static_cast<std::uint64_t>(base + i))));
        const double x2 =
            __bfloat162float(__float2bfloat16_rn(hashed_value(static_cast<std::uint64_t>(base + i + half))));
        double c, s;
        host_cos_sin(pos, i, c, s);
        const double want[2] = {x1 * c - x2 * s, x1 * s + x2 * c};
        const double have[2] = {__bfloat162float(got[h * B::kHeadDim + i]),
                                __bfloat162float(got[h * B::kHeadDim + i + half])};
        for (int k = 0; k < 2; ++k) {
          ASSERT_FALSE(std::isnan(have[k])) << "token " << t << " head " << h << " pair " << i;
          err2 += (have[k] - want[k]) * (have[k] - want[k]);
          ref2 += want[k] * want[k];
          max_abs = std::max(max_abs, std::fabs(have[k] - want[k]));
        }
      }
    }
    EXPECT_LE(std::sqrt(err2 / ref2), Tolerance<__nv_bfloat16>::kRelL2)
        << "token " << t << " (elements from " << t * B::kTokenElems << ") position " << pos;
    EXPECT_LE(max_abs, Tolerance<__nv_bfloat16>::kMaxAbs) << "token " << t << " position " << pos;
  }
}

/// Allocates the big tensor, or skips when the device lacks the memory.
__nv_bfloat16* alloc_big_tensor_or_null(std::string& why) {
  std::size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    why = "cudaMemGetInfo failed";
    return nullptr;
  }
  const std::size_t need = BigTensor::kElems * sizeof(__nv_bfloat16);
  const std::size_t margin = std::size_t{512} << 20;  // table, positions, the context's own use
  if (free_bytes < need + margin) {
    why = "needs " + std::to_string((need + margin) >> 20) + " MiB of free device memory, has " +
          std::to_string(free_bytes >> 20) + " MiB";
    return nullptr;
  }
  __nv_bfloat16* x = nullptr;
  if (cudaMalloc(&x, need) != cudaSuccess) {
    cudaGetLastError();
    why = "cudaMalloc of " + std::to_string(need >> 20) + " MiB failed";
    return nullptr;
  }
  return x;
}

TEST(Index64Bit, TokensPastElement2Pow31AreRotatedWithTableAndPositions) {
  ROPE_SKIP_WITHOUT_GPU();
  std::string why;
  __nv_bfloat16* x = alloc_big_tensor_or_null(why);
  if (x == nullptr) GTEST_SKIP() << why;
  // An fp32 table of random angles; token t reads row hash(t) % rows.
  const int half = BigTensor::kHeadDim / 2;
  std::vector<float> cos_h(BigTensor::kTableRows * half), sin_h(cos_h.size());
  std::mt19937_64 rng(rope_test::base_seed());
  std::uniform_real_distribution<double> angle(-3.2, 3.2);
  for (std::size_t i = 0; i < cos_h.size(); ++i) {
    const double a = angle(rng);
    cos_h[i] = static_cast<float>(std::cos(a));
    sin_h[i] = static_cast<float>(std::sin(a));
  }
  auto position_of = [](std::int64_t t) {
    return static_cast<std::int64_t>((hashed_value(static_cast<std::uint64_t>(t) ^ 0x5555) + 1.0f) * 0.5f *
                                     (BigTensor::kTableRows - 1));
  };
  std::vector<std::int32_t> pos_h(BigTensor::kTokens);
  for (std::int64_t t = 0; t < BigTensor::kTokens; ++t) pos_h[t] = static_cast<std::int32_t>(position_of(t));
  float *cos_d = nullptr, *sin_d = nullptr;
  std::int32_t* pos_d = nullptr;
  ROPE_EXPECT_CUDA(cudaMalloc(&cos_d, cos_h.size() * sizeof(float)));
  ROPE_EXPECT_CUDA(cudaMalloc(&sin_d, sin_h.size() * sizeof(float)));
  ROPE_EXPECT_CUDA(cudaMalloc(&pos_d, pos_h.size() * sizeof(std::int32_t)));
  if (cos_d != nullptr && sin_d != nullptr && pos_d != nullptr) {
    cudaMemcpy(cos_d, cos_h.data(), cos_h.size() * sizeof(float), cudaMemcpyHostToDevice);
    cudaMemcpy(sin_d, sin_h.data(), sin_h.size() * sizeof(float), cudaMemcpyHostToDevice);
    cudaMemcpy(pos_d, pos_h.data(), pos_h.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice);
    run_big_tensor(rope::cos_sin_table(cos_d, sin_d, BigTensor::kTableRows, half), rope::positions(pos_d),
                   position_of,
                   [&](std::int64_t pos, int i, double& c, double& s) {
                     c = cos_h[pos * half + i];
                     s = sin_h[pos * half + i];
                   },
                   x);
  }
  cudaFree(cos_d);
  cudaFree(sin_d);
  cudaFree(pos_d);
  cudaFree(x);
}

TEST(Index64Bit, TokensPastElement2Pow31AreRotatedWithComputedCosSin) {
  ROPE_SKIP_WITHOUT_GPU();
  std::string why;
  __nv_bfloat16* x = alloc_big_tensor_or_null(why);
  if (x == nullptr) GTEST_SKIP() << why;
  // No positions: position = token index, up to ~525k. Llama-3.1 frequencies.
  const int half = BigTensor::kHeadDim / 2;
  std::vector<float> inv_freq(half);
  float attention = 0;
  ASSERT_TRUE(rope::compute_inv_freq(rope::RopeScaling::llama3(500000.0), BigTensor::kHeadDim, inv_freq.data(),
                                     &attention)
                  .ok());
  float* freq_d = nullptr;
  ROPE_EXPECT_CUDA(cudaMalloc(&freq_d, half * sizeof(float)));
  if (freq_d != nullptr) {
    cudaMemcpy(freq_d, inv_freq.data(), half * sizeof(float), cudaMemcpyHostToDevice);
    run_big_tensor(rope::computed_cos_sin(freq_d, attention), rope::Positions{}, [](std::int64_t t) { return t; },
                   [&](std::int64_t pos, int i, double& c, double& s) {
                     const double a = static_cast<double>(pos) * inv_freq[i];
                     c = std::cos(a) * attention;
                     s = std::sin(a) * attention;
                   },
                   x);
  }
  cudaFree(freq_d);
  cudaFree(x);
}

// ---------------------------------------------------------------------------------------------
// CUDA graphs: a launch captured once and replayed must do what a direct launch does, on
// whatever data is in the buffers at replay time (nothing of the capture-time data is baked in).

TEST(CudaGraph, CaptureHoldsOnlyTheKernelLaunches) {
  ROPE_SKIP_WITHOUT_GPU();
  DeviceProblem<__half>::Shape shape;
  DeviceProblem<__half> prob(0, shape, rope_test::base_seed());
  ROPE_ASSERT_CUDA(prob.error());
  OwnedStream stream;
  ROPE_ASSERT_CUDA(stream.error());
  // Global mode: any allocation or synchronization by the launchers would invalidate the capture.
  cudaGraph_t graph = nullptr;
  ROPE_ASSERT_CUDA(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeGlobal));
  const cudaError_t fwd = rope::rope_forward(prob.params(), stream.get());
  const cudaError_t bwd = rope::rope_backward(prob.params(), stream.get());
  ROPE_ASSERT_CUDA(cudaStreamEndCapture(stream.get(), &graph));
  ROPE_EXPECT_CUDA(fwd);
  ROPE_EXPECT_CUDA(bwd);
  std::size_t nodes = 0;
  ROPE_EXPECT_CUDA(cudaGraphGetNodes(graph, nullptr, &nodes));
  EXPECT_EQ(nodes, 2u) << "one kernel node per launch, no copies, sets or allocations";
  std::vector<cudaGraphNode_t> list(nodes);
  if (nodes > 0) ROPE_EXPECT_CUDA(cudaGraphGetNodes(graph, list.data(), &nodes));
  for (cudaGraphNode_t n : list) {
    cudaGraphNodeType type;
    ROPE_EXPECT_CUDA(cudaGraphNodeGetType(n, &type));
    EXPECT_EQ(type, cudaGraphNodeTypeKernel);
  }
  cudaGraphDestroy(graph);
}

TEST(CudaGraph, ReplayOnNewDataMatchesDirectLaunchesBitForBit) {
  ROPE_SKIP_WITHOUT_GPU();
  // A forward launch (fp32 table, int32 positions, GQA) and a backward one (computed cos/sin,
  // partial interleaved rotary) in one graph.
  DeviceProblem<__half>::Shape fs;
  fs.tokens = 777;
  fs.q_heads = 8;
  fs.k_heads = 2;
  DeviceProblem<__nv_bfloat16>::Shape bs;
  bs.tokens = 333;
  bs.q_heads = 5;
  bs.k_heads = 1;
  bs.head_dim = 80;
  bs.rotary_dim = 32;
  bs.style = rope::Style::kInterleaved;
  bs.computed = true;
  DeviceProblem<__half> fwd(0, fs, rope_test::base_seed());
  DeviceProblem<__nv_bfloat16> bwd(0, bs, rope_test::base_seed() + 1);
  ROPE_ASSERT_CUDA(fwd.error());
  ROPE_ASSERT_CUDA(bwd.error());
  OwnedStream stream;
  ROPE_ASSERT_CUDA(stream.error());

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ROPE_ASSERT_CUDA(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeGlobal));
  const cudaError_t f = rope::rope_forward(fwd.params(), stream.get());
  const cudaError_t b = rope::rope_backward(bwd.params(), stream.get());
  ROPE_ASSERT_CUDA(cudaStreamEndCapture(stream.get(), &graph));
  ROPE_ASSERT_CUDA(f);
  ROPE_ASSERT_CUDA(b);
  ROPE_ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));

  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE("replay " + std::to_string(round));
    fwd.new_inputs();  // new x and positions, copied into the captured buffers
    bwd.new_inputs();
    fwd.poison_outputs();
    bwd.poison_outputs();
    ROPE_ASSERT_CUDA(cudaGraphLaunch(exec, stream.get()));
    ROPE_ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
    std::vector<__half> gq, gk;
    std::vector<__nv_bfloat16> bq, bk;
    ROPE_ASSERT_CUDA(fwd.download(gq, gk));
    ROPE_ASSERT_CUDA(bwd.download(bq, bk));
    EXPECT_TRUE(fwd.check(gq, gk, false));
    EXPECT_TRUE(bwd.check(bq, bk, true));

    // The same data through direct launches.
    fwd.poison_outputs();
    bwd.poison_outputs();
    ROPE_ASSERT_CUDA(rope::rope_forward(fwd.params(), stream.get()));
    ROPE_ASSERT_CUDA(rope::rope_backward(bwd.params(), stream.get()));
    ROPE_ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
    std::vector<__half> dq, dk;
    std::vector<__nv_bfloat16> eq, ek;
    ROPE_ASSERT_CUDA(fwd.download(dq, dk));
    ROPE_ASSERT_CUDA(bwd.download(eq, ek));
    EXPECT_EQ(std::memcmp(gq.data(), dq.data(), gq.size() * sizeof(__half)), 0) << "forward q differs";
    EXPECT_EQ(std::memcmp(gk.data(), dk.data(), gk.size() * sizeof(__half)), 0) << "forward k differs";
    EXPECT_EQ(std::memcmp(bq.data(), eq.data(), bq.size() * sizeof(__nv_bfloat16)), 0) << "backward q differs";
    EXPECT_EQ(std::memcmp(bk.data(), ek.data(), bk.size() * sizeof(__nv_bfloat16)), 0) << "backward k differs";
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

// ---------------------------------------------------------------------------------------------
// Several devices: the launcher takes no device of its own; it launches on the current device
// and the caller's stream, and nothing it keeps (no cached state) ties it to device 0.

int device_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

DeviceProblem<__nv_bfloat16>::Shape multi_gpu_shape() {
  DeviceProblem<__nv_bfloat16>::Shape s;
  s.tokens = 3000;
  s.q_heads = 32;
  s.k_heads = 8;
  return s;
}

TEST(MultiGpu, LaunchOnDevice1WithItsOwnStreamIsCorrect) {
  ROPE_SKIP_WITHOUT_GPU();
  const int n = device_count();
  if (n < 2) GTEST_SKIP() << "needs 2 CUDA devices, found " << n;
  DeviceProblem<__nv_bfloat16> prob(1, multi_gpu_shape(), rope_test::base_seed());
  ROPE_ASSERT_CUDA(prob.error());
  DeviceGuard guard(1);
  OwnedStream stream;  // created on device 1
  ROPE_ASSERT_CUDA(stream.error());
  prob.poison_outputs();
  ROPE_ASSERT_CUDA(rope::rope_forward(prob.params(), stream.get()));
  ROPE_ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
  EXPECT_TRUE(prob.download_and_check(false));
  prob.poison_outputs();
  ROPE_ASSERT_CUDA(rope::rope_backward(prob.params(), stream.get()));
  ROPE_ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
  EXPECT_TRUE(prob.download_and_check(true));
}

TEST(MultiGpu, ConcurrentLaunchesOnDevices0And1AreBothCorrect) {
  ROPE_SKIP_WITHOUT_GPU();
  const int n = device_count();
  if (n < 2) GTEST_SKIP() << "needs 2 CUDA devices, found " << n;
  DeviceProblem<__nv_bfloat16>::Shape computed = multi_gpu_shape();
  computed.computed = true;
  DeviceProblem<__nv_bfloat16> p0(0, multi_gpu_shape(), rope_test::base_seed());
  DeviceProblem<__nv_bfloat16> p1(1, computed, rope_test::base_seed() + 1);
  ROPE_ASSERT_CUDA(p0.error());
  ROPE_ASSERT_CUDA(p1.error());
  p0.poison_outputs();
  p1.poison_outputs();
  DeviceGuard restore(0);
  cudaSetDevice(0);
  OwnedStream s0;
  cudaSetDevice(1);
  OwnedStream s1;
  ROPE_ASSERT_CUDA(s0.error());
  ROPE_ASSERT_CUDA(s1.error());
  for (int round = 0; round < 2; ++round) {
    // Both launched back to back, before either is waited for. Each queued behind a 20 ms spin on
    // its stream, so both devices hold their rope kernel in flight at the same time.
    ROPE_ASSERT_CUDA(cudaSetDevice(0));
    spin_kernel<<<1, 1, 0, s0.get()>>>(20 * kMillisecond);
    ROPE_ASSERT_CUDA(rope::rope_forward(p0.params(), s0.get()));
    ROPE_ASSERT_CUDA(cudaSetDevice(1));
    spin_kernel<<<1, 1, 0, s1.get()>>>(20 * kMillisecond);
    ROPE_ASSERT_CUDA(rope::rope_forward(p1.params(), s1.get()));
    ROPE_ASSERT_CUDA(cudaStreamSynchronize(s0.get()));
    ROPE_ASSERT_CUDA(cudaStreamSynchronize(s1.get()));
    EXPECT_TRUE(p0.download_and_check(false)) << "device 0, round " << round;
    EXPECT_TRUE(p1.download_and_check(false)) << "device 1, round " << round;
    p0.new_inputs();
    p1.new_inputs();
    p0.poison_outputs();
    p1.poison_outputs();
  }
}

// ---------------------------------------------------------------------------------------------
// Streams: the kernel runs on the stream it is given, in that stream's order. A long kernel is
// queued first on the stream; while it still runs, a snapshot of the output taken through an
// independent stream must still be the NaN poison (the rope kernel is waiting its turn), and
// after the stream drains the output must be right.

void expect_runs_in_stream_order(cudaStream_t stream, const char* name) {
  DeviceProblem<float>::Shape shape;
  shape.tokens = 4000;
  DeviceProblem<float> prob(0, shape, rope_test::base_seed());
  ROPE_ASSERT_CUDA(prob.error());
  prob.poison_outputs();
  OwnedStream observer;  // non-blocking: does not wait for `stream`
  ROPE_ASSERT_CUDA(observer.error());
  cudaEvent_t spin_done;
  ROPE_ASSERT_CUDA(cudaEventCreateWithFlags(&spin_done, cudaEventDisableTiming));
  float* snapshot = nullptr;
  ROPE_ASSERT_CUDA(cudaMallocHost(&snapshot, 1024 * sizeof(float)));

  // Warm-up: with lazy module loading (CUDA's default) the first launch of a kernel loads it,
  // and that waits for the device to go idle -- here, for the spin kernel. Not the launcher's doing.
  spin_kernel<<<1, 1, 0, stream>>>(1000);
  ROPE_ASSERT_CUDA(rope::rope_forward(prob.params(), stream));
  ROPE_ASSERT_CUDA(cudaStreamSynchronize(stream));
  prob.poison_outputs();

  spin_kernel<<<1, 1, 0, stream>>>(200 * kMillisecond);
  ROPE_ASSERT_CUDA(cudaGetLastError());
  ROPE_ASSERT_CUDA(cudaEventRecord(spin_done, stream));
  const auto t0 = std::chrono::steady_clock::now();
  ROPE_ASSERT_CUDA(rope::rope_forward(prob.params(), stream));
  const double launch_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ROPE_ASSERT_CUDA(cudaMemcpyAsync(snapshot, prob.q_output(), 1024 * sizeof(float), cudaMemcpyDeviceToHost,
                                   observer.get()));
  ROPE_ASSERT_CUDA(cudaStreamSynchronize(observer.get()));
  const bool spin_still_running = cudaEventQuery(spin_done) == cudaErrorNotReady;
  if (spin_still_running) {
    int written = 0;
    for (int i = 0; i < 1024; ++i) written += !std::isnan(snapshot[i]);
    EXPECT_EQ(written, 0) << name << ": output written before the kernel queued ahead of it on the stream finished";
  } else {
    ADD_FAILURE() << name << ": the 200 ms spin kernel had finished before the snapshot (the launch took "
                  << launch_ms << " ms of host time); order not checked";
  }
  ROPE_ASSERT_CUDA(cudaStreamSynchronize(stream));
  EXPECT_TRUE(prob.download_and_check(false)) << name;

  // Backward on the same stream, no spin: plain correctness.
  prob.poison_outputs();
  ROPE_ASSERT_CUDA(rope::rope_backward(prob.params(), stream));
  ROPE_ASSERT_CUDA(cudaStreamSynchronize(stream));
  EXPECT_TRUE(prob.download_and_check(true)) << name;
  cudaFreeHost(snapshot);
  cudaEventDestroy(spin_done);
}

TEST(Streams, NonBlockingStreamRunsInItsOrderAndIsCorrect) {
  ROPE_SKIP_WITHOUT_GPU();
  OwnedStream stream(cudaStreamNonBlocking);
  ROPE_ASSERT_CUDA(stream.error());
  expect_runs_in_stream_order(stream.get(), "non-blocking stream");
}

TEST(Streams, BlockingStreamRunsInItsOrderAndIsCorrect) {
  ROPE_SKIP_WITHOUT_GPU();
  OwnedStream stream(cudaStreamDefault);
  ROPE_ASSERT_CUDA(stream.error());
  expect_runs_in_stream_order(stream.get(), "blocking stream");
}

TEST(Streams, PerThreadDefaultStreamRunsInItsOrderAndIsCorrect) {
  ROPE_SKIP_WITHOUT_GPU();
  expect_runs_in_stream_order(cudaStreamPerThread, "cudaStreamPerThread");
}

// ---------------------------------------------------------------------------------------------
// No host synchronization: each launcher returns while a kernel queued before it on the same
// stream is still running. Had it synchronized the stream or the device, that kernel (and its
// event) would be complete by the time it returned.

TEST(NoHostSync, LaunchersReturnWhileAnEarlierKernelStillRuns) {
  ROPE_SKIP_WITHOUT_GPU();
  DeviceProblem<__nv_bfloat16>::Shape shape;
  shape.tokens = 2000;
  DeviceProblem<__nv_bfloat16> prob(0, shape, rope_test::base_seed());
  ROPE_ASSERT_CUDA(prob.error());
  OwnedStream stream;
  ROPE_ASSERT_CUDA(stream.error());
  cudaEvent_t spin_done;
  ROPE_ASSERT_CUDA(cudaEventCreateWithFlags(&spin_done, cudaEventDisableTiming));
  // A table to fill with the table-builder launcher, which makes the same promise.
  const int half = 64;
  float *freq = nullptr, *table = nullptr;
  std::vector<float> f(half);
  float attention = 0;
  ASSERT_TRUE(rope::compute_inv_freq(rope::RopeScaling::unscaled(10000.0), 2 * half, f.data(), &attention).ok());
  ROPE_ASSERT_CUDA(cudaMalloc(&freq, half * sizeof(float)));
  ROPE_ASSERT_CUDA(cudaMalloc(&table, 2 * 4096 * half * sizeof(float)));
  ROPE_ASSERT_CUDA(cudaMemcpy(freq, f.data(), half * sizeof(float), cudaMemcpyHostToDevice));

  // Warm-up: the first launch of a kernel may load its module (lazy loading), which is allowed
  // to wait; the promise is about every launch after that.
  spin_kernel<<<1, 1, 0, stream.get()>>>(1000);
  ROPE_ASSERT_CUDA(rope::rope_forward(prob.params(), stream.get()));
  ROPE_ASSERT_CUDA(rope::rope_backward(prob.params(), stream.get()));
  ROPE_ASSERT_CUDA(rope::fill_cos_sin_table(freq, 2 * half, attention, 4096, table, table + 4096 * half, half,
                                            stream.get()));
  ROPE_ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
  prob.poison_outputs();

  spin_kernel<<<1, 1, 0, stream.get()>>>(200 * kMillisecond);
  ROPE_ASSERT_CUDA(cudaGetLastError());
  ROPE_ASSERT_CUDA(cudaEventRecord(spin_done, stream.get()));
  struct Step {
    const char* name;
    cudaError_t result;
    cudaError_t stream_query;
    cudaError_t event_query;
    double host_ms;
  };
  std::vector<Step> steps;
  auto timed = [&](const char* name, auto&& launch) {
    const auto t0 = std::chrono::steady_clock::now();
    const cudaError_t r = launch();
    const auto t1 = std::chrono::steady_clock::now();
    const cudaError_t sq = cudaStreamQuery(stream.get());
    const cudaError_t eq = cudaEventQuery(spin_done);
    steps.push_back(Step{name, r, sq, eq, std::chrono::duration<double, std::milli>(t1 - t0).count()});
  };
  timed("rope_forward", [&] { return rope::rope_forward(prob.params(), stream.get()); });
  timed("rope_backward", [&] { return rope::rope_backward(prob.params(), stream.get()); });
  timed("fill_cos_sin_table", [&] {
    return rope::fill_cos_sin_table(freq, 2 * half, attention, 4096, table, table + 4096 * half, half, stream.get());
  });
  for (const Step& s : steps) {
    EXPECT_EQ(s.result, cudaSuccess) << s.name << ": " << cudaGetErrorString(s.result);
    EXPECT_EQ(s.stream_query, cudaErrorNotReady) << s.name << " returned after its stream had drained";
    EXPECT_EQ(s.event_query, cudaErrorNotReady) << s.name << " returned after the kernel queued before it finished";
    EXPECT_LT(s.host_ms, 100.0) << s.name << " took " << s.host_ms << " ms of host time";
  }
  ROPE_ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
  // The backward ran last on the same buffers: its result is what is left.
  EXPECT_TRUE(prob.download_and_check(true));
  cudaFree(freq);
  cudaFree(table);
  cudaEventDestroy(spin_done);
}

}  // namespace
