// SPDX-License-Identifier: MIT
// rope_bench: GB/s of the rope kernels next to an unfused chain, a naive fused kernel and a
// device copy, on the original [N, 128] sweep, Llama-3-8B prefill and decode shapes, and
// other head sizes. Every time is GPU time per call: the median of many samples, L2 cold
// (timer.cuh says how). Counters: bytes (the fewest the operation must move: inputs read once,
// outputs written once), GB/s, pct_of_copy (of the 2 GiB copy bandwidth measured at
// start-up: the faster of cudaMemcpyAsync and the copy kernel), us_per_call, tokens, calls_per_sample. Each benchmark runs one Google Benchmark
// iteration that takes all its samples and passes their median to SetIterationTime, so the
// reported time is that median (Google Benchmark appends /iterations:1/manual_time to names).
//
//   rope_bench [--benchmark_filter=REGEX] [--benchmark_out=FILE --benchmark_out_format=json]
//   ROPE_BENCH_SAMPLES=N  samples per benchmark (default 30)

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <rope/rope.cuh>

#include "baselines.cuh"
#include "cache_write.cuh"
#include "chain.cuh"
#include "device.cuh"
#include "qk_rms_norm.cuh"
#include "timer.cuh"
#include "workloads.cuh"

namespace {

using bench::gpu;
using bench::SetArray;

template <typename T> const char* dtype_name();
template <> const char* dtype_name<float>() { return "fp32"; }
template <> const char* dtype_name<__nv_bfloat16>() { return "bf16"; }
template <> const char* dtype_name<__half>() { return "fp16"; }

enum class Timing { kBatched, kSingle };

/// How a benchmark is timed and what is reported beside it.
struct RunOptions {
  Timing timing = Timing::kBatched;
  bench::L2 l2 = bench::L2::kFlushed;
  /// A rope call: a failure's text then includes rope's reason for rejecting the arguments,
  /// and a copy kernel of the same bytes is timed the same way right after it (counters
  /// `copy_us` and `x_copy` = copy time / this time: 1.0 is copy speed).
  bool rope_call = false;
};

RunOptions rope_options(Timing timing = Timing::kBatched, bench::L2 l2 = bench::L2::kFlushed) {
  RunOptions o;
  o.timing = timing;
  o.l2 = l2;
  o.rope_call = true;
  return o;
}

/// Times `launch` as `o` says; returns the error text, or empty.
std::string time_call(const bench::LaunchFn& launch, int batch, const RunOptions& o, double& seconds) {
  return o.timing == Timing::kBatched ? gpu().timer.time_batched(launch, batch, seconds, o.l2)
                                      : gpu().timer.time_single(launch, seconds);
}

/// The copy kernel moving the same bytes (bytes/2 read, bytes/2 written), timed as `o` says.
std::string time_copy_companion(double bytes, int batch, const RunOptions& o, double& seconds) {
  const std::size_t half = static_cast<std::size_t>(bytes / 2) / 16 * 16 + 16;
  const int sets = o.l2 == bench::L2::kWarm || o.timing == Timing::kSingle ? 1 : batch;
  SetArray<unsigned char> src, dst;
  std::string error = src.allocate(half, sets);
  if (error.empty()) error = dst.allocate(half, sets);
  if (error.empty()) error = bench::cuda_error("cudaMemset", cudaMemset(src.data(), 1, src.total()));
  if (error.empty()) error = bench::cuda_error("setup", cudaDeviceSynchronize());
  if (!error.empty()) return error;
  return time_call([&](int i, cudaStream_t s) { return bench::launch_copy_kernel(src[i], dst[i], half, s); },
                   batch, o, seconds);
}

/// The benchmark loop shared by every benchmark: skip on a setup error, else time and report.
void run(benchmark::State& state, const std::string& setup_error, const bench::LaunchFn& launch, int batch,
         double bytes, double tokens, const RunOptions& o = RunOptions{}) {
  // Setup copies and memsets run on the legacy default stream, which the timer's non-blocking
  // stream does not wait for: finish them first.
  const std::string not_ready = setup_error.empty() ? bench::cuda_error("setup", cudaDeviceSynchronize()) : setup_error;
  if (!not_ready.empty()) {
    state.SkipWithError(not_ready.c_str());
    return;
  }
  for (auto _ : state) {
    double seconds = 0.0;
    std::string error = time_call(launch, batch, o, seconds);
    if (!error.empty()) {
      if (o.rope_call) error += std::string(" [rope: ") + rope::last_error_message() + "]";
      state.SkipWithError(error.c_str());
      break;
    }
    if (o.rope_call) {
      double copy_seconds = 0.0;
      error = time_copy_companion(bytes, batch, o, copy_seconds);
      if (!error.empty()) {
        state.SkipWithError(("copy companion: " + error).c_str());
        break;
      }
      state.counters["copy_us"] = copy_seconds * 1e6;
      state.counters["x_copy"] = copy_seconds / seconds;
    }
    state.SetIterationTime(seconds);
    state.counters["bytes"] = bytes;
    state.counters["GB/s"] = bytes / seconds / 1e9;
    state.counters["pct_of_copy"] = 100.0 * bytes / seconds / gpu().copy_bytes_per_s;
    state.counters["us_per_call"] = seconds * 1e6;
    state.counters["tokens"] = tokens;
    state.counters["calls_per_sample"] = o.timing == Timing::kBatched ? batch : 1;
  }
}

/// The copy ceiling for an operation of `bytes`: bytes/2 copied (read + write), through
/// cudaMemcpyAsync or through the copy kernel.
void copy_bench(benchmark::State& state, double bytes, double tokens, bool kernel = false) {
  const std::size_t half = static_cast<std::size_t>(bytes / 2);
  const int batch = bench::batch_for(bytes);
  SetArray<unsigned char> src, dst;
  std::string error = src.allocate(half, batch);
  if (error.empty()) error = dst.allocate(half, batch);
  if (error.empty()) error = bench::cuda_error("cudaMemset", cudaMemset(src.data(), 1, src.total()));
  run(state, error, [&](int i, cudaStream_t s) {
    return kernel ? bench::launch_copy_kernel(src[i], dst[i], half / 16 * 16, s)
                  : cudaMemcpyAsync(dst[i], src[i], half, cudaMemcpyDeviceToDevice, s);
  }, batch, bytes, tokens);
}

// ---- The original sweep: x [N, 128], per-token fp32 cos/sin [N, 64] (row = token) ----

constexpr int kOriginalDim = 128;

template <typename T>
double original_bytes(std::int64_t n) {
  return 2.0 * n * kOriginalDim * sizeof(T) + 2.0 * n * (kOriginalDim / 2) * sizeof(float);
}

/// Inputs and outputs of the original sweep, one copy per input set.
template <typename T>
struct OriginalData {
  SetArray<T> x, y;
  SetArray<float> cos, sin, freq;
  int batch = 0;

