// SPDX-License-Identifier: MIT
#pragma once
// Seeded randomized differential testing: (seed, index) -> one configuration drawn over every
// option the library takes, run through rope_test::Case (reference, NaN-poisoned outputs, guard
// elements). The fixed lists in cases.hpp test each option alone; this tests them in combination.
//
// Everything about case (seed, index) -- the configuration, the element type and the data -- is a
// function of those two numbers alone, so a failure is replayed exactly with
//   ROPE_RANDOM_CASE=<seed>:<index> <test binary> --gtest_filter='<suite>.*'
// The seed is ROPE_TEST_SEED if set, else fresh each run (printed, and in every failure).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <csignal>
#include <unistd.h>
#define ROPE_TEST_HAS_SIGNALS 1
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include "harness.hpp"

namespace rope_test {

/// splitmix64: a good 64-bit mix, used both to derive per-case seeds and as the generator.
inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  std::uint64_t s = a ^ splitmix64(b);
  return splitmix64(s);
}

/// Draws written out here rather than <random>'s distributions, whose results differ between
/// standard libraries: a replay line printed on one machine must mean the same case on another.
class Draw {
 public:
  explicit Draw(std::uint64_t seed) : state_(seed) {}
  std::uint64_t bits() { return splitmix64(state_); }
  double unit() { return static_cast<double>(bits() >> 11) * 0x1.0p-53; }  // [0, 1)
  bool chance(double p) { return unit() < p; }
  /// Uniform integer in [lo, hi].
  std::int64_t range(std::int64_t lo, std::int64_t hi) {
    return lo + static_cast<std::int64_t>(bits() % static_cast<std::uint64_t>(hi - lo + 1));
  }
  /// Integer in [lo, hi] (lo >= 1), uniform in log scale: small sizes are as common as large ones.
  std::int64_t log_range(std::int64_t lo, std::int64_t hi) {
    const double l = std::log(static_cast<double>(lo)), h = std::log(static_cast<double>(hi) + 1.0);
    const std::int64_t v = static_cast<std::int64_t>(std::exp(l + unit() * (h - l)));
    return v < lo ? lo : (v > hi ? hi : v);
  }
  double uniform(double lo, double hi) { return lo + unit() * (hi - lo); }
  template <typename E, std::size_t N>
  E pick(const E (&options)[N]) {
    return options[range(0, static_cast<std::int64_t>(N) - 1)];
  }

 private:
  std::uint64_t state_;
};

enum class DType { kF32 = 0, kF16 = 1, kBF16 = 2 };

inline const char* dtype_name(DType t) {
  return t == DType::kF32 ? "float" : (t == DType::kF16 ? "__half" : "__nv_bfloat16");
}

inline const char* backend_name(Backend b) { return b == Backend::kHost ? "host" : "gpu"; }

/// One drawn case.
struct RandomCase {
  std::uint64_t seed = 0, index = 0;
  Backend backend = Backend::kHost;
  DType dtype = DType::kF32;
  CaseConfig cfg;

  std::string describe() const {
    return std::string("dtype=") + dtype_name(dtype) + " " + cfg.describe();
  }
};

/// Sizes of one backend's draws. The host loops in software and checks on one core, so it gets
/// fewer tokens; `max_elements` bounds tokens * heads * head_dim so no single case dominates.
struct DrawLimits {
  std::int64_t max_tokens;
  std::int64_t max_elements;
};

inline DrawLimits draw_limits(Backend b) {
  if (b == Backend::kHost) return DrawLimits{300, 1000000};
  return DrawLimits{4096, 1500000};
}

