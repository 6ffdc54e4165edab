// SPDX-License-Identifier: MIT
#pragma once
// Randomized differential testing of the attention prologue: (seed, index) -> one PrologueConfig
// and element type drawn over every prologue option (norm, cache, q to FP8, write-back, M-RoPE,
// cos/sin source, positions, layouts, strides, slots), run through PrologueCase (reference,
// poisoned outputs and caches, guards). Replayed like the other randomized suites:
//   ROPE_RANDOM_CASE=<seed>:<index> <test binary> --gtest_filter='<suite>.*'

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "prologue_harness.hpp"
#include "randomized.hpp"

namespace rope_test {

struct RandomPrologue {
  std::uint64_t seed = 0, index = 0;
  Backend backend = Backend::kHost;
  DType dtype = DType::kBF16;
  PrologueConfig cfg;

  std::string describe() const { return std::string("dtype=") + dtype_name(dtype) + " " + cfg.describe(); }
};

/// Tokens of host cases with a norm are capped lower: each lane runs as a thread there.
constexpr std::int64_t kHostPrologueNormMaxTokens = 40;

/// The prologue configuration of case (seed, index) for `backend`, within the (T, C, W) types
/// run_prologue compiles.
inline RandomPrologue random_prologue(std::uint64_t seed, std::uint64_t index, Backend backend) {
  RandomPrologue r;
  r.seed = seed;
  r.index = index;
  r.backend = backend;
  Draw d(mix(seed ^ 0x9E01061Eull, index));
  const DrawLimits limits = draw_limits(backend);
  PrologueConfig& c = r.cfg;
  c.data_seed = mix(seed ^ 0x5EED9E01ull, index) | 1;
  const double type = d.unit();
  r.dtype = type < 0.6 ? DType::kBF16 : type < 0.8 ? DType::kF16 : DType::kF32;

  // Stages.
  c.norm = static_cast<PrologueNorm>(d.range(0, 2));
  c.float_weights = r.dtype == DType::kBF16 && d.chance(0.5);
  const float eps_values[] = {1e-6f, 1e-5f, 1e-6f, 0.0f, 0.25f};
  c.eps = d.pick(eps_values);
  c.weight_misalign = d.chance(0.85) ? 0 : static_cast<int>(d.range(1, 4));
  switch (r.dtype) {
    case DType::kBF16: c.cache = static_cast<PrologueCache>(d.range(0, 2)); break;
    case DType::kF16: c.cache = d.chance(0.5) ? PrologueCache::kNone : PrologueCache::kFp8; break;
    default: c.cache = d.chance(0.5) ? PrologueCache::kNone : PrologueCache::kSameType; break;
  }
  c.q_fp8 = static_cast<PrologueQFp8>(d.range(0, 2));
  c.k_write_back = d.chance(0.7);

  // Shape.
  c.style = d.chance(0.5) ? rope::Style::kInterleaved : rope::Style::kHalfSplit;
  const int model_dims[] = {64, 64, 80, 96, 128, 128, 128, 256};
  c.head_dim = d.chance(0.6) ? d.pick(model_dims) : static_cast<int>(2 * d.range(1, 128));
  const double rot = d.unit();
  if (rot < 0.6) {
    c.rotary_dim = 0;
  } else if (rot < 0.8) {
    c.rotary_dim = std::max(2, (c.head_dim >> d.range(1, 3)) & ~1);
  } else {
    c.rotary_dim = static_cast<int>(2 * d.range(1, c.head_dim / 2));
  }
  c.q_heads = static_cast<int>(d.log_range(1, 40));
  c.kv_heads = static_cast<int>(d.log_range(1, 8));
  if (d.chance(0.1)) c.q_heads = 0;                                      // k only
  if (c.q_heads > 0 && d.chance(0.1)) c.kv_heads = 0;                    // q only
  if (c.kv_heads == 0) c.cache = PrologueCache::kNone;                   // a cache needs k
  if (c.q_heads == 0) c.q_fp8 = PrologueQFp8::kNone;                     // q_fp8 needs q
  c.fused_qkv = d.chance(0.2);
  c.in_place = d.chance(0.3);
  c.head_pad = d.chance(0.8) ? 0 : static_cast<int>(d.range(1, 24));
  c.misalign = d.chance(0.8) ? 0 : static_cast<int>(d.range(1, 3));

  // Cache.
  c.layout = static_cast<CacheLayout>(d.range(0, 3));
  const int block_sizes[] = {1, 8, 16, 16, 32, 64};
  c.block_size = d.pick(block_sizes);
  c.spare_blocks = d.range(0, 3);
  c.slot_type = d.chance(0.5) ? rope::SlotType::kInt32 : rope::SlotType::kInt64;
  if (d.chance(0.25)) c.negative_slots = static_cast<int>(d.range(1, 3));
  if (d.chance(0.1)) c.out_of_range_slots = static_cast<int>(d.range(1, 2));
  c.cache_misalign = d.chance(0.8) ? 0 : static_cast<int>(d.range(1, 4));
  // FP8 scales: the harness's inexact ones, 1, or powers of two (their stores skip corrections).
  const float scales[] = {0x1p-9f, 0x1p-7f, 1.0f, 0.7f};
  if (d.chance(0.4)) c.k_scale = d.pick(scales);
  if (d.chance(0.4)) c.v_scale = d.pick(scales);
  if (d.chance(0.4)) c.q_scale = d.pick(scales);
  c.q_fp8_misalign = d.chance(0.8) ? 0 : static_cast<int>(d.range(1, 7));
  c.q_fp8_head_pad = d.chance(0.8) ? 0 : static_cast<int>(d.range(1, 24));

  // cos/sin and positions.
  c.computed = d.chance(0.3);
  c.table_in_tensor_type = !c.computed && d.chance(0.3);
  c.attention_scaling = d.chance(0.8) ? 1.0f : static_cast<float>(d.uniform(0.5, 1.5));
  const int rotary_dim = c.rot();
  if (rotary_dim >= 4 && d.chance(0.3)) {
    // M-RoPE: 2 or 3 axes, the rotary_dim / 2 frequencies split among them (contiguous or
    // interleaved), every token's axes differing.
    c.axes = d.chance(0.75) ? 3 : 2;
    c.sections_layout = d.chance(0.5) ? rope::AxisSections::kInterleaved : rope::AxisSections::kContiguous;
    const int half = rotary_dim / 2;
    c.sections[0] = static_cast<int>(d.range(0, half));
    c.sections[1] = c.axes == 3 ? static_cast<int>(d.range(0, half - c.sections[0])) : half - c.sections[0];
    c.sections[2] = c.axes == 3 ? half - c.sections[0] - c.sections[1] : 0;
    if (d.chance(0.5) && half % 4 == 0 && c.axes == 3) {  // a model's proportions (Qwen2-VL's 1:1.5:1.5)
      c.sections[0] = half / 4, c.sections[1] = (half - half / 4) / 2;
      c.sections[2] = half - c.sections[0] - c.sections[1];
    }
    c.position_type = d.chance(0.5) ? rope::PositionType::kInt32 : rope::PositionType::kInt64;
  } else {
    c.position_type = static_cast<rope::PositionType>(d.range(0, 2));
  }
  const bool has_positions = c.position_type != rope::PositionType::kNone;
  if (!c.computed && has_positions && d.chance(0.1)) c.out_of_range_positions = static_cast<int>(d.range(1, 2));
  if (c.computed && d.chance(0.5)) c.max_position = d.log_range(4, std::int64_t{1} << 20);

  // Tokens.
  c.tokens = d.log_range(1, limits.max_tokens);
  if (backend == Backend::kHost && c.norm != PrologueNorm::kNone && c.tokens > kHostPrologueNormMaxTokens) {
    c.tokens = d.range(1, kHostPrologueNormMaxTokens);
  }
  const std::int64_t per_token = std::int64_t{c.q_heads + 3 * c.kv_heads} * c.head_dim;
  if (c.tokens * per_token > limits.max_elements) c.tokens = std::max<std::int64_t>(1, limits.max_elements / per_token);
  if (backend == Backend::kHost && d.chance(0.1)) c.lanes = static_cast<int>(d.log_range(1, 300));
  if (backend == Backend::kHost && d.chance(0.1)) c.modelled_resident = d.range(1, 64);
  return r;
}

inline ::testing::AssertionResult run_random_prologue(const RandomPrologue& rp) {
  switch (rp.dtype) {
    case DType::kF32: return run_prologue<float>(rp.cfg, rp.backend);
    case DType::kF16: return run_prologue<__half>(rp.cfg, rp.backend);
    default: return run_prologue<__nv_bfloat16>(rp.cfg, rp.backend);
  }
}

/// Runs prologue cases [first, first + count) of this process's seed on `backend`;
/// ROPE_RANDOM_CASE replays one case in the batch that starts at 0.
inline void run_random_prologue_batch(const char* suite, Backend backend, std::uint64_t first, std::uint64_t count) {
  const BatchCases cases = batch_cases(first, count);
  if (cases.skip) GTEST_SKIP() << "replaying ROPE_RANDOM_CASE in the first batch only";
  const std::uint64_t seed = cases.seed;
  first = cases.first;
  count = cases.count;
  constexpr int kReported = 10;
  int failed = 0, dtypes[3] = {0, 0, 0}, norms[3] = {0, 0, 0}, caches[3] = {0, 0, 0}, q8[3] = {0, 0, 0};
  int no_write_back = 0, mrope = 0, partial = 0, computed = 0, k_only = 0, q_only = 0;
  std::int64_t max_tokens = 0;
  const auto start = std::chrono::steady_clock::now();
  for (std::uint64_t i = first; i < first + count; ++i) {
    const RandomPrologue rp = random_prologue(seed, i, backend);
    RandomCase note;  // the crash handler's replay line names the case
    note.seed = seed;
    note.index = i;
    note.backend = backend;
    install_crash_note(note, suite);
    if (cases.replaying) {
      std::printf("[ REPLAY   ] case %llu:%llu %s\n", static_cast<unsigned long long>(seed),
                  static_cast<unsigned long long>(i), rp.describe().c_str());
    }
    const PrologueConfig& c = rp.cfg;
    ++dtypes[static_cast<int>(rp.dtype)];
    ++norms[static_cast<int>(c.norm)];
    ++caches[static_cast<int>(c.cache)];
    ++q8[static_cast<int>(c.q_fp8)];
    no_write_back += c.has_cache() && !c.k_write_back;
    mrope += c.axes > 1;
    partial += c.rotary_dim != 0 && c.rotary_dim < c.head_dim;
    computed += c.computed;
    k_only += c.q_heads == 0;
    q_only += c.kv_heads == 0;
    max_tokens = std::max(max_tokens, c.tokens);
    const ::testing::AssertionResult result = run_random_prologue(rp);
    if (!result && ++failed <= kReported) {
      ADD_FAILURE() << "random prologue case " << seed << ":" << i << " failed on the " << backend_name(backend)
                    << "\n  replay: " << replay_line(note, suite) << "\n  " << rp.describe() << "\n  "
                    << result.message();
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ RANDOM   ] %s prologue: %llu configs (cases %llu.. of seed %llu) in %.1f s, %d failed; "
              "float/half/bf16 %d/%d/%d, norm none/w/1+w %d/%d/%d, cache none/T/fp8 %d/%d/%d, "
              "q_fp8 none/with y/only %d/%d/%d, no write-back %d, M-RoPE %d, partial %d, computed %d, "
              "k only %d, q only %d, max tokens %lld\n",
              backend_name(backend), static_cast<unsigned long long>(count), static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(seed), seconds, failed, dtypes[0], dtypes[1], dtypes[2], norms[0],
              norms[1], norms[2], caches[0], caches[1], caches[2], q8[0], q8[1], q8[2], no_write_back, mrope, partial,
              computed, k_only, q_only, static_cast<long long>(max_tokens));
  std::fflush(stdout);
  if (failed > kReported) ADD_FAILURE() << failed << " random prologue cases failed (first " << kReported << " shown)";
}

}  // namespace rope_test
