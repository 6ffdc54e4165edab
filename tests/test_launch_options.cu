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

constexpr int kQHeads = 4, kKHeads = 2, kHeadDim = 64, kRows = 32, kBlockSize = 4;
constexpr std::int64_t kRowElems = std::int64_t{kQHeads + kKHeads} * kHeadDim;
/// A decode-sized launch (head groups), and one large enough that rows walk tokens a grid apart
/// (what the GPU holds of the kernel is asked of the runtime from 1024 blocks on).
constexpr std::int64_t kFewTokens = 8, kManyTokens = 1 << 17;

/// x's value at `i` once the producer has written it (never 0: the buffers start zeroed).
__host__ __device__ inline float produced(std::int64_t i) { return 0.25f + static_cast<float>(i % 97) / 64.0f; }

/// Blocks of the producer below: few enough to be resident at once on any GPU this runs on, so
/// every block lets dependents launch right away.
constexpr unsigned kProducerBlocks = 64;

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

/// Device buffers of one launch of `tokens` tokens: x (q and k heads of fused rows), y, a table,
/// frequencies, positions, v, two caches, slots and norm weights; every buffer starts zeroed.
/// Token t writes cache row t (slots), so the caches have a row per token.
struct Buffers {
  std::int64_t tokens;
  std::int64_t x_elems, cache_elems;
  float *x = nullptr, *y = nullptr, *table = nullptr, *inv_freq = nullptr, *v = nullptr, *k_cache = nullptr,
        *v_cache = nullptr, *weights = nullptr, *seen = nullptr;
  std::int64_t *positions = nullptr, *slots = nullptr;