/// A model-like RoPE scaling of each type, with parameters drawn around the values models ship.
inline void draw_scaling(Draw& d, CaseConfig& c, int rotary_dim) {
  const double bases[] = {10000.0, 10000.0, 500000.0, 1000000.0, 5000000.0};
  const std::int64_t originals[] = {2048, 4096, 8192, 32768};
  int type = static_cast<int>(d.range(0, 6));
  // NTK raises to rot / (rot - 2): rotary_dim 2 is rejected by compute_inv_freq, by design.
  if (rotary_dim < 4 && (type == 2 || type == 3)) type = 1;
  rope::RopeScaling& s = c.scaling;
  const double base = d.pick(bases);
  const std::int64_t original = d.pick(originals);
  switch (static_cast<rope::ScalingType>(type)) {
    case rope::ScalingType::kDefault:
      s = rope::RopeScaling::unscaled(base);
      break;
    case rope::ScalingType::kLinear:
      s = rope::RopeScaling::linear(base, d.uniform(1.0, 8.0));
      break;
    case rope::ScalingType::kNtk:
      s = rope::RopeScaling::ntk(base, d.uniform(1.0, 8.0));
      break;
    case rope::ScalingType::kDynamicNtk:
      s = rope::RopeScaling::dynamic_ntk(base, d.uniform(1.0, 8.0), original);
      c.scaling_seq_len = d.range(0, 4 * original);
      break;
    case rope::ScalingType::kYarn:
      s = rope::RopeScaling::yarn(base, d.uniform(1.0, 40.0), original);
      if (d.chance(0.3)) {  // other ramp bounds
        s.beta_slow = d.uniform(0.5, 2.0);
        s.beta_fast = d.uniform(8.0, 64.0);
      }
      if (d.chance(0.3)) s.mscale = 0.707, s.mscale_all_dim = d.chance(0.5) ? 0.707 : 1.0;  // DeepSeek-V2/V3
      if (d.chance(0.2)) s.attention_factor = d.uniform(0.8, 1.5);
      s.truncate = !d.chance(0.2);
      break;
    case rope::ScalingType::kLlama3:
      s = rope::RopeScaling::llama3(base, d.chance(0.5) ? 8.0 : d.uniform(1.0, 32.0), 1.0, 4.0,
                                    d.chance(0.5) ? 8192 : original);
      break;
    case rope::ScalingType::kLongRope: {
      // Phi-3-like: short factors near 1, long ones growing with the pair index up to ~60.
      c.longrope_short.resize(static_cast<std::size_t>(rotary_dim / 2));
      c.longrope_long.resize(c.longrope_short.size());
      for (std::size_t i = 0; i < c.longrope_short.size(); ++i) {
        const double t = static_cast<double>(i) / static_cast<double>(c.longrope_short.size());
        c.longrope_short[i] = static_cast<float>(d.uniform(1.0, 1.0 + 2.0 * t));
        c.longrope_long[i] = static_cast<float>(d.uniform(1.0, 1.0 + 60.0 * t * t));
      }
      s = rope::RopeScaling::longrope(base, nullptr, nullptr, original, original * 32);
      if (d.chance(0.2)) s.attention_factor = d.uniform(0.8, 1.5);
      c.scaling_seq_len = d.range(0, 2 * original);
      break;
    }
  }
  c.scaled = true;
}

