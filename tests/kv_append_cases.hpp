// SPDX-License-Identifier: MIT
#pragma once
// The RoPE + KV-cache append configurations, one list for every backend: the host tests (CI) run
// the per-token body through the launcher's validation and dispatch, the GPU tests the kernel.
// Each configuration runs with a cache of the tensor's type and with an FP8 E4M3 cache.

#include <cstdint>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <gtest/gtest.h>

#include "case_tests.hpp"
#include "kv_append_harness.hpp"

namespace rope_test {

/// Runs every configuration on `backend` with each cache type of `Caches`.
template <typename T, typename... Caches>
void expect_appends(const std::vector<AppendConfig>& configs, Backend backend) {
  std::uint64_t salt = 0;
  for (const AppendConfig& cfg : configs) {
    auto run = [&](auto cache) {
      AppendCase<T, decltype(cache)> c(cfg, ++salt);
      EXPECT_TRUE(c.run(backend));
    };
    (run(Caches{}), ...);
  }
}

/// Runs every configuration on `backend` with both cache types.
template <typename T>
void expect_all_appends(const std::vector<AppendConfig>& configs, Backend backend) {
  expect_appends<T, T, __nv_fp8_e4m3>(configs, backend);
}

/// vLLM's NHD, FlashInfer's HND, k and v alternating in one buffer, padded strides; both slot types.
inline std::vector<AppendConfig> append_layout_cases() {
  std::vector<AppendConfig> v;
  for (auto layout : {CacheLayout::kNhd, CacheLayout::kHnd, CacheLayout::kHndKvInOne, CacheLayout::kPaddedNhd}) {
    for (auto slot : {rope::SlotType::kInt32, rope::SlotType::kInt64}) {
      AppendConfig c;
      c.layout = layout;
      c.slot_type = slot;
      c.block_size = layout == CacheLayout::kHnd ? 8 : 16;
      v.push_back(c);
    }
  }
  return v;
}

/// Padding slots (-1: no write), slots past the cache (no write, flag), positions outside the
/// table (the token writes nothing at all), and all three at once.
inline std::vector<AppendConfig> append_slot_cases() {
  std::vector<AppendConfig> v;
  for (int variant = 0; variant < 4; ++variant) {
    for (auto slot : {rope::SlotType::kInt32, rope::SlotType::kInt64}) {
      AppendConfig c;
      c.tokens = 40;
      c.slot_type = slot;
      c.negative_slots = variant == 0 || variant == 3 ? 5 : 0;
      c.out_of_range_slots = variant == 1 || variant == 3 ? 3 : 0;
      c.out_of_range_positions = variant == 2 || variant == 3 ? 4 : 0;
      c.in_place = variant % 2 == 1;
      v.push_back(c);
    }
  }
  return v;
}

/// Partial rotary (the tail of k goes to the cache unrotated) in both styles, in place or not,
/// with and without k written back.
inline std::vector<AppendConfig> append_partial_rotary_cases() {
  std::vector<AppendConfig> v;
  const int dims[][2] = {{128, 32}, {80, 32}, {128, 64}, {64, 2}, {10, 4}};
  for (auto& dr : dims) {
    for (int style = 0; style < 2; ++style) {
      for (int variant = 0; variant < 3; ++variant) {
        AppendConfig c;
        c.head_dim = dr[0];
        c.rotary_dim = dr[1];
        c.style = static_cast<rope::Style>(style);
        c.in_place = variant == 1;
        c.k_write_back = variant != 2;
        c.tokens = 6;
        v.push_back(c);
      }
    }
  }
  return v;
}

/// Head counts of real models, a fused QKV buffer (in place and not), k only, no write-back.
inline std::vector<AppendConfig> append_head_cases() {
  std::vector<AppendConfig> v;
  const int pairs[][2] = {{32, 8}, {8, 1}, {4, 4}, {0, 2}, {0, 1}, {1, 1}};
  for (auto& qk : pairs) {
    for (int variant = 0; variant < 4; ++variant) {
      AppendConfig c;
      c.q_heads = qk[0];
      c.kv_heads = qk[1];
      c.tokens = 5;
      c.fused_qkv = variant >= 2;
      c.in_place = variant == 1 || variant == 2;
      c.k_write_back = variant != 3;
      v.push_back(c);
    }
  }
  return v;
}

/// Head sizes and alignments that narrow the vector width (tensors or caches alone), computed
/// cos/sin, and the interleaved style.
inline std::vector<AppendConfig> append_width_cases() {
  std::vector<AppendConfig> v;
  for (int d : {2, 6, 64, 72, 96, 256}) {
    AppendConfig c;
    c.head_dim = d;
    c.tokens = 4;
    v.push_back(c);
  }
  for (int m : {1, 2, 4}) {
    AppendConfig tensors;
    tensors.misalign = m;
    v.push_back(tensors);
    AppendConfig caches;
    caches.cache_misalign = m;
    caches.style = rope::Style::kInterleaved;
    v.push_back(caches);
  }
  AppendConfig computed;
  computed.computed = true;
  computed.kv_heads = 8;
  computed.q_heads = 32;
  v.push_back(computed);
  return v;
}

/// q quantized to FP8 beside an FP8 cache: whole and partial rotary in both styles, q out of
/// place, in place, or to the FP8 buffer only (q.y null), a fused QKV buffer, narrowed vector
/// widths, computed cos/sin, padding slots (q is still written) and positions out of the table.
inline std::vector<AppendConfig> append_q_fp8_cases() {
  std::vector<AppendConfig> v;
  const int dims[][2] = {{128, 0}, {80, 32}, {64, 2}, {10, 4}};
  for (auto& dr : dims) {
    for (int style = 0; style < 2; ++style) {
      for (int variant = 0; variant < 4; ++variant) {
        AppendConfig c;
        c.q_fp8 = true;
        c.head_dim = dr[0];
        c.rotary_dim = dr[1];
        c.style = static_cast<rope::Style>(style);
        c.in_place = variant == 1 || variant == 3;
        c.q_to_y = variant < 2;
        c.fused_qkv = variant == 3;
        c.k_write_back = variant != 2;
        c.tokens = 6;
        v.push_back(c);
      }
    }
  }
  for (int m : {1, 2, 4}) {
    AppendConfig caches;  // every FP8 output narrowed
    caches.q_fp8 = true;
    caches.cache_misalign = m;
    caches.q_fp8_misalign = m;
    caches.q_to_y = m != 2;
    v.push_back(caches);
    AppendConfig q_only;  // q_fp8 alone narrows the width (aligned tensors and caches)
    q_only.q_fp8 = true;
    q_only.q_fp8_misalign = m;
    q_only.q_to_y = m == 2;
    v.push_back(q_only);
  }
  AppendConfig fused;  // a fused QKV buffer, q to FP8 only, several lanes per token
  fused.q_fp8 = true;
  fused.fused_qkv = true;
  fused.q_to_y = false;
  fused.rotary_dim = 64;
  v.push_back(fused);
  AppendConfig edges;
  edges.q_fp8 = true;
  edges.tokens = 40;
  edges.q_heads = 32;
  edges.kv_heads = 8;
  edges.negative_slots = 3;
  edges.out_of_range_slots = 2;
  edges.out_of_range_positions = 3;
  v.push_back(edges);
  AppendConfig computed = edges;
  computed.computed = true;
  computed.out_of_range_positions = 0;
  v.push_back(computed);
  AppendConfig powers = edges;  // power-of-two scales: paired stores skip the corrections
  powers.k_scale = 0x1p-9f;
  powers.v_scale = 0x1p-7f;
  powers.q_scale = 0x1p-8f;
  v.push_back(powers);
  AppendConfig mixed;  // exact and inexact reciprocals in one launch, with a tail
  mixed.q_fp8 = true;
  mixed.k_scale = 1.0f;
  mixed.v_scale = 0.01f;
  mixed.q_scale = 0x1p-8f;
  mixed.head_dim = 80;
  mixed.rotary_dim = 32;
  mixed.tokens = 9;
  v.push_back(mixed);
  return v;
}

inline std::vector<AppendConfig> append_token_cases(Backend b) {
  std::vector<AppendConfig> v;
  for (std::int64_t t : token_counts(b)) {
    AppendConfig c;
    c.tokens = t;
    c.q_heads = 8;
    c.kv_heads = 2;
    c.block_size = t > 1000 ? 64 : 16;
    c.negative_slots = t > 3 ? 2 : 0;
    v.push_back(c);
  }
  return v;
}

}  // namespace rope_test