  explicit Buffers(std::int64_t token_count = kFewTokens)
      : tokens(token_count), x_elems(token_count * kRowElems), cache_elems(token_count * kKHeads * kHeadDim) {
    alloc(x, x_elems);
    alloc(y, x_elems);
    alloc(table, std::int64_t{kRows} * kHeadDim);
    alloc(inv_freq, kHeadDim / 2);
    alloc(v, cache_elems);
    alloc(k_cache, cache_elems);
    alloc(v_cache, cache_elems);
    alloc(weights, kHeadDim);
    alloc(seen, 1);
    alloc(positions, tokens);
    alloc(slots, tokens);
    std::vector<float> t(static_cast<std::size_t>(kRows) * kHeadDim), f(kHeadDim / 2), w(kHeadDim);
    std::vector<float> vv(static_cast<std::size_t>(cache_elems));
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>((i * 37) % 101) / 101.0f - 0.5f;
    for (std::size_t i = 0; i < f.size(); ++i) f[i] = 1.0f / static_cast<float>(1 + i * i);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.5f + static_cast<float>(i) / kHeadDim;
    for (std::size_t i = 0; i < vv.size(); ++i) vv[i] = static_cast<float>(i % 13);
    std::vector<std::int64_t> p(static_cast<std::size_t>(tokens)), s(static_cast<std::size_t>(tokens));
    for (std::int64_t i = 0; i < tokens; ++i) p[i] = (i * 5 + 3) % kRows, s[i] = tokens - 1 - i;
    copy(table, t);
    copy(inv_freq, f);
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
    p.num_tokens = tokens;
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
    a.num_blocks = (tokens + kBlockSize - 1) / kBlockSize;
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
    ASSERT_EQ(cudaMemsetAsync(x, 0, x_elems * sizeof(float), stream), cudaSuccess);
    ASSERT_EQ(cudaMemsetAsync(y, 0, x_elems * sizeof(float), stream), cudaSuccess);
    ASSERT_EQ(cudaMemsetAsync(k_cache, 0, cache_elems * sizeof(float), stream), cudaSuccess);
    ASSERT_EQ(cudaMemsetAsync(v_cache, 0, cache_elems * sizeof(float), stream), cudaSuccess);
  }
  /// y and the caches, as the host sees them.
  std::vector<float> outputs() const {
    std::vector<float> out(static_cast<std::size_t>(x_elems + 2 * cache_elems));
    EXPECT_EQ(cudaMemcpy(out.data(), y, x_elems * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(out.data() + x_elems, k_cache, cache_elems * sizeof(float), cudaMemcpyDeviceToHost),
              cudaSuccess);
    EXPECT_EQ(cudaMemcpy(out.data() + x_elems + cache_elems, v_cache, cache_elems * sizeof(float),
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
      {"rope_forward computed", [](const Buffers& b, cudaStream_t s, const rope::LaunchOptions& o) {
         rope::RopeParams<float> p = b.params();
         p.cos_sin = rope::computed_cos_sin(b.inv_freq);
         return rope::rope_forward(p, s, o);
       }},
      {"rope_forward_append", [](const Buffers& b, cudaStream_t s, const rope::LaunchOptions& o) {
         return rope::rope_forward_append(b.params(), b.append(), s, o);
       }},
      {"rope_forward_qk_norm", [](const Buffers& b, cudaStream_t s, const rope::LaunchOptions& o) {
         return rope::rope_forward_qk_norm(b.params(), b.norm(), s, o);
       }},
      {"rope_attention_prologue", [](const Buffers& b, cudaStream_t s, const rope::LaunchOptions& o) {
         const rope::QkNorm<float, float> norm = b.norm();
         const rope::KvCacheAppend<float, float> cache = b.append();
         rope::AttentionPrologue<float, float, float> prologue;
         prologue.norm = &norm;
         prologue.cache = &cache;
         return rope::rope_attention_prologue(b.params(), prologue, s, o);
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
  slow_producer<<<kProducerBlocks, 128, 0, stream>>>(b.x, b.x_elems, 200000);
  EXPECT_EQ(rope::detail::launch_kernel(impatient_reader, dim3(1), dim3(32), 0, stream, programmatic(),
                                        static_cast<const float*>(b.x), b.seen),
            cudaSuccess);
  float seen = -1.0f;
  EXPECT_EQ(cudaMemcpyAsync(&seen, b.seen, sizeof(float), cudaMemcpyDeviceToHost, stream), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  return seen == 0.0f;
}

/// Each launcher on `b`, launched with the option while a producer of its x is still running,
/// gives what it gives launched without the option after the producer has ended.
void expect_programmatic_launches_wait(Buffers& b) {
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  std::printf("[ OVERLAP  ] a dependent started before its producer ended: %s\n",
              dependents_start_early(b, stream) ? "yes" : "no (the launches below run one after another)");
  for (const Launcher& launcher : launchers()) {
    SCOPED_TRACE(launcher.name);
    // Reference: the producer's x, launched without the option after the producer has ended.
    b.clear_outputs(stream);
    slow_producer<<<kProducerBlocks, 128, 0, stream>>>(b.x, b.x_elems, 0);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    ASSERT_EQ(launcher.call(b, stream, rope::LaunchOptions{}), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    const std::vector<float> expected = b.outputs();
    // The same with the option, launched while the producer is still spinning.
    b.clear_outputs(stream);
    slow_producer<<<kProducerBlocks, 128, 0, stream>>>(b.x, b.x_elems, 200000);
    ASSERT_EQ(launcher.call(b, stream, programmatic()), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    const std::vector<float> got = b.outputs();
    ASSERT_EQ(got.size(), expected.size());
    EXPECT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)), 0);
  }
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST(ProgrammaticDependentLaunch, EveryLauncherReadsOnlyWhatTheKernelBeforeItWroteAtDecodeSizes) {
  ROPE_SKIP_WITHOUT_GPU();
  Buffers b(kFewTokens);
  expect_programmatic_launches_wait(b);
}

TEST(ProgrammaticDependentLaunch, EveryLauncherReadsOnlyWhatTheKernelBeforeItWroteWhenRowsWalk) {
  ROPE_SKIP_WITHOUT_GPU();
  Buffers b(kManyTokens);
  ASSERT_EQ(rope::rope_forward(b.params()), cudaSuccess);
  ASSERT_TRUE(rope::detail::observed_launch_plan().walks) << "the launch should walk tokens a grid apart";
  expect_programmatic_launches_wait(b);
}

TEST(ProgrammaticDependentLaunch, AChainCapturedInAGraphReplaysCorrectly) {
  ROPE_SKIP_WITHOUT_GPU();
  Buffers b;
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  b.clear_outputs(stream);
  slow_producer<<<kProducerBlocks, 128, 0, stream>>>(b.x, b.x_elems, 0);
  ASSERT_EQ(rope::rope_forward_append(b.params(), b.append(), stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const std::vector<float> expected = b.outputs();

  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  b.clear_outputs(stream);
  slow_producer<<<kProducerBlocks, 128, 0, stream>>>(b.x, b.x_elems, 50000);
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

__global__ void empty_kernel(int) {}

/// Each launcher on `b`, called while an error of the caller's own is pending, succeeds and
/// leaves that error pending.
void expect_pending_error_kept(const Buffers& b) {
  for (const Launcher& launcher : launchers()) {
    SCOPED_TRACE(launcher.name);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    empty_kernel<<<1, 4096>>>(0);  // more threads than a block holds: a launch error, not sticky
    ASSERT_EQ(cudaPeekAtLastError(), cudaErrorInvalidConfiguration);
    EXPECT_EQ(launcher.call(b, nullptr, rope::LaunchOptions{}), cudaSuccess);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
}

TEST(LaunchErrors, ACallersPendingErrorStaysPendingAtDecodeSizes) {
  ROPE_SKIP_WITHOUT_GPU();
  expect_pending_error_kept(Buffers(kFewTokens));
}

// The first launches of walking instances in a process ask the runtime what the GPU holds; with
// the caller's error pending they ask nothing (and still launch).
TEST(LaunchErrors, ACallersPendingErrorStaysPendingWhenRowsWalk) {
  ROPE_SKIP_WITHOUT_GPU();
  expect_pending_error_kept(Buffers(kManyTokens));
}

TEST(LaunchErrors, AFailedLaunchReturnsItsErrorAndLeavesNonePending) {
  ROPE_SKIP_WITHOUT_GPU();
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const cudaError_t failed = rope::detail::launch_kernel(empty_kernel, dim3(1), dim3(4096), 0, nullptr,
                                                         rope::LaunchOptions{}, 0);
  EXPECT_EQ(failed, cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaPeekAtLastError(), cudaSuccess);
  // With the caller's error pending, nothing is cleared: the caller still sees an error.
  empty_kernel<<<1, 4096>>>(0);
  EXPECT_EQ(rope::detail::launch_kernel(empty_kernel, dim3(1), dim3(4096), 0, nullptr, rope::LaunchOptions{}, 0),
            cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(DeviceAnswersOnGpu, LaunchesAskTheRuntimeOnceFromEveryThread) {
  ROPE_SKIP_WITHOUT_GPU();
  Buffers b(kManyTokens);  // walking grids: what the GPU holds is asked
  for (const Launcher& launcher : launchers()) {
    ASSERT_EQ(launcher.call(b, nullptr, rope::LaunchOptions{}), cudaSuccess);
    ASSERT_EQ(launcher.call(b, nullptr, programmatic()), cudaSuccess);
  }
  const std::int64_t asked = rope::detail::observed_runtime_questions().load();
  EXPECT_GT(asked, 0);  // by these launches or by earlier ones of this process
  std::vector<std::thread> threads;
  std::vector<cudaError_t> errors(8, cudaErrorUnknown);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      cudaError_t e = cudaSuccess;
      for (int i = 0; i < 4 && e == cudaSuccess; ++i) {
        for (const Launcher& launcher : launchers()) {
          e = launcher.call(b, nullptr, i % 2 == 0 ? rope::LaunchOptions{} : programmatic());
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

// DeviceAnswers itself, with stand-ins for the runtime and for its pending error (no GPU needed).

bool no_error_pending() { return false; }

TEST(DeviceAnswers, KeepsAnAnswerAndAsksEachQuestionOnceAcrossThreads) {
  DeviceAnswers answers;
  std::atomic<int> asked{0};
  const DeviceQuestion question{DeviceQuestion::Kind::kBlocksPerSm, 0, &asked, 256, 0};
  std::vector<std::thread> threads;
  std::vector<std::int64_t> got(16, -1);
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        got[t] = answers.answer(
            question, -1,
            [&](std::int64_t& v) {
              ++asked;
              v = 7;
              return cudaSuccess;
            },
            no_error_pending);
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
  EXPECT_EQ(answers.answer({Kind::kBlocksPerSm, 0, &asked, 256, 0}, -1, ask(3), no_error_pending), 3);
  EXPECT_EQ(answers.answer({Kind::kBlocksPerSm, 1, &asked, 256, 0}, -1, ask(4), no_error_pending), 4);      // another device
  EXPECT_EQ(answers.answer({Kind::kBlocksPerSm, 0, &asked, 512, 0}, -1, ask(5), no_error_pending), 5);      // another block
  EXPECT_EQ(answers.answer({Kind::kBlocksPerSm, 0, &asked, 256, 1024}, -1, ask(6), no_error_pending), 6);   // more shared bytes
  EXPECT_EQ(answers.answer({Kind::kSmCount, 0, nullptr, 0, 0}, -1, ask(132), no_error_pending), 132);      // another kind
  EXPECT_EQ(answers.answer({Kind::kBlocksPerSm, 0, &asked, 256, 0}, -1, ask(99), no_error_pending), 3);    // kept
  EXPECT_EQ(asked, 5);
}

TEST(DeviceAnswers, ARefusalGivesTheFallbackAndIsKept) {
  DeviceAnswers answers;
  int asked = 0;
  const DeviceQuestion question{DeviceQuestion::Kind::kSharedBytesConsent, 0, &asked, 0, 100000};
  auto refuse = [&](std::int64_t&) {
    ++asked;
    return cudaErrorInvalidValue;
  };
  EXPECT_EQ(answers.answer(question, 0, refuse, no_error_pending), 0);
  EXPECT_EQ(answers.answer(question, 0, refuse, no_error_pending), 0);
  EXPECT_EQ(asked, 1);
}

TEST(DeviceAnswers, NothingIsAskedWhileTheCallersErrorIsPending) {
  DeviceAnswers answers;
  int asked = 0;
  const DeviceQuestion question{DeviceQuestion::Kind::kSmCount, 0, nullptr, 0, 0};
  auto ask = [&](std::int64_t& v) {
    ++asked;
    v = 132;
    return cudaSuccess;
  };
  EXPECT_EQ(answers.answer(question, -2, ask, [] { return true; }), -2);
  EXPECT_EQ(asked, 0);
  EXPECT_EQ(answers.answer(question, -2, ask, no_error_pending), 132);  // asked once the error is gone
  EXPECT_EQ(answers.answer(question, -2, ask, [] { return true; }), 132);  // kept answers need no question
  EXPECT_EQ(asked, 1);
}

}  // namespace
