// SPDX-License-Identifier: MIT
// How the launchers launch: programmatic dependent launch (LaunchOptions) never lets a kernel
// read what the kernel before it has not yet written, also under CUDA graph capture; a launch
// leaves an earlier error of the caller's own work pending; and what a launch asks the runtime of
// the device is asked once per process (DeviceAnswers), from every host thread.

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <rope/rope.cuh>

#include "harness.hpp"

namespace {

using rope::detail::DeviceAnswers;
using rope::detail::DeviceQuestion;

constexpr std::int64_t kTokens = 8;
constexpr int kQHeads = 4, kKHeads = 2, kHeadDim = 64, kRows = 32, kBlockSize = 4;
constexpr std::int64_t kRowElems = std::int64_t{kQHeads + kKHeads} * kHeadDim;
constexpr std::int64_t kXElems = kTokens * kRowElems;

/// x's value at `i` once the producer has written it (never 0: the buffers start zeroed).
__host__ __device__ inline float produced(std::int64_t i) { return 0.25f + static_cast<float>(i % 97) / 64.0f; }

/// A kernel standing in for the QKV projection: lets its dependents launch at once, then takes
/// ~`spin_ns` before it writes x. A dependent that read x before this kernel ended reads zeros.
__global__ void slow_producer(float* x, std::int64_t n, unsigned spin_ns) {
  rope::device::launch_dependent_grids();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
  for (unsigned waited = 0; waited < spin_ns; waited += 1000) __nanosleep(1000);
#endif
  for (std::int64_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] = produced(i);
}

/// A dependent that does not wait: it reads x[0] as it starts (0 when it overlapped the producer).
__global__ void impatient_reader(const float* x, float* seen) {
  if (threadIdx.x == 0) *seen = x[0];
}

/// Device buffers of one launch: x (q and k heads of fused rows), y, a table, positions,
/// v, two caches, slots and norm weights; every buffer starts zeroed.
struct Buffers {
  float *x = nullptr, *y = nullptr, *table = nullptr, *v = nullptr, *k_cache = nullptr, *v_cache = nullptr,
        *weights = nullptr, *seen = nullptr;
  std::int64_t *positions = nullptr, *slots = nullptr;
  std::int64_t cache_elems = std::int64_t{kRows} * kKHeads * kHeadDim;

  Buffers() {
    alloc(x, kXElems);
    alloc(y, kXElems);
    alloc(table, std::int64_t{kRows} * kHeadDim);
    alloc(v, kTokens * kKHeads * kHeadDim);
    alloc(k_cache, cache_elems);
    alloc(v_cache, cache_elems);
    alloc(weights, kHeadDim);
    alloc(seen, 1);
    alloc(positions, kTokens);
    alloc(slots, kTokens);
    std::vector<float> t(static_cast<std::size_t>(kRows) * kHeadDim), w(kHeadDim), vv(kTokens * kKHeads * kHeadDim);
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>((i * 37) % 101) / 101.0f - 0.5f;
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.5f + static_cast<float>(i) / kHeadDim;
    for (std::size_t i = 0; i < vv.size(); ++i) vv[i] = static_cast<float>(i % 13);
    std::vector<std::int64_t> p(kTokens), s(kTokens);
    for (std::int64_t i = 0; i < kTokens; ++i) p[i] = (i * 5 + 3) % kRows, s[i] = kRows - 1 - i;
    copy(table, t);
    copy(weights, w);
    copy(v, vv);
    copy(positions, p);
    copy(slots, s);
  }
  ~Buffers() {
    for (void* b : owned_) cudaFree(b);
  }