/// The configuration of case (seed, index) for `backend`.
inline RandomCase random_case(std::uint64_t seed, std::uint64_t index, Backend backend) {
  RandomCase r;
  r.seed = seed;
  r.index = index;
  r.backend = backend;
  Draw d(mix(seed, index));
  const DrawLimits limits = draw_limits(backend);
  CaseConfig& c = r.cfg;
  c.data_seed = mix(seed ^ 0xD1B54A32D192ED03ull, index) | 1;  // never 0 (0 means "base seed")

  r.dtype = static_cast<DType>(d.range(0, 2));
  c.style = d.chance(0.5) ? rope::Style::kInterleaved : rope::Style::kHalfSplit;

  // Head size: the sizes models use, or any even size (most are not a multiple of 8 and so
  // defeat the 16-byte vector paths).
  const int model_dims[] = {16, 32, 64, 64, 80, 96, 128, 128, 128, 160, 192, 256};
  c.head_dim = d.chance(0.45) ? d.pick(model_dims) : static_cast<int>(2 * d.range(1, 128));
  const double rot = d.unit();
  if (rot < 0.5) {
    c.rotary_dim = 0;  // whole head
  } else if (rot < 0.6) {
    c.rotary_dim = c.head_dim;  // whole head, said explicitly
  } else if (rot < 0.75) {
    const int fraction = static_cast<int>(d.range(1, 3));  // 1/2 (ChatGLM), 1/4 (GPT-NeoX), 1/8
    c.rotary_dim = std::max(2, (c.head_dim >> fraction) & ~1);
  } else {
    c.rotary_dim = static_cast<int>(2 * d.range(1, c.head_dim / 2));
  }
  const int rotary_dim = c.rotary_dim == 0 ? c.head_dim : c.rotary_dim;

  c.q_heads = static_cast<int>(d.log_range(1, 40));
  c.k_heads = d.chance(0.4) ? 0 : static_cast<int>(d.log_range(1, 8));
  c.fused_qkv = d.chance(0.25);
  c.in_place = d.chance(0.3);
  c.head_pad = d.chance(0.7) ? 0 : static_cast<int>(d.range(1, 24));
  c.token_pad = d.chance(0.6) ? 0 : static_cast<int>(d.range(1, 40));
  c.y_token_pad = (c.in_place || d.chance(0.6)) ? 0 : static_cast<int>(d.range(1, 16));
  c.misalign = d.chance(0.5) ? 0 : static_cast<int>(d.range(1, 3));
  // k alone shifted: the launch's vector width must suit q and k both.
  if (c.k_heads > 0 && !c.fused_qkv && d.chance(0.2)) c.k_misalign = static_cast<int>(d.range(1, 4));

  c.tokens = d.log_range(1, limits.max_tokens);
  const std::int64_t per_token = std::int64_t{c.q_heads + c.k_heads} * c.head_dim;
  if (c.tokens * per_token > limits.max_elements) c.tokens = std::max<std::int64_t>(1, limits.max_elements / per_token);

  c.position_type = static_cast<rope::PositionType>(d.range(0, 2));
  const bool has_positions = c.position_type != rope::PositionType::kNone;
  c.computed = d.chance(0.35);
  if (c.computed) {
    c.max_position = d.log_range(1, std::int64_t{1} << 20);
    c.attention_scaling = d.chance(0.5) ? 1.0f : static_cast<float>(d.uniform(0.5, 1.5));
    if (d.chance(0.5)) draw_scaling(d, c, rotary_dim);
    c.table_misalign = d.chance(0.7) ? 0 : static_cast<int>(d.range(1, 3));  // shifts inv_freq
  } else {
    c.table_layout = static_cast<TableLayout>(d.range(0, 2));
    c.attention_scaling = d.chance(0.7) ? 1.0f : static_cast<float>(d.uniform(0.5, 1.5));
    c.table_in_tensor_type = d.chance(0.3);
    c.table_misalign = d.chance(0.5) ? 0 : static_cast<int>(d.range(1, 3));
    if (!has_positions) {
      // Row t serves token t, so the table needs at least `tokens` rows.
      c.table_rows = d.chance(0.5) ? 0 : c.tokens + d.range(0, 50);
    } else {
      // Fewer rows than tokens (positions repeat) or more; 0 lets the harness pick tokens + 13.
      c.table_rows = d.chance(0.2) ? 0 : d.log_range(1, 2 * c.tokens + 64);
    }
  }
  // Positions outside the table (tokens left unwritten, flag raised); in computed mode the same
  // draw gives negative positions, which are simply rotated.
  if (has_positions && d.chance(0.1)) c.out_of_range = static_cast<int>(d.range(1, 3));
  c.backward = d.chance(0.3);
  if (backend == Backend::kHost && d.chance(0.1)) c.lanes = static_cast<int>(d.log_range(1, 300));
  // A k-only launch (drawn last, so the draws above keep their meaning): q absent.
  if (c.k_heads > 0 && d.chance(0.1)) c.q_heads = 0;
  return r;
}

/// Runs and checks one drawn case.
inline ::testing::AssertionResult run_random_case(const RandomCase& rc) {
  switch (rc.dtype) {
    case DType::kF32: return Case<float>(rc.cfg).run(rc.backend);
    case DType::kF16: return Case<__half>(rc.cfg).run(rc.backend);
    default: return Case<__nv_bfloat16>(rc.cfg).run(rc.backend);
  }
}