  std::string setup(std::int64_t n) {
    batch = bench::batch_for(original_bytes<T>(n));
    const std::size_t elems = static_cast<std::size_t>(n) * kOriginalDim, rows = elems / 2;
    std::string e = x.allocate(elems, batch);
    if (e.empty()) e = y.allocate(elems, batch);
    if (e.empty()) e = cos.allocate(rows, batch);
    if (e.empty()) e = sin.allocate(rows, batch);
    if (e.empty()) e = freq.allocate(kOriginalDim / 2, 1);
    if (e.empty()) e = freq.upload(bench::inv_freq(10000.0, kOriginalDim));
    if (e.empty()) e = bench::fill_uniform(x, 1);
    for (int i = 0; i < batch && e.empty(); ++i) e = bench::fill_cos_sin(cos[i], sin[i], n, kOriginalDim / 2, freq[0]);
    return e;
  }
};

template <typename T>
void original(benchmark::State& state, std::int64_t n, bench::L2 l2 = bench::L2::kFlushed) {
  OriginalData<T> d;
  const std::string error = d.setup(n);
  run(state, error, [&](int i, cudaStream_t s) {
    return rope::rope_forward(d.x[i], d.cos[i], d.sin[i], d.y[i], n, kOriginalDim, s);
  }, d.batch, original_bytes<T>(n), static_cast<double>(n), rope_options(Timing::kBatched, l2));
}

template <typename T>
void unfused(benchmark::State& state, std::int64_t n) {
  OriginalData<T> d;
  bench::UnfusedScratch<T> scratch;
  std::string error = d.setup(n);
  if (error.empty()) error = scratch.allocate(n, kOriginalDim / 2);
  run(state, error, [&](int i, cudaStream_t s) {
    return bench::unfused_rope(d.x[i], d.cos[i], d.sin[i], d.y[i], n, kOriginalDim, scratch, s);
  }, d.batch, original_bytes<T>(n), static_cast<double>(n));
}

template <typename T>
void naive(benchmark::State& state, std::int64_t n) {
  OriginalData<T> d;
  const std::string error = d.setup(n);
  run(state, error, [&](int i, cudaStream_t s) {
    return bench::naive_fused<T>(d.x[i], d.y[i], 1, nullptr, nullptr, 0, nullptr, d.cos[i], d.sin[i], n,
                                 kOriginalDim, s);
  }, d.batch, original_bytes<T>(n), static_cast<double>(n));
}

// ---- Multi-head shapes: q and k in one launch, int64 positions into a shared cache ----

constexpr std::int64_t kCacheRows = 131072;  // positions are random in [0, kCacheRows)
constexpr double kLlamaBase = 500000.0;

/// One configuration of a q + k launch.
struct HeadsCase {
  std::int64_t tokens = 0;
  int q_heads = 32, k_heads = 8, head_dim = 128, rotary_dim = 128;
  bool computed = false;  ///< cos/sin computed in the kernel instead of read from the cache
  bool in_place = false;
  bool backward = false;
  /// 0: positions uniformly random in the cache. n > 0: the tokens are n sequences (a prefill
  /// batch), each counting from 0; with 3 axes, prompts of text and an image
  /// (bench::image_prompt_positions) instead, however many fit.
  int sequences = 0;
  /// 1: one position per token. 3: M-RoPE, [3, tokens] positions, Qwen2-VL's sections.
  int axes = 1;
  double base = kLlamaBase;
  /// n > 0: n packed sequences of `packed_length` full tokens (THD, cu_seqlens), `tokens` being
  /// this rank's share under context parallelism over `cp_size` ranks (rank 0, load-balanced).
  int packed = 0;
  std::int64_t packed_length = 0;
  int cp_size = 1;
  bool offsets = false;         ///< packed: per-sequence start offsets (int32)
  bool positions_array = false;  ///< packed: the same positions given as an int64 array instead
};

constexpr int kMropeSections[3] = {16, 24, 24};  // Qwen2-VL's mrope_section for 128-dim heads

/// Inputs and outputs of a HeadsCase, one copy per input set; the cos/sin cache is shared,
/// as a model's is (random positions make each call gather mostly different rows).
template <typename T>
struct HeadsData {
  HeadsCase c;
  SetArray<T> qx, qy, kx, ky;
  SetArray<std::int64_t> pos;
  SetArray<std::int32_t> cu_seqlens, seq_offsets;  // packed sequences: one set, as a training step has
  SetArray<float> cache_cos, cache_sin, freq;
  double distinct_rows = 0.0;  // mean distinct positions per call
  double bytes = 0.0;
  int batch = 0;

  std::string setup(const HeadsCase& hc) {
    c = hc;
    const int half = c.rotary_dim / 2;
    std::vector<std::int64_t> host_pos;
    // Positions first: the distinct rows they hit are part of the bytes, which size the batch.
    distinct_rows = draw_positions(1, host_pos);
    bytes = min_bytes();
    batch = bench::batch_for(bytes);
    draw_positions(batch, host_pos);
    const std::size_t q = static_cast<std::size_t>(c.tokens) * c.q_heads * c.head_dim;
    const std::size_t k = static_cast<std::size_t>(c.tokens) * c.k_heads * c.head_dim;
    std::string e = qx.allocate(q, batch);
    if (e.empty()) e = kx.allocate(k, batch);
    if (e.empty() && !c.in_place) e = qy.allocate(q, batch);
    if (e.empty() && !c.in_place) e = ky.allocate(k, batch);
    if (e.empty()) e = pos.allocate(static_cast<std::size_t>(c.tokens) * c.axes, batch);
    if (e.empty()) e = pos.upload(host_pos);
    if (e.empty() && c.packed > 0) {
      std::vector<std::int32_t> cu, offsets;
      packed_layout(cu, offsets);
      e = cu_seqlens.allocate(cu.size(), 1);
      if (e.empty()) e = cu_seqlens.upload(cu);
      if (e.empty()) e = seq_offsets.allocate(offsets.size(), 1);
      if (e.empty()) e = seq_offsets.upload(offsets);
    }
    if (e.empty()) e = freq.allocate(half, 1);
    if (e.empty()) e = freq.upload(bench::inv_freq(c.base, c.rotary_dim));
    if (e.empty() && !c.computed) e = cache_cos.allocate(static_cast<std::size_t>(kCacheRows) * half, 1);
    if (e.empty() && !c.computed) e = cache_sin.allocate(static_cast<std::size_t>(kCacheRows) * half, 1);
    if (e.empty() && !c.computed) e = bench::fill_cos_sin(cache_cos[0], cache_sin[0], kCacheRows, half, freq[0]);
    if (e.empty()) e = bench::fill_uniform(qx, 2);
    if (e.empty()) e = bench::fill_uniform(kx, 3);
    return e;
  }

  /// Packed sequences: cu_seqlens of the full sequences and each one's start offset (0 to 999).
  void packed_layout(std::vector<std::int32_t>& cu, std::vector<std::int32_t>& offsets) const {
    cu.assign(1, 0);
    offsets.clear();
    for (int s = 0; s < c.packed; ++s) {
      cu.push_back(static_cast<std::int32_t>(cu.back() + c.packed_length));
      offsets.push_back(c.offsets ? static_cast<std::int32_t>(bench::mix(static_cast<std::uint64_t>(s)) % 1000) : 0);
    }
  }

