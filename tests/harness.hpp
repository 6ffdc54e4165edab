// SPDX-License-Identifier: MIT
#pragma once
// One test case end to end: build inputs for a configuration, run it on the host (the per-token
// body) or on the GPU (the real launcher), and check every output element against the reference,
// every unwritten element (guards, padding, untouched tokens) bit for bit against its old value.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <rope/rope.cuh>

#include "host_run.hpp"
#include "qk_norm_reference.hpp"
#include "reference.hpp"

namespace rope_test {

enum class Backend { kHost, kGpu };

/// The backends a test program's cases run on, set per target in tests/CMakeLists.txt:
/// ROPE_TEST_HOST_ONLY (the host body only) or ROPE_TEST_GPU_ONLY (the launchers only); neither
/// means both. A program then compiles only what its cases can run: behind each launcher are
/// dozens of kernel instances, behind each host run the body of every instance for the host, and
/// compiled into every test program both were most of CI's build. (Invalid-argument tests call
/// the launchers themselves, in any program.)
#if defined(ROPE_TEST_HOST_ONLY) && defined(ROPE_TEST_GPU_ONLY)
#error "a test program runs its cases on the host, on the GPU or on both, not on neither"
#endif
#if defined(ROPE_TEST_GPU_ONLY)
constexpr bool kCasesOnHost = false;
#else
constexpr bool kCasesOnHost = true;
#endif
#if defined(ROPE_TEST_HOST_ONLY)
constexpr bool kCasesOnGpu = false;
#else
constexpr bool kCasesOnGpu = true;
#endif

/// Whether this program's cases run on `b`.
inline bool runs_cases_on(Backend b) { return b == Backend::kHost ? kCasesOnHost : kCasesOnGpu; }
enum class TableLayout { kSeparate, kFused, kHfDuplicated };

struct CaseConfig {
  std::int64_t tokens = 16;
  int head_dim = 128;
  int rotary_dim = 0;  // 0: the whole head
  rope::Style style = rope::Style::kHalfSplit;
  int q_heads = 1;      // 0: a k-only launch
  int k_heads = 0;      // 0: a q-only launch
  int head_pad = 0;     // extra elements between heads
  int token_pad = 0;    // extra elements between tokens
  int y_token_pad = 0;  // extra padding of y's token stride over x's (out of place)
  int misalign = 0;     // elements added to every tensor base pointer
  int table_misalign = 0;  // elements added to the cos/sin table pointers, or to inv_freq (computed)
  int k_misalign = 0;   // elements added to k's base pointers only (not with fused_qkv), so q and k differ
  bool in_place = false;
  bool fused_qkv = false;  // q, k (and an untouched v) sliced out of one buffer
  rope::PositionType position_type = rope::PositionType::kNone;
  int out_of_range = 0;  // tokens given a position outside the table (table mode)
  std::int64_t table_rows = 0;  // 0: tokens (no positions) or tokens + 13
  TableLayout table_layout = TableLayout::kSeparate;
  bool table_in_tensor_type = false;
  bool computed = false;
  std::int64_t max_position = 4096;  // computed mode with positions: drawn from [0, max_position)
  float attention_scaling = 1.0f;
  bool backward = false;
  int lanes = 0;  // host only: lanes per token (0: the launcher's choice)
  HostPath host_path = HostPath::kAsLaunched;  // host only: which body a plain launch takes
  // Seed of this case's data (inputs, positions, table values). 0: base_seed() mixed with the
  // salt, as before; anything else makes the data a function of the config alone (exact replay).
  std::uint64_t data_seed = 0;
  // Computed mode only: when set, the frequencies and the attention factor come from
  // rope::compute_inv_freq(scaling, rotary_dim, ..., scaling_seq_len), replacing the plain
  // base-10000 frequencies and `attention_scaling`. LongRoPE's factors are read from the two
  // vectors below (rotary_dim / 2 entries each), whatever scaling.short_factor/long_factor hold.
  bool scaled = false;
  rope::RopeScaling scaling;
  std::int64_t scaling_seq_len = 0;
  std::vector<float> longrope_short, longrope_long;
  // QK-RMSNorm before the rotation (rope_forward_qk_norm): random weights for q and k, of T or
  // (float_weights) fp32, `weight_misalign` elements past an aligned address. No backward.
  bool qk_norm = false;
  rope::NormWeighting weighting = rope::NormWeighting::kMultiply;
  bool float_weights = false;
  float eps = 1e-6f;
  int weight_misalign = 0;