  rope::RopeParams<float> params() const {
    rope::RopeParams<float> p;
    p.num_tokens = kTokens;
    p.head_dim = kHeadDim;
    p.q = rope::strided_heads<float>(x, y, kQHeads, kRowElems, kHeadDim);
    p.k = rope::strided_heads<float>(x + kQHeads * kHeadDim, y + kQHeads * kHeadDim, kKHeads, kRowElems, kHeadDim);
    p.cos_sin = rope::cos_sin_table<float>(table, table + kHeadDim / 2, kRows, kHeadDim);
    p.positions = rope::positions(static_cast<const std::int64_t*>(positions));
    return p;
  }
  rope::KvCacheAppend<float, float> append() const {
    rope::KvCacheAppend<float, float> a;
    a.v = v;
    a.v_token_stride = std::int64_t{kKHeads} * kHeadDim;
    a.v_head_stride = kHeadDim;
    a.k_cache = rope::nhd_paged_cache(k_cache, kBlockSize, kKHeads, kHeadDim);
    a.v_cache = rope::nhd_paged_cache(v_cache, kBlockSize, kKHeads, kHeadDim);
    a.num_blocks = kRows / kBlockSize;
    a.block_size = kBlockSize;
    a.slots = rope::slot_mapping(static_cast<const std::int64_t*>(slots));
    return a;
  }
  rope::QkNorm<float, float> norm() const {
    rope::QkNorm<float, float> n;
    n.q_weight = weights;
    n.k_weight = weights;
    return n;
  }

