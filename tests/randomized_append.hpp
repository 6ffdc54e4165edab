// SPDX-License-Identifier: MIT
#pragma once
// Randomized differential testing of RoPE + KV-cache append: (seed, index) -> one AppendConfig,
// element type and cache type drawn over every append option, run through AppendCase (reference,
// poisoned outputs, sentinel-filled caches, guards). Replayed like the RoPE cases:
//   ROPE_RANDOM_CASE=<seed>:<index> <test binary> --gtest_filter='<suite>.*'

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include <cuda_fp8.h>
#include <gtest/gtest.h>

#include "kv_append_harness.hpp"
#include "randomized.hpp"

namespace rope_test {

struct RandomAppend {
  std::uint64_t seed = 0, index = 0;
  Backend backend = Backend::kHost;
  DType dtype = DType::kF32;
  bool fp8 = false;
  AppendConfig cfg;

  std::string describe() const {
    return std::string("dtype=") + dtype_name(dtype) + (fp8 ? " cache=fp8 " : " cache=T ") + cfg.describe();
  }
};

/// The append configuration of case (seed, index) for `backend`.
inline RandomAppend random_append(std::uint64_t seed, std::uint64_t index, Backend backend) {
  RandomAppend r;
  r.seed = seed;
  r.index = index;
  r.backend = backend;
  Draw d(mix(seed ^ 0xA99E4D5u, index));
  const DrawLimits limits = draw_limits(backend);
  AppendConfig& c = r.cfg;
  c.data_seed = mix(seed ^ 0x5EED0A99E4Dull, index) | 1;
  r.dtype = static_cast<DType>(d.range(0, 2));
  r.fp8 = d.chance(0.5);
  c.style = d.chance(0.5) ? rope::Style::kInterleaved : rope::Style::kHalfSplit;
  const int model_dims[] = {64, 64, 80, 96, 128, 128, 128, 256};
  c.head_dim = d.chance(0.5) ? d.pick(model_dims) : static_cast<int>(2 * d.range(1, 128));
  const double rot = d.unit();
  if (rot < 0.6) {
    c.rotary_dim = 0;
  } else if (rot < 0.8) {
    c.rotary_dim = std::max(2, (c.head_dim >> d.range(1, 3)) & ~1);
  } else {
    c.rotary_dim = static_cast<int>(2 * d.range(1, c.head_dim / 2));
  }
  c.kv_heads = static_cast<int>(d.log_range(1, 8));
  c.q_heads = d.chance(0.15) ? 0 : static_cast<int>(d.log_range(1, 40));
  c.fused_qkv = d.chance(0.25);
  c.in_place = d.chance(0.3);
  c.k_write_back = d.chance(0.75);
  c.misalign = d.chance(0.7) ? 0 : static_cast<int>(d.range(1, 3));
  c.cache_misalign = d.chance(0.7) ? 0 : static_cast<int>(d.range(1, 4));
  c.layout = static_cast<CacheLayout>(d.range(0, 3));
  const int block_sizes[] = {1, 8, 16, 16, 32, 64};
  c.block_size = d.pick(block_sizes);
  c.spare_blocks = d.range(0, 3);
  c.slot_type = d.chance(0.5) ? rope::SlotType::kInt32 : rope::SlotType::kInt64;
  c.tokens = d.log_range(1, limits.max_tokens);
  const std::int64_t per_token = std::int64_t{c.q_heads + 3 * c.kv_heads} * c.head_dim;
  if (c.tokens * per_token > limits.max_elements) c.tokens = std::max<std::int64_t>(1, limits.max_elements / per_token);
  if (d.chance(0.25)) c.negative_slots = static_cast<int>(d.range(1, 3));
  if (d.chance(0.1)) c.out_of_range_slots = static_cast<int>(d.range(1, 2));
  c.computed = d.chance(0.3);
  if (!c.computed && d.chance(0.1)) c.out_of_range_positions = static_cast<int>(d.range(1, 2));
  if (backend == Backend::kHost && d.chance(0.1)) c.lanes = static_cast<int>(d.log_range(1, 300));
  // FP8 scales: the harness's inexact ones, or powers of two (paired stores skip the
  // corrections), per tensor.
  const float power_scales[] = {0x1p-9f, 0x1p-7f, 1.0f};
  if (r.fp8 && d.chance(0.3)) c.k_scale = d.pick(power_scales);
  if (r.fp8 && d.chance(0.3)) c.v_scale = d.pick(power_scales);
  return r;
}

template <typename T>
::testing::AssertionResult run_random_append_as(const RandomAppend& ra) {
  if (ra.fp8) return AppendCase<T, __nv_fp8_e4m3>(ra.cfg).run(ra.backend);
  return AppendCase<T, T>(ra.cfg).run(ra.backend);
}

inline ::testing::AssertionResult run_random_append(const RandomAppend& ra) {
  switch (ra.dtype) {
    case DType::kF32: return run_random_append_as<float>(ra);
    case DType::kF16: return run_random_append_as<__half>(ra);
    default: return run_random_append_as<__nv_bfloat16>(ra);
  }
}

/// Runs append cases [first, first + count) of this process's seed on `backend`; ROPE_RANDOM_CASE
/// replays one case in the batch that starts at 0.
inline void run_random_append_batch(const char* suite, Backend backend, std::uint64_t first, std::uint64_t count) {
  const BatchCases cases = batch_cases(first, count);
  if (cases.skip) GTEST_SKIP() << "replaying ROPE_RANDOM_CASE in the first batch only";
  const std::uint64_t seed = cases.seed;
  first = cases.first;
  count = cases.count;
  constexpr int kReported = 10;
  int failed = 0, fp8 = 0, k_only = 0, partial = 0, no_write_back = 0, padded_slots = 0;
  int layouts[4] = {0, 0, 0, 0};
  const auto start = std::chrono::steady_clock::now();
  for (std::uint64_t i = first; i < first + count; ++i) {
    const RandomAppend ra = random_append(seed, i, backend);
    RandomCase note;  // the crash handler's replay line names the case
    note.seed = seed;
    note.index = i;
    note.backend = backend;
    install_crash_note(note, suite);
    if (cases.replaying) std::printf("[ REPLAY   ] case %llu:%llu %s\n", static_cast<unsigned long long>(seed),
                                static_cast<unsigned long long>(i), ra.describe().c_str());
    fp8 += ra.fp8;
    k_only += ra.cfg.q_heads == 0;
    partial += ra.cfg.rotary_dim != 0 && ra.cfg.rotary_dim < ra.cfg.head_dim;
    no_write_back += !ra.cfg.k_write_back;
    padded_slots += ra.cfg.negative_slots > 0 || ra.cfg.out_of_range_slots > 0;
    ++layouts[static_cast<int>(ra.cfg.layout)];
    const ::testing::AssertionResult result = run_random_append(ra);
    if (!result && ++failed <= kReported) {
      ADD_FAILURE() << "random append case " << seed << ":" << i << " failed on the " << backend_name(backend)
                    << "\n  replay: " << replay_line(note, suite) << "\n  " << ra.describe() << "\n  "
                    << result.message();
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ RANDOM   ] %s append: %llu configs (cases %llu.. of seed %llu) in %.1f s, %d failed; fp8 %d, k only %d, "
              "partial rotary %d, no write-back %d, padding/overflow slots %d, layouts nhd/hnd/kv-in-one/padded "
              "%d/%d/%d/%d\n",
              backend_name(backend), static_cast<unsigned long long>(count), static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(seed), seconds, failed, fp8, k_only, partial, no_write_back,
              padded_slots, layouts[0], layouts[1], layouts[2], layouts[3]);
  std::fflush(stdout);
  if (failed > kReported) ADD_FAILURE() << failed << " random append cases failed (first " << kReported << " shown)";
}

}  // namespace rope_test