  std::string describe() const {
    std::ostringstream o;
    o << "tokens=" << tokens << " head_dim=" << head_dim << " rotary_dim=" << rotary_dim
      << " style=" << (style == rope::Style::kInterleaved ? "interleaved" : "half") << " q_heads=" << q_heads
      << " k_heads=" << k_heads << " head_pad=" << head_pad << " token_pad=" << token_pad
      << " y_token_pad=" << y_token_pad << " misalign=" << misalign << " table_misalign=" << table_misalign
      << " k_misalign=" << k_misalign
      << " in_place=" << in_place << " fused_qkv=" << fused_qkv << " positions=" << static_cast<int>(position_type)
      << " out_of_range=" << out_of_range << " table_rows=" << table_rows
      << " layout=" << static_cast<int>(table_layout) << " table_in_T=" << table_in_tensor_type
      << " computed=" << computed << " max_position=" << max_position << " scaling=" << attention_scaling
      << " backward=" << backward << " lanes=" << lanes;
    if (host_path == HostPath::kPerTokenBody) o << " host_path=per_token_body";
    if (data_seed != 0) o << " data_seed=" << data_seed;
    if (qk_norm) {
      o << " qk_norm{weighting=" << (weighting == rope::NormWeighting::kOnePlus ? "1+w" : "w")
        << " weights=" << (float_weights ? "float" : "T") << " eps=" << eps << " weight_misalign=" << weight_misalign
        << "}";
    }
    if (scaled) {
      o << " scaling{type=" << static_cast<int>(scaling.type) << " base=" << scaling.base
        << " factor=" << scaling.factor << " original_max=" << scaling.original_max_position_embeddings
        << " max=" << scaling.max_position_embeddings << " attention_factor=" << scaling.attention_factor
        << " beta_fast=" << scaling.beta_fast << " beta_slow=" << scaling.beta_slow
        << " mscale=" << scaling.mscale << " mscale_all_dim=" << scaling.mscale_all_dim
        << " low_freq_factor=" << scaling.low_freq_factor << " high_freq_factor=" << scaling.high_freq_factor
        << " seq_len=" << scaling_seq_len << "}";
    }
    return o.str();
  }
};

/// Seed of this test process: ROPE_TEST_SEED if set, else fresh each run (printed on failure).
inline std::uint64_t base_seed() {
  static const std::uint64_t seed = [] {
    const char* env = std::getenv("ROPE_TEST_SEED");
    return env != nullptr ? std::strtoull(env, nullptr, 10) : std::uint64_t{std::random_device{}()};
  }();
  return seed;
}

inline bool gpu_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define ROPE_SKIP_WITHOUT_GPU() \
  if (!::rope_test::gpu_available()) GTEST_SKIP() << "no CUDA device"

template <typename T> struct Tolerance;
template <> struct Tolerance<float> { static constexpr double kRelL2 = 1e-6, kMaxAbs = 1e-5; };
template <> struct Tolerance<__half> { static constexpr double kRelL2 = 1e-3, kMaxAbs = 2e-3; };
template <> struct Tolerance<__nv_bfloat16> { static constexpr double kRelL2 = 8e-3, kMaxAbs = 1.6e-2; };

/// A host array and (for GPU runs) its device mirror; `base(gpu)` is where pointers start.
template <typename E>
struct Mirror {
  std::vector<E> host;
  E* device = nullptr;
  Mirror() = default;
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;
  ~Mirror() { if (device != nullptr) cudaFree(device); }
  E* base(Backend b) { return b == Backend::kGpu ? device : host.data(); }
  void upload() {
    expect_ok(cudaMalloc(&device, host.size() * sizeof(E) + 16), "cudaMalloc");
    if (!host.empty()) expect_ok(cudaMemcpy(device, host.data(), host.size() * sizeof(E), cudaMemcpyHostToDevice), "upload");
  }
  void download() {
    if (!host.empty()) expect_ok(cudaMemcpy(host.data(), device, host.size() * sizeof(E), cudaMemcpyDeviceToHost), "download");
  }