/// ROPE_RANDOM_CASE=<seed>:<index>, if set.
struct ReplayRequest {
  bool set = false;
  std::uint64_t seed = 0, index = 0;
};

inline ReplayRequest parse_replay(const char* text) {
  ReplayRequest r;
  if (text == nullptr || *text == '\0') return r;
  char* end = nullptr;
  r.seed = std::strtoull(text, &end, 10);
  if (end == text || *end != ':') return r;
  const char* second = end + 1;
  r.index = std::strtoull(second, &end, 10);
  r.set = end != second && *end == '\0';
  return r;
}

inline ReplayRequest replay_request() {
  const char* env = std::getenv("ROPE_RANDOM_CASE");
  const ReplayRequest r = parse_replay(env);
  if (env != nullptr && *env != '\0' && !r.set) {
    std::fprintf(stderr, "ROPE_RANDOM_CASE='%s' is not <seed>:<index>; ignored\n", env);
  }
  return r;
}

inline std::string replay_line(const RandomCase& rc, const char* suite) {
  const std::vector<std::string> argv = ::testing::internal::GetArgvs();
  const std::string program = argv.empty() ? "<test binary>" : argv[0];
  return "ROPE_RANDOM_CASE=" + std::to_string(rc.seed) + ":" + std::to_string(rc.index) + " " + program +
         " --gtest_filter='" + suite + ".*'";
}

// A misaligned access on the host aborts the process (vector.cuh's check) and a GPU fault ends
// in an abort too (the harness stops on a failed copy); either way no gtest message would name
// the case. So the replay line of the case in flight is kept ready and written by a handler.
#if defined(ROPE_TEST_HAS_SIGNALS)
inline char* crash_note() {
  static char note[1024] = "";
  return note;
}

extern "C" inline void rope_test_crash_handler(int sig) {
  const char* note = crash_note();
  ssize_t ignored = write(STDERR_FILENO, note, std::strlen(note));
  (void)ignored;
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

inline void install_crash_note(const RandomCase& rc, const char* suite) {
  static const bool installed = [] {
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE}) std::signal(sig, rope_test_crash_handler);
    return true;
  }();
  (void)installed;
  std::snprintf(crash_note(), 1024, "\n*** crashed in random case %llu:%llu (%s); replay with:\n    %s\n",
                static_cast<unsigned long long>(rc.seed), static_cast<unsigned long long>(rc.index),
                backend_name(rc.backend), replay_line(rc, suite).c_str());
}
#else
inline void install_crash_note(const RandomCase&, const char*) {}
#endif

/// What a batch covered, printed so a reader sees the mix actually run.
struct Coverage {
  int run = 0, failed = 0;
  int dtype[3] = {0, 0, 0};
  int interleaved = 0, partial = 0, odd_head_dim = 0, gqa = 0, k_only = 0, fused = 0, in_place = 0, padded = 0,
      misaligned = 0, positions[3] = {0, 0, 0}, out_of_range = 0, computed = 0, scaled = 0, backward = 0,
      qk_norm = 0;
  std::int64_t max_tokens = 0;

  void add(const RandomCase& rc) {
    const CaseConfig& c = rc.cfg;
    ++run;
    ++dtype[static_cast<int>(rc.dtype)];
    interleaved += c.style == rope::Style::kInterleaved;
    partial += c.rotary_dim != 0 && c.rotary_dim < c.head_dim;
    odd_head_dim += c.head_dim % 8 != 0;
    gqa += c.k_heads > 0;
    k_only += c.q_heads == 0;
    fused += c.fused_qkv;
    in_place += c.in_place;
    padded += c.head_pad > 0 || c.token_pad > 0 || c.y_token_pad > 0;
    misaligned += c.misalign > 0 || c.table_misalign > 0 || c.k_misalign > 0;
    ++positions[static_cast<int>(c.position_type)];
    out_of_range += c.out_of_range > 0;
    computed += c.computed;
    scaled += c.scaled;
    backward += c.backward;
    qk_norm += c.qk_norm;
    max_tokens = std::max(max_tokens, c.tokens);
  }
};

