// SPDX-License-Identifier: MIT
#pragma once
// One list of feature tests, instantiated for the host body (CI) and for the GPU kernel.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include "cases.hpp"

namespace rope_test {
using ElementTypes = ::testing::Types<float, __half, __nv_bfloat16>;

struct ElementNames {
  template <typename T>
  static std::string GetName(int) {
    if (std::is_same<T, float>::value) return "f32";
    if (std::is_same<T, __half>::value) return "f16";
    return "bf16";
  }
};
}  // namespace rope_test

/// Defines the feature tests of typed suite `Suite` on `backend`; `prelude` runs first (a skip).
#define ROPE_DEFINE_CASE_TESTS(Suite, backend, prelude)                                                    \
  TYPED_TEST_SUITE(Suite, ::rope_test::ElementTypes, ::rope_test::ElementNames);                         \
  TYPED_TEST(Suite, HeadDims) { prelude; ::rope_test::expect_all<TypeParam>(::rope_test::head_dim_cases(), backend); } \
  TYPED_TEST(Suite, SmallHeadDimSweep) {                                                                   \
    prelude;                                                                                               \
    ::rope_test::expect_all<TypeParam>(::rope_test::small_head_dim_sweep(), backend);                      \
  }                                                                                                        \
  TYPED_TEST(Suite, HeadCounts) { prelude; ::rope_test::expect_all<TypeParam>(::rope_test::head_count_cases(), backend); } \
  TYPED_TEST(Suite, TokenCounts) {                                                                         \
    prelude;                                                                                               \
    ::rope_test::expect_all<TypeParam>(::rope_test::token_count_cases(backend), backend);                  \
  }                                                                                                        \
  TYPED_TEST(Suite, PaddedStrides) {                                                                       \
    prelude;                                                                                               \
    ::rope_test::expect_all<TypeParam>(::rope_test::padded_stride_cases(), backend);                       \
  }                                                                                                        \
  TYPED_TEST(Suite, Misaligned) { prelude; ::rope_test::expect_all<TypeParam>(::rope_test::misaligned_cases(), backend); } \
  TYPED_TEST(Suite, InPlace) { prelude; ::rope_test::expect_all<TypeParam>(::rope_test::in_place_cases(), backend); } \
  TYPED_TEST(Suite, PositionsInt32) {                                                                      \
    prelude;                                                                                               \
    ::rope_test::expect_all<TypeParam>(::rope_test::position_cases(rope::PositionType::kInt32), backend);  \
  }                                                                                                        \
  TYPED_TEST(Suite, PositionsInt64) {                                                                      \
    prelude;                                                                                               \
    ::rope_test::expect_all<TypeParam>(::rope_test::position_cases(rope::PositionType::kInt64), backend);  \
  }                                                                                                        \
  TYPED_TEST(Suite, Gqa) { prelude; ::rope_test::expect_all<TypeParam>(::rope_test::gqa_cases(), backend); } \
  TYPED_TEST(Suite, QOrKOnly) { prelude; ::rope_test::expect_all<TypeParam>(::rope_test::q_or_k_only_cases(), backend); } \
  TYPED_TEST(Suite, Interleaved) { prelude; ::rope_test::expect_all<TypeParam>(::rope_test::interleaved_cases(), backend); } \
  TYPED_TEST(Suite, PartialRotary) {                                                                       \
    prelude;                                                                                               \
    ::rope_test::expect_all<TypeParam>(::rope_test::partial_rotary_cases(), backend);                      \
  }                                                                                                        \
  TYPED_TEST(Suite, TableLayouts) {                                                                        \
    prelude;                                                                                               \
    ::rope_test::expect_all<TypeParam>(::rope_test::table_layout_cases(), backend);                        \
  }                                                                                                        \
  TYPED_TEST(Suite, OnTheFly) { prelude; ::rope_test::expect_all<TypeParam>(::rope_test::computed_cases(), backend); } \
  TYPED_TEST(Suite, Backward) { prelude; ::rope_test::expect_all<TypeParam>(::rope_test::backward_cases(), backend); } \
  TYPED_TEST(Suite, OutOfRangePositions) {                                                                 \
    prelude;                                                                                               \
    ::rope_test::expect_all<TypeParam>(::rope_test::out_of_range_cases(), backend);                        \
  }