/// Defines the append tests of typed suite `Suite` on `backend`; `prelude` runs first (a skip).
#define ROPE_DEFINE_APPEND_TESTS(Suite, backend, prelude)                                                  \
  TYPED_TEST_SUITE(Suite, ::rope_test::ElementTypes, ::rope_test::ElementNames);                         \
  TYPED_TEST(Suite, CacheLayouts) {                                                                        \
    prelude;                                                                                               \
    ::rope_test::expect_all_appends<TypeParam>(::rope_test::append_layout_cases(), backend);               \
  }                                                                                                        \
  TYPED_TEST(Suite, Slots) { prelude; ::rope_test::expect_all_appends<TypeParam>(::rope_test::append_slot_cases(), backend); } \
  TYPED_TEST(Suite, PartialRotary) {                                                                       \
    prelude;                                                                                               \
    ::rope_test::expect_all_appends<TypeParam>(::rope_test::append_partial_rotary_cases(), backend);       \
  }                                                                                                        \
  TYPED_TEST(Suite, Heads) { prelude; ::rope_test::expect_all_appends<TypeParam>(::rope_test::append_head_cases(), backend); } \
  TYPED_TEST(Suite, Widths) { prelude; ::rope_test::expect_all_appends<TypeParam>(::rope_test::append_width_cases(), backend); } \
  TYPED_TEST(Suite, QuantizedQ) { prelude; ::rope_test::expect_appends<TypeParam, __nv_fp8_e4m3>(::rope_test::append_q_fp8_cases(), backend); } \
  TYPED_TEST(Suite, TokenCounts) {                                                                         \
    prelude;                                                                                               \
    ::rope_test::expect_all_appends<TypeParam>(::rope_test::append_token_cases(backend), backend);         \
  }