  /// Packed sequences' positions, set after set (the same in each), by the library's own rule.
  double packed_positions(int sets, std::vector<std::int64_t>& out) const {
    std::vector<std::int32_t> cu, offsets;
    packed_layout(cu, offsets);
    rope::Positions ps = rope::packed_sequence_positions(cu.data(), c.packed, offsets.data(),
                                                         rope::ContextParallel{c.cp_size, 0, rope::ContextSplit::kLoadBalanced});
    std::vector<std::int64_t> one(static_cast<std::size_t>(c.tokens));
    for (std::int64_t t = 0; t < c.tokens; ++t) one[t] = rope::detail::packed_sequence_position(ps.sequences, t);
    out.clear();
    for (int s = 0; s < sets; ++s) out.insert(out.end(), one.begin(), one.end());
    std::sort(one.begin(), one.end());
    return static_cast<double>(std::unique(one.begin(), one.end()) - one.begin());
  }

  /// Positions for `sets` input sets as `c` asks; returns the mean distinct positions per set.
  double draw_positions(int sets, std::vector<std::int64_t>& out) const {
    if (c.packed > 0) return packed_positions(sets, out);
    if (c.axes == 1 && c.sequences > 0) return bench::sequence_positions(c.tokens, c.sequences, sets, out);
    if (c.axes == 1) return bench::random_positions(c.tokens, kCacheRows, sets, 7, out);
    // M-RoPE: per set, [3, tokens]; each axis reads only its section's columns of its rows, so
    // its distinct rows count in proportion to the section.
    double rows = 0.0;
    if (c.sequences > 0) {
      const std::vector<double> distinct = bench::image_prompt_positions(c.tokens, sets, out);
      for (int a = 0; a < 3; ++a) rows += distinct[static_cast<std::size_t>(a)] * kMropeSections[a] / (c.rotary_dim / 2);
      return rows;
    }
    out.assign(static_cast<std::size_t>(3 * c.tokens) * sets, 0);
    for (int a = 0; a < 3; ++a) {
      std::vector<std::int64_t> axis;
      rows += bench::random_positions(c.tokens, kCacheRows, sets, 7 + a, axis) * kMropeSections[a] / (c.rotary_dim / 2);
      for (int s = 0; s < sets; ++s) {
        std::copy(axis.begin() + s * c.tokens, axis.begin() + (s + 1) * c.tokens,
                  out.begin() + (static_cast<std::size_t>(s) * 3 + a) * c.tokens);
      }
    }
    return rows;
  }

  /// x read and y written once (in place with partial rotary: only the rotated part), the
  /// positions, and the cos/sin rows of the distinct positions (or the frequencies).
  double min_bytes() const {
    const double heads = c.q_heads + c.k_heads;
    const int moved_dim = c.in_place ? c.rotary_dim : c.head_dim;
    const double tensors = 2.0 * c.tokens * heads * moved_dim * sizeof(T);
    const double cos_sin = c.computed ? c.rotary_dim / 2 * sizeof(float)
                                      : distinct_rows * c.rotary_dim / 2 * sizeof(float) * 2;
    const double sequences = (c.packed + 1.0) * sizeof(std::int32_t) + (c.offsets ? c.packed * sizeof(std::int32_t) : 0.0);
    const double positions = c.packed > 0 && !c.positions_array ? sequences : c.axes * c.tokens * sizeof(std::int64_t);
    return tensors + positions + cos_sin;
  }

  rope::RopeParams<T> params(int i) const {
    rope::RopeParams<T> p;
    p.num_tokens = c.tokens;
    p.head_dim = c.head_dim;
    p.rotary_dim = c.rotary_dim;
    p.q = rope::packed_heads<T>(qx[i], c.in_place ? qx[i] : qy[i], c.q_heads, c.head_dim);
    p.k = rope::packed_heads<T>(kx[i], c.in_place ? kx[i] : ky[i], c.k_heads, c.head_dim);
    p.cos_sin = c.computed ? rope::computed_cos_sin(freq[0])
                           : rope::cos_sin_table<float>(cache_cos[0], cache_sin[0], kCacheRows, c.rotary_dim / 2);
    p.positions = c.axes == 1 ? rope::positions(pos[i])
                              : rope::multi_axis_positions(pos[i], 3, c.tokens, rope::AxisSections::kContiguous,
                                                           kMropeSections[0], kMropeSections[1], kMropeSections[2]);
    if (c.packed > 0 && !c.positions_array) {
      const rope::ContextParallel cp{c.cp_size, 0, rope::ContextSplit::kLoadBalanced};
      p.positions = c.offsets ? rope::packed_sequence_positions(cu_seqlens[0], c.packed, seq_offsets[0], cp)
                              : rope::packed_sequence_positions(cu_seqlens[0], c.packed, cp);
    }
    return p;
  }
};

template <typename T>
void heads(benchmark::State& state, HeadsCase hc, Timing timing = Timing::kBatched,
           bench::L2 l2 = bench::L2::kFlushed) {
  HeadsData<T> d;
  const std::string error = d.setup(hc);
  run(state, error, [&](int i, cudaStream_t s) {
    const rope::RopeParams<T> p = d.params(i);
    return d.c.backward ? rope::rope_backward(p, s) : rope::rope_forward(p, s);
  }, d.batch, d.bytes, static_cast<double>(hc.tokens), rope_options(timing, l2));
}

/// The straightforward fused kernel on the same q + k + positions + cache inputs.
void naive_heads(benchmark::State& state, HeadsCase hc) {
  using T = __nv_bfloat16;
  HeadsData<T> d;
  const std::string error = d.setup(hc);
  run(state, error, [&](int i, cudaStream_t s) {
    return bench::naive_fused<T>(d.qx[i], d.qy[i], d.c.q_heads, d.kx[i], d.ky[i], d.c.k_heads, d.pos[i],
                                 d.cache_cos[0], d.cache_sin[0], d.c.tokens, d.c.head_dim, s);
  }, d.batch, d.bytes, static_cast<double>(hc.tokens));
}

/// The copy ceiling for a HeadsCase: same bytes (positions drawn the same way).
void copy_heads(benchmark::State& state, HeadsCase hc, bool kernel = false) {
  std::vector<std::int64_t> unused;
  HeadsData<__nv_bfloat16> d;
  d.c = hc;
  d.distinct_rows = d.draw_positions(1, unused);
  copy_bench(state, d.min_bytes(), static_cast<double>(hc.tokens), kernel);
}

void empty_kernel_bench(benchmark::State& state, Timing timing) {
  run(state, {}, [](int, cudaStream_t s) {
    bench::empty_kernel<<<1, 1, 0, s>>>();
    return cudaGetLastError();
  }, 256, 0.0, 0.0, [timing] {
    RunOptions o;
    o.timing = timing;
    return o;
  }());
}

/// A decode step's kernel chain (bench/chain.cuh): a producer writes q and k, rope rotates them in
/// place, a consumer reads them; warm, back to back, time per step. `programmatic` launches all
/// three with programmatic dependent launch (LaunchOptions for rope).
void chain(benchmark::State& state, std::int64_t tokens, bool programmatic) {
  using T = __nv_bfloat16;
  HeadsCase hc;
  hc.tokens = tokens;
  hc.in_place = true;
  HeadsData<T> d;
  std::string error = d.setup(hc);
  SetArray<float> sum;
  if (error.empty()) error = sum.allocate(1, 1);
  rope::LaunchOptions options;
  options.programmatic_dependent_launch = programmatic;
  const std::int64_t q = tokens * hc.q_heads * hc.head_dim, k = tokens * hc.k_heads * hc.head_dim;
  const unsigned blocks = std::min(bench::blocks_for(q + k), 2u * gpu().prop.multiProcessorCount);
  RunOptions o;
  o.l2 = bench::L2::kWarm;
  run(state, error, [&](int i, cudaStream_t s) {
    // The stand-ins launch as rope does (rope::detail::launch_kernel), with the same options.
    cudaError_t e = rope::detail::launch_kernel(bench::chain_producer<T>, dim3(blocks), dim3(256), 0, s, options,
                                                d.qx[i], q, d.kx[i], k, 0.5f);
    if (e == cudaSuccess) e = rope::rope_forward(d.params(i), s, options);
    if (e == cudaSuccess) {
      e = rope::detail::launch_kernel(bench::chain_consumer<T>, dim3(blocks), dim3(256), 0, s, options,
                                      static_cast<const T*>(d.qx[i]), q, static_cast<const T*>(d.kx[i]), k, sum[0]);
    }
    return e;
  }, d.batch, 0.0, static_cast<double>(tokens), o);
}

// ---- RoPE + KV-cache append: Llama-3-8B, fused QKV [T, 32 + 8 + 8, 128] bf16, NHD cache ----

constexpr int kAppendQ = 32, kAppendKv = 8, kAppendDim = 128, kAppendBlock = 16;
constexpr int kAppendRow = (kAppendQ + 2 * kAppendKv) * kAppendDim;

/// Random positions into the shared cos/sin cache for a fixture whose input sets fill the flush
/// budget: the distinct rows of one set, the bytes of one set (`min_bytes(distinct_rows)`), the
/// number of sets, and `tokens` positions per set.
struct PositionSets {
  double distinct_rows = 0.0;
  double bytes = 0.0;
  int batch = 0;
  std::vector<std::int64_t> positions;
};

template <typename MinBytes>
PositionSets random_position_sets(std::int64_t tokens, std::uint64_t seed, MinBytes min_bytes) {
  PositionSets s;
  s.distinct_rows = bench::random_positions(tokens, kCacheRows, 1, seed, s.positions);
  s.bytes = min_bytes(s.distinct_rows);
  s.batch = bench::batch_for(s.bytes);
  bench::random_positions(tokens, kCacheRows, s.batch, seed, s.positions);
  return s;
}

/// The shared fp32 cos/sin cache: kCacheRows rows of head_dim / 2 values each, from the model's
/// base (rope_theta), and its inverse frequencies.
struct CosSinCache {
  bench::SetArray<float> cos, sin, freq;