 private:
  // A failed copy leaves the harness with nothing sound to check: stop the process loudly.
  static void expect_ok(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
      std::fprintf(stderr, "%s failed: %s\n", what, cudaGetErrorString(e));
      std::fflush(stderr);
      std::abort();
    }
  }
};

/// One float allocation for the invalid-argument tests: device memory when there is a GPU, host
/// memory otherwise (validation happens before any CUDA call), every element `fill`.
/// `contents()` reads it back, to prove a rejected launch wrote nothing.
class ScratchFloats {
 public:
  ScratchFloats(std::size_t elems, float fill) : gpu_(gpu_available()), elems_(elems) {
    const std::vector<float> values(elems, fill);
    if (gpu_) {
      EXPECT_EQ(cudaMalloc(&base_, elems * sizeof(float)), cudaSuccess);
      EXPECT_EQ(cudaMemcpy(base_, values.data(), elems * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    } else {
      base_ = new float[elems];
      std::memcpy(base_, values.data(), elems * sizeof(float));
    }
  }
  ScratchFloats(const ScratchFloats&) = delete;
  ScratchFloats& operator=(const ScratchFloats&) = delete;
  ~ScratchFloats() { gpu_ ? (void)cudaFree(base_) : delete[] base_; }

  float* data() const { return base_; }
  std::vector<float> contents() const {
    std::vector<float> out(elems_);
    if (gpu_) {
      EXPECT_EQ(cudaMemcpy(out.data(), base_, elems_ * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    } else {
      std::memcpy(out.data(), base_, elems_ * sizeof(float));
    }
    return out;
  }

 private:
  bool gpu_;
  std::size_t elems_;
  float* base_ = nullptr;
};

constexpr int kGuard = 48;  // elements before and after every tensor, checked untouched

/// Where one rotated tensor (q or k) lives inside the buffers.
struct TensorPlace {
  int heads = 0;
  int x_buffer = -1, y_buffer = -1;
  std::int64_t x_offset = 0, y_offset = 0;
  std::int64_t x_ts = 0, x_hs = 0, y_ts = 0, y_hs = 0;
};

template <typename T>
class Case {
 public:
  explicit Case(const CaseConfig& cfg, std::uint64_t salt = 0)
      : cfg_(cfg), rng_(cfg.data_seed != 0 ? cfg.data_seed : base_seed() ^ (salt * 0x9E3779B97F4A7C15ull)) {
    build();
  }

  /// Runs the case and checks it; the AssertionResult carries the seed and configuration on failure.
  ::testing::AssertionResult run(Backend backend) {
    if (build_error_ != nullptr) return fail() << "compute_inv_freq rejected the scaling: " << build_error_;
    if (!runs_cases_on(backend)) return fail() << "this test program runs no cases on this backend (tests/CMakeLists.txt)";
    std::vector<std::vector<T>> before;
    for (auto& b : buffers_) before.push_back(b->host);
    const int flag_before = flag_.host[0];
    if (backend == Backend::kGpu) {
      for (auto& b : buffers_) b->upload();
      table_.upload();
      inv_freq_.upload();
      pos32_.upload();
      pos64_.upload();
      flag_.upload();
      weights_.upload();
    }
    const rope::RopeParams<T> p = params(backend);
    cudaError_t err;
    if (cfg_.qk_norm) {
      if (cfg_.backward) return fail() << "the norm has no backward";
#if defined(ROPE_TEST_QK_NORM)
      err = cfg_.float_weights ? run_norm(p, norm_args<float>(backend), backend) : run_norm(p, norm_args<T>(backend), backend);
#else
      return fail() << "norm configurations run only where ROPE_TEST_QK_NORM is defined";
#endif
      if (backend == Backend::kGpu) {
        for (auto& b : buffers_) b->download();
        flag_.download();
      }
    } else if (backend == Backend::kGpu) {
      err = launch_on_gpu(p);
      for (auto& b : buffers_) b->download();
      flag_.download();
    } else {
#if defined(ROPE_TEST_GPU_ONLY)
      err = cudaErrorNotSupported;  // run() refused the host backend already
#else
      err = run_on_host(p, cfg_.backward, cfg_.lanes, &vec_used_, cfg_.host_path);
#endif
    }
    if (err != cudaSuccess) return fail() << "launch failed: " << cudaGetErrorString(err) << " / " << rope::last_error_message();
    return check(before, flag_before);
  }

  int vec_used() const { return vec_used_; }
  /// Lanes per token of the last host norm run.
  int lanes_used() const { return lanes_used_; }
  /// Errors of the last successful check against the double-precision reference.
  double rel_l2() const { return rel_l2_; }
  double max_abs() const { return max_abs_; }

 private:
  ::testing::AssertionResult fail() const {
    ::testing::AssertionResult r = ::testing::AssertionFailure();
    if (cfg_.data_seed == 0) r << "[ROPE_TEST_SEED=" << base_seed() << "] ";  // else describe() has the seed
    return r << cfg_.describe() << "\n  ";
  }

  int rotary_dim() const { return cfg_.rotary_dim == 0 ? cfg_.head_dim : cfg_.rotary_dim; }

  /// The norm's weights in W (T or float), from weights_ (kept as bytes in a float buffer).
  template <typename W>
  rope::QkNorm<T, W> norm_args(Backend b) {
    const W* base = reinterpret_cast<const W*>(weights_.base(b));
    rope::QkNorm<T, W> n;
    if (q_.heads > 0) n.q_weight = base + cfg_.weight_misalign;
    if (k_.heads > 0) n.k_weight = base + weight_k_at_ + cfg_.weight_misalign;
    n.eps = cfg_.eps;
    n.weighting = cfg_.weighting;
    return n;
  }

  // Only the test binaries that define ROPE_TEST_QK_NORM compile the norm kernels (72 instances
  // per architecture); the others keep their build time.
  template <typename W>
  cudaError_t run_norm(const rope::RopeParams<T>& p, const rope::QkNorm<T, W>& n, Backend backend) {
    if (backend == Backend::kHost) {
#if defined(ROPE_TEST_GPU_ONLY)
      return cudaErrorNotSupported;  // run() refused the host backend already
#else
      return run_norm_on_host(p, n, cfg_.lanes, &vec_used_, &lanes_used_);
#endif
    }
#if defined(ROPE_TEST_HOST_ONLY)
    return cudaErrorNotSupported;  // run() refused the GPU backend already
#else
    cudaError_t err = rope::rope_forward_qk_norm(p, n);
    return err == cudaSuccess ? cudaDeviceSynchronize() : err;
#endif
  }

  /// The plain launch of a GPU case (forward or backward), synchronized.
  cudaError_t launch_on_gpu(const rope::RopeParams<T>& p) {
#if defined(ROPE_TEST_HOST_ONLY)
    (void)p;
    return cudaErrorNotSupported;  // run() refused the GPU backend already
#else
    const cudaError_t err = cfg_.backward ? rope::rope_backward(p) : rope::rope_forward(p);
    return err == cudaSuccess ? cudaDeviceSynchronize() : err;
#endif
  }

  /// Weights of q (at 0) and k (at weight_k_at_), shifted by weight_misalign, in T or float; the
  /// reference reads the stored values back.
  void build_weights() {
    const int D = cfg_.head_dim;
    weight_k_at_ = D + 16;
    const std::int64_t elements = 2 * weight_k_at_ + cfg_.weight_misalign;
    weights_.host.assign(static_cast<std::size_t>(elements), 0.0f);  // bytes in float units
    // Qwen3-like weights around 1 (w), Gemma-like ones around 0 (1 + w).
    const bool one_plus = cfg_.weighting == rope::NormWeighting::kOnePlus;
    std::uniform_real_distribution<double> u(one_plus ? -0.5 : 0.5, one_plus ? 0.5 : 1.25);
    for (int which = 0; which < 2; ++which) {
      std::vector<double>& ref = which == 0 ? ref_q_weight_ : ref_k_weight_;
      ref.resize(static_cast<std::size_t>(D));
      for (int d = 0; d < D; ++d) {
        const std::int64_t at = (which == 0 ? 0 : weight_k_at_) + cfg_.weight_misalign + d;
        const float v = static_cast<float>(u(rng_));
        if (cfg_.float_weights) {
          weights_.host[at] = v;
          ref[d] = v;
        } else {
          const T e = rope::detail::from_float<T>(v);
          std::memcpy(reinterpret_cast<unsigned char*>(weights_.host.data()) + at * sizeof(T), &e, sizeof(T));
          ref[d] = rope::detail::to_float(e);
        }
      }
    }
  }

  int add_buffer(std::int64_t elements, bool poison, int extra_misalign = 0) {
    buffers_.push_back(std::make_unique<Mirror<T>>());
    auto& h = buffers_.back()->host;
    const int lead = cfg_.misalign + extra_misalign;
    h.resize(static_cast<std::size_t>(elements + 2 * kGuard + lead));
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto& v : h) v = rope::detail::from_float<T>(poison ? NAN : u(rng_));
    // Guards always hold recognisable non-NaN values, so a stray write of anything shows.
    for (int i = 0; i < kGuard + lead; ++i) h[i] = rope::detail::from_float<T>(7.0f);
    for (std::size_t i = h.size() - kGuard; i < h.size(); ++i) h[i] = rope::detail::from_float<T>(-7.0f);
    return static_cast<int>(buffers_.size()) - 1;
  }

  static std::int64_t span(std::int64_t tokens, int heads, int head_dim, std::int64_t ts, std::int64_t hs) {
    return tokens == 0 ? 0 : (tokens - 1) * ts + (heads - 1) * hs + head_dim;
  }

  void place(TensorPlace& t, int heads, int x_buf, int y_buf, std::int64_t x_ts, std::int64_t y_ts,
             std::int64_t head_offset_elems) {
    t.heads = heads;
    t.x_buffer = x_buf;
    t.y_buffer = y_buf;
    t.x_hs = t.y_hs = cfg_.head_dim + cfg_.head_pad;
    t.x_ts = x_ts;
    t.y_ts = y_ts;
    t.x_offset = t.y_offset = kGuard + cfg_.misalign + head_offset_elems;
  }

  void build() {
    const int D = cfg_.head_dim, hs = D + cfg_.head_pad;
    const std::int64_t T_ = cfg_.tokens;
    if (cfg_.fused_qkv) {
      const int all = cfg_.q_heads + 2 * cfg_.k_heads;  // q | k | v
      const std::int64_t ts = std::int64_t{all} * hs + cfg_.token_pad;
      const std::int64_t y_ts = cfg_.in_place ? ts : ts + cfg_.y_token_pad;
      const int x = add_buffer(span(T_, all, D, ts, hs), false);
      const int y = cfg_.in_place ? x : add_buffer(span(T_, all, D, y_ts, hs), true);
      if (cfg_.q_heads > 0) place(q_, cfg_.q_heads, x, y, ts, y_ts, 0);
      if (cfg_.k_heads > 0) place(k_, cfg_.k_heads, x, y, ts, y_ts, std::int64_t{cfg_.q_heads} * hs);
    } else {
      auto one = [&](TensorPlace& t, int heads, int extra_misalign) {
        const std::int64_t ts = std::int64_t{heads} * hs + cfg_.token_pad;
        const std::int64_t y_ts = cfg_.in_place ? ts : ts + cfg_.y_token_pad;
        const int x = add_buffer(span(T_, heads, D, ts, hs), false, extra_misalign);
        const int y = cfg_.in_place ? x : add_buffer(span(T_, heads, D, y_ts, hs), true, extra_misalign);
        place(t, heads, x, y, ts, y_ts, extra_misalign);
      };
      if (cfg_.q_heads > 0) one(q_, cfg_.q_heads, 0);
      if (cfg_.k_heads > 0) one(k_, cfg_.k_heads, cfg_.k_misalign);
    }
    build_positions();
    build_cos_sin();
    if (cfg_.qk_norm) build_weights();
    if (weights_.host.empty()) weights_.host.push_back(0.0f);
    flag_.host.assign(1, 0);
  }

  void build_positions() {
    ref_.positions.resize(static_cast<std::size_t>(cfg_.tokens));
    rows_ = cfg_.table_rows != 0 ? cfg_.table_rows
                                 : (cfg_.position_type == rope::PositionType::kNone ? cfg_.tokens : cfg_.tokens + 13);
    const std::int64_t limit = cfg_.computed ? cfg_.max_position : rows_;
    std::uniform_int_distribution<std::int64_t> pick(0, limit > 0 ? limit - 1 : 0);
    for (std::int64_t t = 0; t < cfg_.tokens; ++t) {
      ref_.positions[t] = cfg_.position_type == rope::PositionType::kNone ? t : pick(rng_);
    }
    // A few out-of-range positions (negative or past the table), at random tokens.
    for (int i = 0; i < cfg_.out_of_range && cfg_.tokens > 0; ++i) {
      const std::int64_t t = std::uniform_int_distribution<std::int64_t>(0, cfg_.tokens - 1)(rng_);
      ref_.positions[t] = (i % 2 == 0) ? -1 - i : rows_ + i;
    }
    for (auto p : ref_.positions) {
      pos32_.host.push_back(static_cast<std::int32_t>(p));
      pos64_.host.push_back(p);
    }
    if (pos32_.host.empty()) pos32_.host.push_back(0), pos64_.host.push_back(0);
  }

  void build_cos_sin() {
    const int half = rotary_dim() / 2;
    ref_.tokens = cfg_.tokens;
    ref_.head_dim = cfg_.head_dim;
    ref_.rotary_dim = rotary_dim();
    ref_.interleaved = cfg_.style == rope::Style::kInterleaved;
    ref_.backward = cfg_.backward;
    ref_.computed = cfg_.computed;
    // Inverse frequencies of base 10000 (computed mode); kept as the fp32 values the kernel reads.
    // In computed mode they start `table_misalign` floats into their buffer.
    freq_at_ = cfg_.computed ? cfg_.table_misalign : 0;
    inv_freq_.host.resize(static_cast<std::size_t>(half + freq_at_) + 4);
    float* freq = inv_freq_.host.data() + freq_at_;
    for (int i = 0; i < half; ++i) {
      freq[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / rotary_dim()));
    }
    attention_scaling_ = cfg_.attention_scaling;
    if (cfg_.computed && cfg_.scaled) {
      // A model's scaled frequencies (their derivation is tested in test_frequencies.cu; here
      // they only give the kernel realistic frequency ranges and attention factors).
      rope::RopeScaling s = cfg_.scaling;
      if (s.type == rope::ScalingType::kLongRope) {
        s.short_factor = cfg_.longrope_short.data();
        s.long_factor = cfg_.longrope_long.data();
      }
      const rope::Status st = rope::compute_inv_freq(s, rotary_dim(), freq, &attention_scaling_,
                                                     cfg_.scaling_seq_len);
      if (!st.ok()) build_error_ = st.message;
    }
    for (int i = 0; i < half; ++i) ref_.inv_freq.push_back(freq[i]);
    ref_.attention_scaling = attention_scaling_;
    if (cfg_.computed) return;

    // Table values: cos/sin of random angles, stored as float or T; the reference reads the
    // stored values back, so only the kernel's arithmetic is under test.
    int stride = half + 8, sin_offset = 0;  // padded rows, still 16-byte aligned
    if (cfg_.table_layout == TableLayout::kFused) stride = 2 * half, sin_offset = half;
    if (cfg_.table_layout == TableLayout::kHfDuplicated) stride = 2 * half;
    const std::int64_t per_table = rows_ * stride + 8;
    table_.host.assign(static_cast<std::size_t>(2 * per_table + 16), 0.0f);  // bytes in float units
    std::uniform_real_distribution<double> angle(-3.2, 3.2);
    ref_.table_rows = rows_;
    ref_.table_row_stride = stride;
    ref_.cos_table.assign(static_cast<std::size_t>(rows_ * stride), 0.0);
    ref_.sin_table.assign(static_cast<std::size_t>(rows_ * stride), 0.0);
    const bool in_t = cfg_.table_in_tensor_type;
    // Element offsets of the cos and sin tables inside the table buffer.
    const std::int64_t cos_at = cfg_.table_misalign;
    const std::int64_t sin_at = cfg_.table_layout == TableLayout::kFused ? cos_at + sin_offset : cos_at + per_table;
    cos_at_ = cos_at;
    sin_at_ = sin_at;
    stride_ = stride;
    auto store = [&](std::int64_t index, double v) {
      if (in_t) {
        T e = rope::detail::from_float<T>(static_cast<float>(v));
        std::memcpy(reinterpret_cast<unsigned char*>(table_.host.data()) + index * sizeof(T), &e, sizeof(T));
        return rope::detail::to_float(e);
      }
      table_.host[index] = static_cast<float>(v);
      return table_.host[index];
    };
    for (std::int64_t r = 0; r < rows_; ++r) {
      for (int i = 0; i < half; ++i) {
        const double a = angle(rng_);
        const float c = store(cos_at + r * stride + i, std::cos(a));
        const float s = store(sin_at + r * stride + i, std::sin(a));
        ref_.cos_table[r * stride + i] = c;
        ref_.sin_table[r * stride + i] = s;
        if (cfg_.table_layout == TableLayout::kHfDuplicated) {  // HF repeats each half
          store(cos_at + r * stride + half + i, std::cos(a));
          store(sin_at + r * stride + half + i, std::sin(a));
        }
      }
    }
  }

  rope::RopeParams<T> params(Backend b) {
    rope::RopeParams<T> p;
    p.num_tokens = cfg_.tokens;
    p.head_dim = cfg_.head_dim;
    p.rotary_dim = cfg_.rotary_dim;
    p.style = cfg_.style;
    auto view = [&](const TensorPlace& t) {
      rope::HeadsTensor<T> v;
      v.num_heads = t.heads;
      v.x = buffers_[t.x_buffer]->base(b) + t.x_offset;
      v.y = buffers_[t.y_buffer]->base(b) + t.y_offset;
      v.x_token_stride = t.x_ts;
      v.x_head_stride = t.x_hs;
      v.y_token_stride = t.y_ts;
      v.y_head_stride = t.y_hs;
      return v;
    };
    if (q_.heads > 0) p.q = view(q_);  // an absent tensor stays default (no heads, null pointers)
    if (k_.heads > 0) p.k = view(k_);
    if (cfg_.computed) {
      p.cos_sin = rope::computed_cos_sin(inv_freq_.base(b) + freq_at_, attention_scaling_);
    } else if (cfg_.table_in_tensor_type) {
      const T* base = reinterpret_cast<const T*>(table_.base(b));
      p.cos_sin = rope::cos_sin_table(base + cos_at_, base + sin_at_, rows_, stride_, attention_scaling_);
    } else {
      const float* base = table_.base(b);
      p.cos_sin = rope::cos_sin_table(base + cos_at_, base + sin_at_, rows_, stride_, attention_scaling_);
    }
    if (cfg_.position_type == rope::PositionType::kInt32) p.positions = rope::positions(pos32_.base(b));
    if (cfg_.position_type == rope::PositionType::kInt64) p.positions = rope::positions(pos64_.base(b));
    p.out_of_range_flag = flag_.base(b);
    return p;
  }

  ::testing::AssertionResult check(const std::vector<std::vector<T>>& before, int flag_before) {
    std::vector<std::vector<char>> covered;
    for (auto& b : buffers_) covered.emplace_back(b->host.size(), 0);
    double err2 = 0, ref2 = 0, max_abs = 0;
    bool any_out_of_range = false;
    std::vector<double> x(cfg_.head_dim), want(cfg_.head_dim);
    for (const TensorPlace* t : {&q_, &k_}) {
      for (std::int64_t tok = 0; tok < cfg_.tokens; ++tok) {
        const bool valid = position_valid(ref_, tok);
        any_out_of_range |= !valid;
        for (int h = 0; h < t->heads; ++h) {
          const std::int64_t xo = t->x_offset + tok * t->x_ts + h * t->x_hs;
          const std::int64_t yo = t->y_offset + tok * t->y_ts + h * t->y_hs;
          if (!valid) {
            // Plain launches pass the token through unrotated (y = x); norm launches leave it
            // unwritten, checked with the untouched elements.
            if (cfg_.qk_norm) continue;
            for (int d = 0; d < cfg_.head_dim; ++d) {
              covered[t->y_buffer][yo + d] = 1;
              if (std::memcmp(&buffers_[t->y_buffer]->host[yo + d], &before[t->x_buffer][xo + d], sizeof(T)) != 0) {
                return fail() << "out-of-table token " << tok << " not passed through at head " << h << " dim " << d;
              }
            }
            continue;
          }
          for (int d = 0; d < cfg_.head_dim; ++d) x[d] = rope::detail::to_float(before[t->x_buffer][xo + d]);
          if (cfg_.qk_norm) {
            reference_rms_norm(x.data(), cfg_.head_dim, (t == &q_ ? ref_q_weight_ : ref_k_weight_).data(), cfg_.eps,
                               cfg_.weighting == rope::NormWeighting::kOnePlus, x.data());
          }
          reference_head(ref_, tok, x.data(), want.data());
          for (int d = 0; d < cfg_.head_dim; ++d) {
            covered[t->y_buffer][yo + d] = 1;
            const double got = rope::detail::to_float(buffers_[t->y_buffer]->host[yo + d]);
            if (std::isnan(got)) {
              return fail() << "NaN (unwritten?) at token " << tok << " head " << h << " dim " << d;
            }
            err2 += (got - want[d]) * (got - want[d]);
            ref2 += want[d] * want[d];
            // Normalized values reach past 1, where T's rounding step grows: the bound is
            // relative there (the plain cases stay within [-1.5, 1.5] and keep the absolute one).
            const double magnitude = cfg_.qk_norm ? std::max(1.0, std::fabs(want[d])) : 1.0;
            max_abs = std::max(max_abs, std::fabs(got - want[d]) / magnitude);
          }
        }
      }
    }
    for (std::size_t b = 0; b < buffers_.size(); ++b) {
      for (std::size_t i = 0; i < covered[b].size(); ++i) {
        if (!covered[b][i] && std::memcmp(&before[b][i], &buffers_[b]->host[i], sizeof(T)) != 0) {
          return fail() << "element " << i << " of buffer " << b << " should be untouched but was written";
        }
      }
    }
    const int flag_want = any_out_of_range ? 1 : flag_before;
    if (flag_.host[0] != flag_want) return fail() << "out_of_range flag is " << flag_.host[0] << ", want " << flag_want;
    const double rel = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
    rel_l2_ = rel;
    max_abs_ = max_abs;
    if (!(rel <= Tolerance<T>::kRelL2) || !(max_abs <= Tolerance<T>::kMaxAbs)) {
      return fail() << "relative L2 error " << rel << " (limit " << Tolerance<T>::kRelL2 << "), max abs " << max_abs
                    << " (limit " << Tolerance<T>::kMaxAbs << ")";
    }
    return ::testing::AssertionSuccess();
  }

  CaseConfig cfg_;
  std::mt19937_64 rng_;
  std::vector<std::unique_ptr<Mirror<T>>> buffers_;
  TensorPlace q_, k_;
  Mirror<float> table_, inv_freq_;
  Mirror<std::int32_t> pos32_;
  Mirror<std::int64_t> pos64_;
  Mirror<int> flag_;
  Mirror<float> weights_;  // the norm's weights (T or float, as bytes)
  std::vector<double> ref_q_weight_, ref_k_weight_;
  std::int64_t weight_k_at_ = 0;
  int lanes_used_ = 0;
  ReferenceInput ref_;
  std::int64_t rows_ = 0, cos_at_ = 0, sin_at_ = 0;
  int stride_ = 0;
  int vec_used_ = 0;
  double rel_l2_ = 0, max_abs_ = 0;
  float attention_scaling_ = 1.0f;     // what the kernel is given (computed mode)
  int freq_at_ = 0;                    // offset of the frequencies in inv_freq_ (computed mode)
  const char* build_error_ = nullptr;  // a config the harness could not build (reported by run)
};

}  // namespace rope_test