/// The cases one batch runs: [first, first + count) of this process's seed, or, with
/// ROPE_RANDOM_CASE set, exactly that case in the batch that starts at 0 (`skip` for the others).
struct BatchCases {
  bool skip = false;
  bool replaying = false;  ///< ROPE_RANDOM_CASE is set
  std::uint64_t seed = 0, first = 0, count = 0;
};

inline BatchCases batch_cases(std::uint64_t first, std::uint64_t count) {
  const ReplayRequest replay = replay_request();
  if (!replay.set) return BatchCases{false, false, base_seed(), first, count};
  return BatchCases{first != 0, true, replay.seed, replay.index, 1};
}

/// Runs cases [first, first + count) of this process's seed on `backend` and reports each
/// failure with its replay line. With ROPE_RANDOM_CASE set, the batch that starts at 0 runs
/// exactly that one case and the other batches are skipped. `draw` makes case (seed, index):
/// random_case, or another generator over the same CaseConfig (random_norm_case).
using CaseDraw = RandomCase (*)(std::uint64_t seed, std::uint64_t index, Backend backend);
inline void run_random_batch(const char* suite, Backend backend, std::uint64_t first, std::uint64_t count,
                             CaseDraw draw = random_case) {
  const BatchCases cases = batch_cases(first, count);
  if (cases.skip) GTEST_SKIP() << "replaying ROPE_RANDOM_CASE in the first batch only";
  const std::uint64_t seed = cases.seed;
  first = cases.first;
  count = cases.count;
  constexpr int kReported = 10;  // failures shown in full; the rest are counted
  Coverage cov;
  const auto start = std::chrono::steady_clock::now();
  for (std::uint64_t i = first; i < first + count; ++i) {
    const RandomCase rc = draw(seed, i, backend);
    install_crash_note(rc, suite);
    cov.add(rc);
    if (cases.replaying) std::printf("[ REPLAY   ] case %llu:%llu %s\n", static_cast<unsigned long long>(seed),
                                static_cast<unsigned long long>(i), rc.describe().c_str());
    const ::testing::AssertionResult result = run_random_case(rc);
    if (!result) {
      if (++cov.failed <= kReported) {
        ADD_FAILURE() << "random case " << seed << ":" << i << " failed on the " << backend_name(backend)
                      << " (" << dtype_name(rc.dtype) << ")\n  replay: " << replay_line(rc, suite) << "\n  "
                      << result.message();
      }
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "[ RANDOM   ] %s: %d configs run (cases %llu..%llu of seed %llu) in %.1f s, %d failed\n"
      "[ RANDOM   ]   float/half/bf16 %d/%d/%d, interleaved %d, partial rotary %d, head_dim %%8!=0 %d, "
      "with k %d (k only %d), fused qkv %d, in place %d, padded %d, misaligned %d, positions none/i32/i64 %d/%d/%d, "
      "out of range %d, computed %d (scaled %d), backward %d, qk-norm %d, max tokens %lld\n",
      backend_name(backend), cov.run, static_cast<unsigned long long>(first),
      static_cast<unsigned long long>(first + count - 1), static_cast<unsigned long long>(seed), seconds,
      cov.failed, cov.dtype[0], cov.dtype[1], cov.dtype[2], cov.interleaved, cov.partial, cov.odd_head_dim, cov.gqa,
      cov.k_only, cov.fused, cov.in_place, cov.padded, cov.misaligned, cov.positions[0], cov.positions[1], cov.positions[2],
      cov.out_of_range, cov.computed, cov.scaled, cov.backward, cov.qk_norm, static_cast<long long>(cov.max_tokens));
  std::fflush(stdout);
  if (cov.failed > kReported) ADD_FAILURE() << cov.failed << " of " << cov.run << " random cases failed (first "
                                            << kReported << " shown)";
  ::testing::Test::RecordProperty("random_configs_run", cov.run);
}

}  // namespace rope_test