  std::string setup(int head_dim, double base) {
    std::string e = freq.allocate(head_dim / 2, 1);
    if (e.empty()) e = freq.upload(bench::inv_freq(base, head_dim));
    if (e.empty()) e = cos.allocate(static_cast<std::size_t>(kCacheRows) * head_dim / 2, 1);
    if (e.empty()) e = sin.allocate(static_cast<std::size_t>(kCacheRows) * head_dim / 2, 1);
    if (e.empty()) e = bench::fill_cos_sin(cos[0], sin[0], kCacheRows, head_dim / 2, freq[0]);
    return e;
  }

  rope::CosSin table(int head_dim) const { return rope::cos_sin_table<float>(cos[0], sin[0], kCacheRows, head_dim / 2); }
};

/// q rotated in place; k rotated into the cache only (no write-back), v copied into it; int64
/// positions into the shared fp32 cos/sin cache; each input set appends to its own cache rows
/// (set s, token t -> slot s * T + t, contiguous as a prefill's are).
template <typename C>
struct AppendData {
  std::int64_t tokens = 0;
  SetArray<__nv_bfloat16> qkv;
  SetArray<std::int64_t> pos, slots;
  CosSinCache table;
  SetArray<C> k_cache, v_cache;
  SetArray<__nv_fp8_e4m3> q_fp8;  // with `quantized_q` only: q's FP8 output, in place of q's store
  bool quantized_q = false;
  /// FP8 caches' (and q's) scale: 1/224 (inexact reciprocal: the stores divide), or 1, vLLM's
  /// default where no scales were calibrated (a power of two: the stores skip the division's
  /// corrections).
  float fp8_scale = 1.0f / 224.0f;
  std::int64_t num_blocks = 0;
  double distinct_rows = 0.0, bytes = 0.0;
  int batch = 0;

  /// q read and written (`q_out_bytes` per element: 2 in place, 1 to FP8), k and v read, both
  /// cache rows written, positions and slots read, and the cos/sin rows of the distinct
  /// positions: the fewest bytes of the fused operation.
  static double min_bytes(std::int64_t tokens, double distinct_rows, double q_out_bytes = 2.0) {
    const double head = kAppendDim;
    return tokens * (kAppendQ * head * (2 + q_out_bytes) + 2.0 * kAppendKv * head * 2 +
                     2.0 * kAppendKv * head * sizeof(C) + 2 * sizeof(std::int64_t)) +
           distinct_rows * kAppendDim / 2 * sizeof(float) * 2;
  }

  std::string setup(std::int64_t t, bool quantize_q = false) {
    tokens = t;
    quantized_q = quantize_q;
    const double q_out = quantize_q ? 1.0 : 2.0;
    const PositionSets sets = random_position_sets(t, 11, [t, q_out](double rows) { return min_bytes(t, rows, q_out); });
    distinct_rows = sets.distinct_rows;
    bytes = sets.bytes;
    batch = sets.batch;
    std::vector<std::int64_t> host_slots(static_cast<std::size_t>(t) * batch);
    for (std::size_t i = 0; i < host_slots.size(); ++i) host_slots[i] = static_cast<std::int64_t>(i);
    num_blocks = (t * batch + kAppendBlock - 1) / kAppendBlock;
    const std::size_t cache = static_cast<std::size_t>(num_blocks) * kAppendBlock * kAppendKv * kAppendDim;
    std::string e = qkv.allocate(static_cast<std::size_t>(t) * kAppendRow, batch);
    if (e.empty()) e = pos.allocate(static_cast<std::size_t>(t), batch);
    if (e.empty()) e = pos.upload(sets.positions);
    if (e.empty()) e = slots.allocate(static_cast<std::size_t>(t), batch);
    if (e.empty()) e = slots.upload(host_slots);
    if (e.empty()) e = k_cache.allocate(cache, 1);
    if (e.empty()) e = v_cache.allocate(cache, 1);
    if (e.empty() && quantize_q) e = q_fp8.allocate(static_cast<std::size_t>(t) * kAppendQ * kAppendDim, batch);
    if (e.empty()) e = table.setup(kAppendDim, kLlamaBase);
    if (e.empty()) e = bench::fill_uniform(qkv, 4);
    return e;
  }

