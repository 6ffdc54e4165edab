// SPDX-License-Identifier: MIT
#pragma once
// The QK-RMSNorm + RoPE configurations, one list for every backend: the host tests (CI) run the
// per-token body with its norm stage (lanes as threads, group sums at a barrier) through the
// launcher's validation and dispatch, the GPU tests rope_forward_qk_norm.

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "case_tests.hpp"

namespace rope_test {

/// A norm case: Qwen3-like by default (both tensors, GQA 4:2, weights of T).
inline CaseConfig norm_case(int head_dim = 128, int q_heads = 4, int k_heads = 2) {
  CaseConfig c;
  c.qk_norm = true;
  c.head_dim = head_dim;
  c.q_heads = q_heads;
  c.k_heads = k_heads;
  c.tokens = 5;
  c.position_type = rope::PositionType::kInt64;
  return c;
}

/// Head sizes of norm models (64, 128, 256), head sizes whose columns are no power of two
/// (spare lanes: 80, 6, 2), wide heads whose lanes walk columns (512 elements; 256 with a
/// misaligned view, so one element per access), in both styles.
inline std::vector<CaseConfig> norm_head_dim_cases() {
  std::vector<CaseConfig> v;
  for (int d : {64, 128, 256, 80, 6, 2, 512}) {
    for (auto style : {rope::Style::kHalfSplit, rope::Style::kInterleaved}) {
      CaseConfig c = norm_case(d);
      c.style = style;
      v.push_back(c);
    }
  }
  CaseConfig scalar = norm_case(256);
  scalar.misalign = 1;
  v.push_back(scalar);
  return v;
}

/// Partial rotary (GLM-4.5's half, GPT-NeoX's quarter, a sliver): the tail counts in the mean and
/// is normalized but not rotated; in place and not; with spare and walking lanes too.
inline std::vector<CaseConfig> norm_partial_rotary_cases() {
  std::vector<CaseConfig> v;
  const int dims[][2] = {{128, 64}, {128, 32}, {80, 32}, {64, 2}, {10, 4}, {512, 384}};
  for (auto& dr : dims) {
    for (int variant = 0; variant < 4; ++variant) {
      CaseConfig c = norm_case(dr[0]);
      c.rotary_dim = dr[1];
      c.style = variant % 2 == 0 ? rope::Style::kHalfSplit : rope::Style::kInterleaved;
      c.in_place = variant >= 2;
      v.push_back(c);
    }
  }
  return v;
}

/// Head counts (Qwen3-8B's 32:8, MQA, one head each), fused QKV slices in place and not, q only,
/// k only, padded strides.
inline std::vector<CaseConfig> norm_head_cases() {
  std::vector<CaseConfig> v;
  const int pairs[][2] = {{32, 8}, {8, 1}, {1, 1}, {3, 0}, {0, 2}, {40, 8}};
  for (auto& qk : pairs) {
    for (int variant = 0; variant < 3; ++variant) {
      CaseConfig c = norm_case(128, qk[0], qk[1]);
      c.fused_qkv = variant >= 1 && qk[0] > 0 && qk[1] > 0;
      c.in_place = variant == 1;
      if (variant == 2) c.head_pad = 8, c.token_pad = 16, c.y_token_pad = 8;
      v.push_back(c);
    }
  }
  return v;
}

/// Both weightings (Qwen3's w, Gemma 3's 1 + w) with weights of T and of float, eps large and 0,
/// and weights misaligned (they narrow the access as a misaligned tensor does).
inline std::vector<CaseConfig> norm_weighting_cases() {
  std::vector<CaseConfig> v;
  for (auto weighting : {rope::NormWeighting::kMultiply, rope::NormWeighting::kOnePlus}) {
    for (int variant = 0; variant < 4; ++variant) {
      CaseConfig c = norm_case(variant == 3 ? 256 : 128);
      c.weighting = weighting;
      c.float_weights = variant % 2 == 1;
      c.eps = variant == 2 ? 0.5f : variant == 1 ? 0.0f : 1e-6f;
      c.style = variant == 2 ? rope::Style::kInterleaved : rope::Style::kHalfSplit;
      v.push_back(c);
    }
    for (int m : {1, 2, 4}) {
      CaseConfig c = norm_case();
      c.weighting = weighting;
      c.weight_misalign = m;
      c.float_weights = m == 2;
      v.push_back(c);
    }
  }
  return v;
}

/// cos/sin computed and from every table layout, positions int32/none, out-of-range positions
/// (the token is left unwritten, the flag raised).
inline std::vector<CaseConfig> norm_cos_sin_cases() {
  std::vector<CaseConfig> v;
  CaseConfig computed = norm_case();
  computed.computed = true;
  computed.max_position = 1 << 20;
  v.push_back(computed);
  CaseConfig computed_partial = computed;
  computed_partial.rotary_dim = 64;
  computed_partial.style = rope::Style::kInterleaved;
  v.push_back(computed_partial);
  for (auto layout : {TableLayout::kFused, TableLayout::kHfDuplicated}) {
    CaseConfig c = norm_case();
    c.table_layout = layout;
    c.table_in_tensor_type = layout == TableLayout::kFused;
    v.push_back(c);
  }
  CaseConfig none = norm_case(64);
  none.position_type = rope::PositionType::kNone;
  v.push_back(none);
  CaseConfig i32 = norm_case();
  i32.position_type = rope::PositionType::kInt32;
  i32.tokens = 20;
  i32.out_of_range = 3;
  v.push_back(i32);
  return v;
}

inline std::vector<CaseConfig> norm_token_cases(Backend b) {
  std::vector<CaseConfig> v;
  for (std::int64_t t : token_counts(b)) {
    CaseConfig c = norm_case(128, 8, 2);
    c.tokens = t;
    c.fused_qkv = true;
    c.in_place = true;
    v.push_back(c);
  }
  return v;
}

}  // namespace rope_test

/// Defines the QK-RMSNorm tests of typed suite `Suite` on `backend`; `prelude` runs first (a skip).
#define ROPE_DEFINE_NORM_TESTS(Suite, backend, prelude)                                                      \
  TYPED_TEST_SUITE(Suite, ::rope_test::ElementTypes, ::rope_test::ElementNames);                           \
  TYPED_TEST(Suite, HeadDims) { prelude; ::rope_test::expect_all<TypeParam>(::rope_test::norm_head_dim_cases(), backend); } \
  TYPED_TEST(Suite, PartialRotary) {                                                                         \
    prelude;                                                                                                 \
    ::rope_test::expect_all<TypeParam>(::rope_test::norm_partial_rotary_cases(), backend);                   \
  }                                                                                                          \
  TYPED_TEST(Suite, Heads) { prelude; ::rope_test::expect_all<TypeParam>(::rope_test::norm_head_cases(), backend); } \
  TYPED_TEST(Suite, Weightings) {                                                                            \
    prelude;                                                                                                 \
    ::rope_test::expect_all<TypeParam>(::rope_test::norm_weighting_cases(), backend);                        \
  }                                                                                                          \
  TYPED_TEST(Suite, CosSin) { prelude; ::rope_test::expect_all<TypeParam>(::rope_test::norm_cos_sin_cases(), backend); } \
  TYPED_TEST(Suite, TokenCounts) {                                                                           \
    prelude;                                                                                                 \
    ::rope_test::expect_all<TypeParam>(::rope_test::norm_token_cases(backend), backend);                     \
  }