  /// Everything the launches write, zeroed again.
  void clear_outputs(cudaStream_t stream) {
    ASSERT_EQ(cudaMemsetAsync(x, 0, kXElems * sizeof(float), stream), cudaSuccess);
    ASSERT_EQ(cudaMemsetAsync(y, 0, kXElems * sizeof(float), stream), cudaSuccess);
    ASSERT_EQ(cudaMemsetAsync(k_cache, 0, cache_elems * sizeof(float), stream), cudaSuccess);
    ASSERT_EQ(cudaMemsetAsync(v_cache, 0, cache_elems * sizeof(float), stream), cudaSuccess);
  }
  /// y and the caches, as the host sees them.
  std::vector<float> outputs() const {
    std::vector<float> out(static_cast<std::size_t>(kXElems + 2 * cache_elems));
    EXPECT_EQ(cudaMemcpy(out.data(), y, kXElems * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(out.data() + kXElems, k_cache, cache_elems * sizeof(float), cudaMemcpyDeviceToHost),
              cudaSuccess);
    EXPECT_EQ(cudaMemcpy(out.data() + kXElems + cache_elems, v_cache, cache_elems * sizeof(float),
                         cudaMemcpyDeviceToHost),
              cudaSuccess);
    return out;
  }

 private:
  template <typename E>
  void alloc(E*& p, std::int64_t n) {
    ASSERT_EQ(cudaMalloc(&p, static_cast<std::size_t>(n) * sizeof(E)), cudaSuccess);
    ASSERT_EQ(cudaMemset(p, 0, static_cast<std::size_t>(n) * sizeof(E)), cudaSuccess);
    owned_.push_back(p);
  }
  template <typename E>
  void copy(E* d, const std::vector<E>& h) {
    ASSERT_EQ(cudaMemcpy(d, h.data(), h.size() * sizeof(E), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<void*> owned_;
};

/// One public launcher, called on `buffers` with `options`.
struct Launcher {
  const char* name;
  std::function<cudaError_t(const Buffers&, cudaStream_t, const rope::LaunchOptions&)> call;
};

std::vector<Launcher> launchers() {
  return {
      {"rope_forward", [](const Buffers& b, cudaStream_t s, const rope::LaunchOptions& o) {
         return rope::rope_forward(b.params(), s, o);
       }},
      {"rope_backward", [](const Buffers& b, cudaStream_t s, const rope::LaunchOptions& o) {
         return rope::rope_backward(b.params(), s, o);
       }},
      {"rope_forward_append", [](const Buffers& b, cudaStream_t s, const rope::LaunchOptions& o) {
         return rope::rope_forward_append(b.params(), b.append(), s, o);
       }},
      {"rope_forward_qk_norm", [](const Buffers& b, cudaStream_t s, const rope::LaunchOptions& o) {
         return rope::rope_forward_qk_norm(b.params(), b.norm(), s, o);
       }},
  };
}

rope::LaunchOptions programmatic() {
  rope::LaunchOptions o;
  o.programmatic_dependent_launch = true;
  return o;
}

/// Whether a dependent launched with the attribute right after slow_producer started before it
/// ended, on this GPU (sm_90 and newer should): the tests below are only as strong as this.
bool dependents_start_early(Buffers& b, cudaStream_t stream) {
  b.clear_outputs(stream);
  slow_producer<<<1, 128, 0, stream>>>(b.x, kXElems, 200000);
  cudaLaunchAttribute attribute;
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(1);
  config.blockDim = dim3(32);
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  EXPECT_EQ(cudaLaunchKernelEx(&config, impatient_reader, static_cast<const float*>(b.x), b.seen), cudaSuccess);
  float seen = -1.0f;
  EXPECT_EQ(cudaMemcpyAsync(&seen, b.seen, sizeof(float), cudaMemcpyDeviceToHost, stream), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  return seen == 0.0f;
}

TEST(ProgrammaticDependentLaunch, EveryLauncherReadsOnlyWhatTheKernelBeforeItWrote) {
  ROPE_SKIP_WITHOUT_GPU();
  Buffers b;
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  std::printf("[ OVERLAP  ] a dependent started before its producer ended: %s\n",
              dependents_start_early(b, stream) ? "yes" : "no (the launches below run one after another)");
  for (const Launcher& launcher : launchers()) {
    SCOPED_TRACE(launcher.name);
    // Reference: the producer's x, launched without the option after the producer has ended.
    b.clear_outputs(stream);
    slow_producer<<<2, 128, 0, stream>>>(b.x, kXElems, 0);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    ASSERT_EQ(launcher.call(b, stream, rope::LaunchOptions{}), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    const std::vector<float> expected = b.outputs();
    // The same with the option, launched while the producer is still spinning.
    b.clear_outputs(stream);
    slow_producer<<<2, 128, 0, stream>>>(b.x, kXElems, 200000);
    ASSERT_EQ(launcher.call(b, stream, programmatic()), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    const std::vector<float> got = b.outputs();
    ASSERT_EQ(got.size(), expected.size());
    EXPECT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)), 0);
  }
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST(ProgrammaticDependentLaunch, AChainCapturedInAGraphReplaysCorrectly) {
  ROPE_SKIP_WITHOUT_GPU();
  Buffers b;
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  b.clear_outputs(stream);
  slow_producer<<<2, 128, 0, stream>>>(b.x, kXElems, 0);
  ASSERT_EQ(rope::rope_forward_append(b.params(), b.append(), stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const std::vector<float> expected = b.outputs();

  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  b.clear_outputs(stream);
  slow_producer<<<2, 128, 0, stream>>>(b.x, kXElems, 50000);
  const cudaError_t launched = rope::rope_forward_append(b.params(), b.append(), stream, programmatic());
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_EQ(launched, cudaSuccess);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int replay = 0; replay < 3; ++replay) {
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    const std::vector<float> got = b.outputs();
    EXPECT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)), 0) << "replay " << replay;
  }
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

__global__ void empty_kernel() {}

TEST(LaunchErrors, ACallersPendingErrorStaysPendingAndIsNotReturned) {
  ROPE_SKIP_WITHOUT_GPU();
  Buffers b;
  for (const Launcher& launcher : launchers()) {
    SCOPED_TRACE(launcher.name);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    empty_kernel<<<1, 4096>>>();  // more threads than a block holds: a launch error, not sticky
    ASSERT_EQ(cudaPeekAtLastError(), cudaErrorInvalidConfiguration);
    EXPECT_EQ(launcher.call(b, nullptr, rope::LaunchOptions{}), cudaSuccess);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
}

TEST(DeviceAnswersOnGpu, LaunchesAskTheRuntimeOnceFromEveryThread) {
  ROPE_SKIP_WITHOUT_GPU();
  Buffers b;
  for (const Launcher& launcher : launchers()) ASSERT_EQ(launcher.call(b, nullptr, rope::LaunchOptions{}), cudaSuccess);
  const std::int64_t asked = rope::detail::observed_runtime_questions().load();
  EXPECT_GT(asked, 0);
  std::vector<std::thread> threads;
  std::vector<cudaError_t> errors(8, cudaErrorUnknown);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      cudaError_t e = cudaSuccess;
      for (int i = 0; i < 25 && e == cudaSuccess; ++i) {
        for (const Launcher& launcher : launchers()) {
          e = launcher.call(b, nullptr, rope::LaunchOptions{});
          if (e != cudaSuccess) break;
        }
      }
      errors[t] = e;
    });
  }
  for (std::thread& t : threads) t.join();
  for (cudaError_t e : errors) EXPECT_EQ(e, cudaSuccess);
  EXPECT_EQ(rope::detail::observed_runtime_questions().load(), asked);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// DeviceAnswers itself, with stand-ins for the runtime (no GPU needed).

TEST(DeviceAnswers, KeepsAnAnswerAndAsksEachQuestionOnceAcrossThreads) {
  DeviceAnswers answers;
  std::atomic<int> asked{0};
  const DeviceQuestion question{DeviceQuestion::Kind::kBlocksPerSm, 0, &asked, 256, 0};
  std::vector<std::thread> threads;
  std::vector<std::int64_t> got(16, -1);
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        got[t] = answers.answer(question, -1, [&](std::int64_t& v) {
          ++asked;
          v = 7;
          return cudaSuccess;
        });
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(asked.load(), 1);
  for (std::int64_t g : got) EXPECT_EQ(g, 7);
}

TEST(DeviceAnswers, ADifferentQuestionIsAskedApart) {
  DeviceAnswers answers;
  int asked = 0;
  auto ask = [&](std::int64_t value) {
    return [&asked, value](std::int64_t& v) {
      ++asked;
      v = value;
      return cudaSuccess;
    };
  };
  using Kind = DeviceQuestion::Kind;
  EXPECT_EQ(answers.answer({Kind::kBlocksPerSm, 0, &asked, 256, 0}, -1, ask(3)), 3);
  EXPECT_EQ(answers.answer({Kind::kBlocksPerSm, 1, &asked, 256, 0}, -1, ask(4)), 4);      // another device
  EXPECT_EQ(answers.answer({Kind::kBlocksPerSm, 0, &asked, 512, 0}, -1, ask(5)), 5);      // another block
  EXPECT_EQ(answers.answer({Kind::kBlocksPerSm, 0, &asked, 256, 1024}, -1, ask(6)), 6);   // more shared bytes
  EXPECT_EQ(answers.answer({Kind::kSmCount, 0, nullptr, 0, 0}, -1, ask(132)), 132);      // another kind
  EXPECT_EQ(answers.answer({Kind::kBlocksPerSm, 0, &asked, 256, 0}, -1, ask(99)), 3);     // kept
  EXPECT_EQ(asked, 5);
}

TEST(DeviceAnswers, AFailedQuestionGivesTheFallbackAndIsAskedAgain) {
  DeviceAnswers answers;
  int asked = 0;
  const DeviceQuestion question{DeviceQuestion::Kind::kSmCount, 0, nullptr, 0, 0};
  auto fail = [&](std::int64_t&) {
    ++asked;
    return cudaErrorInvalidValue;
  };
  EXPECT_EQ(answers.answer(question, -2, fail), -2);
  EXPECT_EQ(answers.answer(question, -2, fail), -2);
  EXPECT_EQ(asked, 2);
  EXPECT_EQ(answers.answer(question, -2,
                           [&](std::int64_t& v) {
                             ++asked;
                             v = 132;
                             return cudaSuccess;
                           }),
            132);
  EXPECT_EQ(asked, 3);
}

}  // namespace