  /// The RoPE part: q in place; k in place too (`k_out`: the unfused pair) or not written back.
  rope::RopeParams<__nv_bfloat16> params(int i, bool k_in_place) const {
    rope::RopeParams<__nv_bfloat16> p;
    p.num_tokens = tokens;
    p.head_dim = kAppendDim;
    p.q = rope::strided_heads<__nv_bfloat16>(qkv[i], qkv[i], kAppendQ, kAppendRow, kAppendDim);
    __nv_bfloat16* k = qkv[i] + kAppendQ * kAppendDim;
    p.k = rope::strided_heads<__nv_bfloat16>(k, k_in_place ? k : nullptr, kAppendKv, kAppendRow, kAppendDim);
    p.cos_sin = table.table(kAppendDim);
    p.positions = rope::positions(pos[i]);
    return p;
  }

  rope::KvCacheAppend<__nv_bfloat16, C> append(int i) const {
    rope::KvCacheAppend<__nv_bfloat16, C> a;
    a.v = qkv[i] + (kAppendQ + kAppendKv) * kAppendDim;
    a.v_token_stride = kAppendRow;
    a.v_head_stride = kAppendDim;
    a.k_cache = rope::nhd_paged_cache<C>(k_cache[0], kAppendBlock, kAppendKv, kAppendDim);
    a.v_cache = rope::nhd_paged_cache<C>(v_cache[0], kAppendBlock, kAppendKv, kAppendDim);
    a.num_blocks = num_blocks;
    a.block_size = kAppendBlock;
    a.slots = rope::slot_mapping(static_cast<const std::int64_t*>(slots[i]));
    if (std::is_same<C, __nv_fp8_e4m3>::value) a.k_scale = a.v_scale = fp8_scale;
    if constexpr (std::is_same<C, __nv_fp8_e4m3>::value) {
      if (quantized_q) {
        a.q_fp8 = q_fp8[i];
        a.q_fp8_token_stride = kAppendQ * kAppendDim;
        a.q_fp8_head_stride = kAppendDim;
        a.q_scale = fp8_scale;
      }
    }
    return a;
  }
};

/// rope_forward_append: one launch.
/// `quantize_q`: q goes to an FP8 buffer instead of back in place (q.y null).
template <typename C>
void append_fused(benchmark::State& state, std::int64_t tokens, bool quantize_q = false,
                  float fp8_scale = 1.0f / 224.0f) {
  AppendData<C> d;
  d.fp8_scale = fp8_scale;
  const std::string error = d.setup(tokens, quantize_q);
  run(state, error, [&](int i, cudaStream_t s) {
    rope::RopeParams<__nv_bfloat16> p = d.params(i, false);
    if (quantize_q) p.q.y = nullptr;
    return rope::rope_forward_append(p, d.append(i), s);
  }, d.batch, d.bytes, static_cast<double>(tokens), rope_options());
}

/// The same work unfused: rope_forward (q and k in place), then a separate cache-write kernel.
/// Bytes counted are the fused operation's, so GB/s compare as times do.
template <typename C>
void append_unfused(benchmark::State& state, std::int64_t tokens) {
  AppendData<C> d;
  const std::string error = d.setup(tokens);
  const float scale = std::is_same<C, __nv_fp8_e4m3>::value ? 1.0f / 224.0f : 1.0f;
  run(state, error, [&](int i, cudaStream_t s) {
    const cudaError_t e = rope::rope_forward(d.params(i, true), s);
    if (e != cudaSuccess) return e;
    const __nv_bfloat16* k = d.qkv[i] + kAppendQ * kAppendDim;
    return bench::write_kv_cache<C>(k, k + kAppendKv * kAppendDim, kAppendRow, tokens, kAppendKv * kAppendDim,
                                    d.slots[i], d.k_cache[0], d.v_cache[0], scale, scale, s);
  }, d.batch, d.bytes, static_cast<double>(tokens), rope_options());
}

// ---- QK-RMSNorm + RoPE: Qwen3-8B, fused QKV [T, 48, 128] bf16 (q 32, k 8, v 8) ----

constexpr int kNormQ = 32, kNormK = 8, kNormV = 8, kNormDim = 128;
constexpr int kNormRow = (kNormQ + kNormK + kNormV) * kNormDim;

/// q and k normalized and rotated in place in the fused buffer (v untouched); bf16 weights;
/// int64 positions into the shared fp32 cos/sin cache.
struct QkNormData {
  std::int64_t tokens = 0;
  SetArray<__nv_bfloat16> qkv, weights;
  SetArray<std::int64_t> pos;
  CosSinCache table;
  double distinct_rows = 0.0, bytes = 0.0;
  int batch = 0;

  /// q and k read and written once, the positions, the cos/sin rows of the distinct positions,
  /// and the two weight vectors: the fewest bytes of the fused operation.
  static double min_bytes(std::int64_t tokens, double distinct_rows) {
    return tokens * (2.0 * (kNormQ + kNormK) * kNormDim * 2 + sizeof(std::int64_t)) +
           distinct_rows * kNormDim / 2 * sizeof(float) * 2 + 2.0 * kNormDim * 2;
  }

  std::string setup(std::int64_t t) {
    tokens = t;
    const PositionSets sets = random_position_sets(t, 13, [t](double rows) { return min_bytes(t, rows); });
    distinct_rows = sets.distinct_rows;
    bytes = sets.bytes;
    batch = sets.batch;
    std::string e = qkv.allocate(static_cast<std::size_t>(t) * kNormRow, batch);
    if (e.empty()) e = weights.allocate(2 * kNormDim, 1);
    if (e.empty()) e = pos.allocate(static_cast<std::size_t>(t), batch);
    if (e.empty()) e = pos.upload(sets.positions);
    if (e.empty()) e = table.setup(kNormDim, 1000000.0);  // Qwen3's rope_theta
    if (e.empty()) e = bench::fill_uniform(qkv, 5);
    if (e.empty()) e = bench::fill_uniform(weights, 6);
    return e;
  }

  rope::RopeParams<__nv_bfloat16> params(int i) const {
    rope::RopeParams<__nv_bfloat16> p;
    p.num_tokens = tokens;
    p.head_dim = kNormDim;
    p.q = rope::strided_heads<__nv_bfloat16>(qkv[i], qkv[i], kNormQ, kNormRow, kNormDim);
    __nv_bfloat16* k = qkv[i] + kNormQ * kNormDim;
    p.k = rope::strided_heads<__nv_bfloat16>(k, k, kNormK, kNormRow, kNormDim);
    p.cos_sin = table.table(kNormDim);
    p.positions = rope::positions(pos[i]);
    return p;
  }

  rope::QkNorm<__nv_bfloat16> norm() const {
    rope::QkNorm<__nv_bfloat16> n;
    n.q_weight = weights[0];
    n.k_weight = weights[0] + kNormDim;
    return n;
  }
};

/// rope_forward_qk_norm: one launch.
void qk_norm_fused(benchmark::State& state, std::int64_t tokens) {
  QkNormData d;
  const std::string error = d.setup(tokens);
  run(state, error, [&](int i, cudaStream_t s) { return rope::rope_forward_qk_norm(d.params(i), d.norm(), s); },
      d.batch, d.bytes, static_cast<double>(tokens), rope_options());
}

/// The same work unfused: a per-head RMSNorm kernel (q and k in place), then rope_forward.
/// Bytes counted are the fused operation's, so GB/s compare as times do.
void qk_norm_unfused(benchmark::State& state, std::int64_t tokens) {
  QkNormData d;
  const std::string error = d.setup(tokens);
  run(state, error, [&](int i, cudaStream_t s) {
    const rope::QkNorm<__nv_bfloat16> n = d.norm();
    const cudaError_t e = bench::qk_rms_norm<kNormDim>(d.qkv[i], kNormRow, tokens, kNormQ, kNormK, n.q_weight,
                                                        n.k_weight, n.eps, s);
    return e != cudaSuccess ? e : rope::rope_forward(d.params(i), s);
  }, d.batch, d.bytes, static_cast<double>(tokens), rope_options());
}

// ---- The attention prologue: Qwen3-8B (32 q / 8 kv x 128, bf16), QK-RMSNorm + RoPE + paged
// k/v write (+ q to FP8 with an FP8 cache) in one launch, against the chain of four kernels ----

/// AppendData's buffers and the norm's two bf16 weight vectors. With an FP8 cache q goes to FP8
/// (q.y null); with a bf16 cache q is normalized and rotated in place.
template <typename C>
struct PrologueData : AppendData<C> {
  static constexpr bool kFp8 = std::is_same<C, __nv_fp8_e4m3>::value;
  SetArray<__nv_bfloat16> weights;

  /// AppendData's bytes and the weights.
  static double min_bytes(std::int64_t tokens, double distinct_rows) {
    return AppendData<C>::min_bytes(tokens, distinct_rows, kFp8 ? 1.0 : 2.0) + 2.0 * kAppendDim * 2;
  }

  std::string setup(std::int64_t t) {
    std::string e = AppendData<C>::setup(t, kFp8);
    this->bytes += 2.0 * kAppendDim * 2;
    if (e.empty()) e = weights.allocate(2 * kAppendDim, 1);
    if (e.empty()) e = bench::fill_uniform(weights, 7);
    return e;
  }

  rope::QkNorm<__nv_bfloat16> norm() const {
    rope::QkNorm<__nv_bfloat16> n;
    n.q_weight = weights[0];
    n.k_weight = weights[0] + kAppendDim;
    return n;
  }
};

/// rope_attention_prologue: one launch.
template <typename C>
void prologue_fused(benchmark::State& state, std::int64_t tokens, bench::L2 l2) {
  PrologueData<C> d;
  const std::string error = d.setup(tokens);
  run(state, error, [&](int i, cudaStream_t s) {
    rope::RopeParams<__nv_bfloat16> p = d.params(i, false);
    rope::KvCacheAppend<__nv_bfloat16, C> cache = d.append(i);
    const rope::QkNorm<__nv_bfloat16> n = d.norm();
    rope::AttentionPrologue<__nv_bfloat16, C> prologue;
    prologue.norm = &n;
    if (PrologueData<C>::kFp8) {
      p.q.y = nullptr;
      prologue.q_fp8 = rope::QuantizedQ{cache.q_fp8, cache.q_fp8_token_stride, cache.q_fp8_head_stride, cache.q_scale};
      cache.q_fp8 = nullptr;
      cache.q_scale = 1.0f;
    }
    prologue.cache = &cache;
    return rope::rope_attention_prologue(p, prologue, s);
  }, d.batch, d.bytes, static_cast<double>(tokens), rope_options(Timing::kBatched, l2));
}

/// The same work unfused: a per-head RMSNorm kernel (q and k in place), rope_forward (q and k in
/// place), a cache-write kernel and, with an FP8 cache, a q quantization kernel. Bytes counted
/// are the fused operation's, so GB/s compare as times do.
template <typename C>
void prologue_unfused(benchmark::State& state, std::int64_t tokens, bench::L2 l2) {
  PrologueData<C> d;
  const std::string error = d.setup(tokens);
  const float scale = PrologueData<C>::kFp8 ? d.fp8_scale : 1.0f;
  run(state, error, [&](int i, cudaStream_t s) {
    const rope::QkNorm<__nv_bfloat16> n = d.norm();
    cudaError_t e = bench::qk_rms_norm<kAppendDim>(d.qkv[i], kAppendRow, tokens, kAppendQ, kAppendKv, n.q_weight,
                                                    n.k_weight, n.eps, s);
    if (e == cudaSuccess) e = rope::rope_forward(d.params(i, true), s);
    const __nv_bfloat16* k = d.qkv[i] + kAppendQ * kAppendDim;
    if (e == cudaSuccess) {
      e = bench::write_kv_cache<C>(k, k + kAppendKv * kAppendDim, kAppendRow, tokens, kAppendKv * kAppendDim,
                                   d.slots[i], d.k_cache[0], d.v_cache[0], scale, scale, s);
    }
    if (e == cudaSuccess && PrologueData<C>::kFp8) {
      e = bench::quantize_rows_fp8(d.qkv[i], kAppendRow, tokens, kAppendQ * kAppendDim, d.q_fp8[i], scale, s);
    }
    return e;
  }, d.batch, d.bytes, static_cast<double>(tokens), rope_options(Timing::kBatched, l2));
}

template <typename C>
void register_prologue(const char* cache_name) {
  for (const std::int64_t t : {1, 64, 256, 4096, 16384, 65536}) {
    const std::string suffix = std::string("/") + cache_name + "/T:" + std::to_string(t);
    add("prologue/fused" + suffix, [t](benchmark::State& s) { prologue_fused<C>(s, t, bench::L2::kFlushed); });
    add("prologue/unfused" + suffix, [t](benchmark::State& s) { prologue_unfused<C>(s, t, bench::L2::kFlushed); });
    add("copy_kernel/prologue" + suffix, [t](benchmark::State& s) {
      std::vector<std::int64_t> unused;
      const double rows = bench::random_positions(t, kCacheRows, 1, 11, unused);
      copy_bench(s, PrologueData<C>::min_bytes(t, rows), static_cast<double>(t), true);
    });
    if (t <= 256) {
      add("prologue_warm/fused" + suffix, [t](benchmark::State& s) { prologue_fused<C>(s, t, bench::L2::kWarm); });
      add("prologue_warm/unfused" + suffix, [t](benchmark::State& s) { prologue_unfused<C>(s, t, bench::L2::kWarm); });
    }
  }
}

// ---- Registration ----

template <typename F>
void add(const std::string& name, F&& fn) {
  benchmark::RegisterBenchmark(name.c_str(), std::forward<F>(fn))
      ->UseManualTime()  // the median set by run(), not Google Benchmark's wall clock
      ->Iterations(1)    // one iteration = all samples of the median
      ->Unit(benchmark::kMicrosecond);
}

template <typename C>
void register_append(const char* cache_name) {
  for (const std::int64_t t : {1, 64, 128, 256, 512, 2048, 4096, 16384, 65536}) {
    const std::string suffix = std::string("/") + cache_name + "/T:" + std::to_string(t);
    add("kv_append/fused" + suffix, [t](benchmark::State& s) { append_fused<C>(s, t); });
    add("kv_append/unfused" + suffix, [t](benchmark::State& s) { append_unfused<C>(s, t); });
    add("copy_kernel/kv_append" + suffix, [t](benchmark::State& s) {
      std::vector<std::int64_t> unused;
      const double rows = bench::random_positions(t, kCacheRows, 1, 11, unused);
      copy_bench(s, AppendData<C>::min_bytes(t, rows), static_cast<double>(t), true);
    });
  }
}

template <typename T>
void register_original(const std::vector<std::int64_t>& sizes) {
  const std::string dt = dtype_name<T>();
  for (const std::int64_t n : sizes) {
    const std::string suffix = "/" + dt + "/N:" + std::to_string(n);
    add("original" + suffix, [n](benchmark::State& s) { original<T>(s, n); });
    add("unfused/original" + suffix, [n](benchmark::State& s) { unfused<T>(s, n); });
    add("naive_fused/original" + suffix, [n](benchmark::State& s) { naive<T>(s, n); });
    add("copy/original" + suffix, [n](benchmark::State& s) { copy_bench(s, original_bytes<T>(n), n); });
    add("copy_kernel/original" + suffix, [n](benchmark::State& s) { copy_bench(s, original_bytes<T>(n), n, true); });
  }
}

void register_all() {
  using bf16 = __nv_bfloat16;
  std::vector<std::int64_t> sizes;
  for (std::int64_t n = 2048; n <= 63488; n += 4096) sizes.push_back(n);
  for (const std::int64_t n : {262144, 1048576, 4194304}) sizes.push_back(n);
  register_original<float>(sizes);
  // The seed's sweep with its inputs in L2, as when the previous kernel just wrote them.
  for (const std::int64_t n : sizes) {
    add("original_warm/fp32/N:" + std::to_string(n),
        [n](benchmark::State& s) { original<float>(s, n, bench::L2::kWarm); });
  }
  register_original<bf16>(sizes);
  register_original<__half>(sizes);

  for (const std::int64_t t : {512, 4096, 16384, 65536}) {
    const std::string tokens = "/T:" + std::to_string(t);
    for (const bool backward : {false, true}) {
      for (const bool computed : {false, true}) {
        for (const bool in_place : {false, true}) {
          HeadsCase hc;
          hc.tokens = t;
          hc.computed = computed;
          hc.in_place = in_place;
          hc.backward = backward;
          add(std::string("llama3_8b_prefill/") + (backward ? "bwd" : "fwd") + (computed ? "/computed" : "/table") +
                  (in_place ? "/in_place" : "/out_of_place") + tokens,
              [hc](benchmark::State& s) { heads<bf16>(s, hc); });
        }
      }
    }
    // A prefill batch of 8 sequences, each counting from 0: neighbouring tokens share table rows.
    HeadsCase seqs;
    seqs.tokens = t;
    seqs.sequences = 8;
    add("llama3_8b_prefill/fwd/table_8seqs/out_of_place" + tokens, [seqs](benchmark::State& s) { heads<bf16>(s, seqs); });
    add("copy_kernel/llama3_8b_prefill_8seqs" + tokens, [seqs](benchmark::State& s) { copy_heads(s, seqs, true); });
    HeadsCase base;
    base.tokens = t;
    add("naive_fused/llama3_8b_prefill" + tokens, [base](benchmark::State& s) { naive_heads(s, base); });
    add("copy/llama3_8b_prefill" + tokens, [base](benchmark::State& s) { copy_heads(s, base); });
    add("copy_kernel/llama3_8b_prefill" + tokens, [base](benchmark::State& s) { copy_heads(s, base, true); });
  }

  // Training on packed sequences (THD, cu_seqlens): Llama-3-8B heads, table mode (the rows a
  // training step reads: every position of each sequence), forward and backward, with and without
  // per-sequence offsets, all tokens (cp:1) or rank 0's load-balanced half (cp:2); each shape also
  // with the same positions as an array, and the copy of each row's bytes.
  for (const auto& shape : {std::pair<int, std::int64_t>{1024, 64}, {64, 1024}, {8, 8192}}) {
    const std::string name = std::to_string(shape.first) + "x" + std::to_string(shape.second);
    for (const int cp : {1, 2}) {
      for (const bool backward : {false, true}) {
        for (const bool offsets : {false, true}) {
          HeadsCase hc;
          hc.packed = shape.first;
          hc.packed_length = shape.second;
          hc.tokens = shape.first * shape.second / cp;
          hc.cp_size = cp;
          hc.offsets = offsets;
          hc.backward = backward;
          const std::string row = std::string(backward ? "bwd/" : "fwd/") + name + (offsets ? "/offsets" : "/plain") +
                                  "/cp:" + std::to_string(cp);
          add("thd/" + row, [hc](benchmark::State& s) { heads<bf16>(s, hc); });
          add("copy_kernel/thd/" + row, [hc](benchmark::State& s) { copy_heads(s, hc, true); });
          if (!backward && !offsets && cp == 1) {
            hc.positions_array = true;
            add("thd_positions_array/fwd/" + name + "/plain/cp:1", [hc](benchmark::State& s) { heads<bf16>(s, hc); });
          }
        }
      }
    }
  }

  // Table mode at token counts between the rows above: where launches switch between two batches
  // of heads per lane without a walk and one batch with rows that walk a grid capped at the
  // resident blocks, and how the walk divides the tokens among its rows (detail/host/dispatch.cuh).
  for (const std::int64_t t : {1024, 2048, 5120, 8192, 12288, 24576, 32768}) {
    HeadsCase hc;
    hc.tokens = t;
    add("llama3_8b_prefill/fwd/table/out_of_place/T:" + std::to_string(t), [hc](benchmark::State& s) { heads<bf16>(s, hc); });
  }

  // Qwen2-VL-7B with M-RoPE: 28 q / 4 kv heads, 128 dims, 3-axis positions, rope_theta 1e6.
  for (const std::int64_t t : {4096, 16384}) {
    for (const bool computed : {false, true}) {
      HeadsCase hc;
      hc.tokens = t;
      hc.q_heads = 28;
      hc.k_heads = 4;
      hc.axes = 3;
      hc.base = 1e6;
      hc.computed = computed;
      add(std::string("qwen2vl_7b_mrope/") + (computed ? "computed" : "table") + "/T:" + std::to_string(t),
          [hc](benchmark::State& s) { heads<bf16>(s, hc); });
    }
    HeadsCase copy;
    copy.tokens = t;
    copy.q_heads = 28;
    copy.k_heads = 4;
    copy.axes = 3;
    add("copy_kernel/qwen2vl_7b_mrope/T:" + std::to_string(t), [copy](benchmark::State& s) { copy_heads(s, copy, true); });
    // The positions Qwen2-VL gives prompts of text and images (bench::image_prompt_positions):
    // neighbouring tokens share table rows, as they do in the model, where random positions on
    // each axis make every token gather three rows of its own.
    HeadsCase prompts = copy;
    prompts.base = 1e6;
    prompts.sequences = 1;
    add("qwen2vl_7b_mrope/table_image_prompts/T:" + std::to_string(t),
        [prompts](benchmark::State& s) { heads<bf16>(s, prompts); });
    add("copy_kernel/qwen2vl_7b_mrope_image_prompts/T:" + std::to_string(t),
        [prompts](benchmark::State& s) { copy_heads(s, prompts, true); });
  }

  // Decode: rotated in place, as an engine does before appending k to its cache.
  for (const std::int64_t t : {1, 8, 64, 256}) {
    for (const bool computed : {false, true}) {
      HeadsCase hc;
      hc.tokens = t;
      hc.computed = computed;
      hc.in_place = true;
      add(std::string("decode/") + (computed ? "computed" : "table") + "/T:" + std::to_string(t),
          [hc](benchmark::State& s) { heads<bf16>(s, hc); });
      // Warm: back-to-back calls on the same q and k, as right after the QKV projection.
      add(std::string("decode_warm/") + (computed ? "computed" : "table") + "/T:" + std::to_string(t),
          [hc](benchmark::State& s) { heads<bf16>(s, hc, Timing::kBatched, bench::L2::kWarm); });
    }
  }
  for (const std::int64_t t : {1, 8, 64, 256}) {
    HeadsCase hc;
    hc.tokens = t;
    hc.in_place = true;
    add("decode_latency/table/T:" + std::to_string(t),
        [hc](benchmark::State& s) { heads<bf16>(s, hc, Timing::kSingle); });
  }
  // A decode step's chain around rope, launched one after another and with programmatic
  // dependent launch.
  for (const std::int64_t t : {1, 8, 64}) {
    for (const bool programmatic : {false, true}) {
      add(std::string("chain/") + (programmatic ? "programmatic" : "serial") + "/T:" + std::to_string(t),
          [t, programmatic](benchmark::State& s) { chain(s, t, programmatic); });
    }
  }
  // RoPE + KV-cache append vs RoPE then a cache-write kernel, bf16 and FP8 caches.
  register_append<bf16>("bf16_cache");
  register_append<__nv_fp8_e4m3>("fp8_cache");
  // q quantized to FP8 beside the FP8 cache (FP8 attention), with its own copy row.
  for (const std::int64_t t : {4096, 16384, 65536}) {
    const std::string suffix = "/fp8_cache_fp8_q/T:" + std::to_string(t);
    add("kv_append/fused" + suffix, [t](benchmark::State& s) { append_fused<__nv_fp8_e4m3>(s, t, true); });
    add("copy_kernel/kv_append" + suffix, [t](benchmark::State& s) {
      std::vector<std::int64_t> unused;
      const double rows = bench::random_positions(t, kCacheRows, 1, 11, unused);
      copy_bench(s, AppendData<__nv_fp8_e4m3>::min_bytes(t, rows, 1.0), static_cast<double>(t), true);
    });
  }
  // The FP8 cache (and q) at scale 1 (no calibrated scales): the bytes of fp8_cache's and
  // fp8_cache_fp8_q's copy rows.
  for (const std::int64_t t : {4096, 16384, 65536}) {
    add("kv_append/fused/fp8_cache_unit_scale/T:" + std::to_string(t),
        [t](benchmark::State& s) { append_fused<__nv_fp8_e4m3>(s, t, false, 1.0f); });
    add("kv_append/fused/fp8_cache_fp8_q_unit_scale/T:" + std::to_string(t),
        [t](benchmark::State& s) { append_fused<__nv_fp8_e4m3>(s, t, true, 1.0f); });
  }
  // The attention prologue (Qwen3-8B): QK-norm + RoPE + paged k/v write (+ q to FP8) vs four kernels.
  register_prologue<bf16>("bf16_cache");
  register_prologue<__nv_fp8_e4m3>("fp8_cache_fp8_q");
  // QK-RMSNorm + RoPE (Qwen3-8B) vs a separate norm kernel then RoPE.
  for (const std::int64_t t : {1, 64, 128, 256, 512, 2048, 4096, 16384, 65536}) {
    const std::string suffix = "/T:" + std::to_string(t);
    add("qk_norm/fused" + suffix, [t](benchmark::State& s) { qk_norm_fused(s, t); });
    add("qk_norm/unfused" + suffix, [t](benchmark::State& s) { qk_norm_unfused(s, t); });
    add("copy_kernel/qk_norm" + suffix, [t](benchmark::State& s) {
      std::vector<std::int64_t> unused;
      const double rows = bench::random_positions(t, kCacheRows, 1, 13, unused);
      copy_bench(s, QkNormData::min_bytes(t, rows), static_cast<double>(t), true);
    });
  }

  add("empty_kernel", [](benchmark::State& s) { empty_kernel_bench(s, Timing::kBatched); });
  add("empty_kernel_latency", [](benchmark::State& s) { empty_kernel_bench(s, Timing::kSingle); });

  // Other head sizes (out of place, cache table), T = 16384; 128 repeats Llama for reference.
  struct Shape { const char* name; int q, k, dim, rot; };
  for (const Shape& sh : {Shape{"64/q32_k8", 32, 8, 64, 64}, Shape{"80_rot32/q32_k32", 32, 32, 80, 32},
                          Shape{"128/q32_k8", 32, 8, 128, 128}, Shape{"256/q16_k8", 16, 8, 256, 256}}) {
    HeadsCase hc;
    hc.tokens = 16384;
    hc.q_heads = sh.q;
    hc.k_heads = sh.k;
    hc.head_dim = sh.dim;
    hc.rotary_dim = sh.rot;
    add(std::string("head_dim/") + sh.name + "/T:16384", [hc](benchmark::State& s) { heads<bf16>(s, hc); });
  }
}

/// Whether the command line asks only for the list of names (which needs no GPU).
bool list_only(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (std::strcmp(a, "--benchmark_list_tests") == 0 || std::strcmp(a, "--benchmark_list_tests=true") == 0 ||
        std::strcmp(a, "--benchmark_list_tests=1") == 0) {
      return true;
    }
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const bool listing = list_only(argc, argv);
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (!listing) {
    const char* env = std::getenv("ROPE_BENCH_SAMPLES");
    const int samples = env != nullptr ? std::atoi(env) : 30;
    if (samples < 1) {
      std::fprintf(stderr, "rope_bench: ROPE_BENCH_SAMPLES must be a positive integer\n");
      return 1;
    }
    std::string error = bench::init_gpu(samples);
    if (error.empty()) error = bench::add_context();
    if (!error.empty()) {
      std::fprintf(stderr, "rope_bench: %s\n", error.c_str());
      return 1;
    }
    std::fprintf(stderr, "rope_bench: %s, device copy %.0f GB/s (read + write), L2 %zu MiB\n", gpu().prop.name,
                 gpu().copy_bytes_per_s / 1e9, gpu().l2_bytes >> 20);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
