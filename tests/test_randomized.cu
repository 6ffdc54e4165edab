// SPDX-License-Identifier: MIT
// Randomized differential tests on the host body (what CI runs): thousands of drawn
// configurations (randomized.hpp), each checked against the double-precision reference with
// poisoned outputs and guard elements; test_randomized_gpu.cu runs the GPU kernel on its own
// draws. A failure prints its replay line:
//   ROPE_RANDOM_CASE=<seed>:<index> <this binary> --gtest_filter='<suite>.*'
//
// The batches are separate gtest cases so that ctest runs them in parallel (one process each).

#include <set>
#include <string>

#include <gtest/gtest.h>

#define ROPE_TEST_QK_NORM 1  // Case runs norm configurations here (harness.hpp)
#include "randomized.hpp"
#include "randomized_append.hpp"
#include "randomized_norm.hpp"

namespace {

using rope_test::Backend;
using rope_test::RandomCase;

// Host: 4 x 1000 = 4000 configurations with up to 300 tokens (CI runs these; ~5 s each).
#define ROPE_HOST_BATCH(name, first) \
  TEST(RandomizedHost, name) { rope_test::run_random_batch("RandomizedHost", Backend::kHost, first, 1000); }
ROPE_HOST_BATCH(Cases0000To0999MatchReference, 0)
ROPE_HOST_BATCH(Cases1000To1999MatchReference, 1000)
ROPE_HOST_BATCH(Cases2000To2999MatchReference, 2000)
ROPE_HOST_BATCH(Cases3000To3999MatchReference, 3000)
#undef ROPE_HOST_BATCH

// RoPE + KV-cache append: 1000 drawn configurations on the host (2000 on the GPU:
// test_randomized_gpu.cu).
TEST(RandomizedHostAppend, Cases0000To0999MatchReference) {
  rope_test::run_random_append_batch("RandomizedHostAppend", Backend::kHost, 0, 1000);
}

// QK-RMSNorm + RoPE: 500 drawn configurations on the host (lanes as threads, fewer tokens;
// 2000 on the GPU: test_randomized_gpu.cu).
TEST(RandomizedHostQkNorm, Cases0000To0499MatchReference) {
  rope_test::run_random_batch("RandomizedHostQkNorm", Backend::kHost, 0, 500, rope_test::random_norm_case);
}

// The replay promise: a case is a function of (seed, index) alone, configuration and data.
TEST(RandomizedGenerator, SameSeedAndIndexGiveSameCase) {
  for (std::uint64_t i = 0; i < 200; ++i) {
    const RandomCase a = rope_test::random_case(12345, i, Backend::kHost);
    const RandomCase b = rope_test::random_case(12345, i, Backend::kHost);
    EXPECT_EQ(a.describe(), b.describe());
    EXPECT_EQ(a.cfg.longrope_long, b.cfg.longrope_long);
  }
  EXPECT_NE(rope_test::random_case(1, 0, Backend::kHost).describe(), rope_test::random_case(2, 0, Backend::kHost).describe());
  for (std::uint64_t i = 0; i < 50; ++i) {
    EXPECT_EQ(rope_test::random_norm_case(7, i, Backend::kHost).describe(),
              rope_test::random_norm_case(7, i, Backend::kHost).describe());
  }
  EXPECT_NE(rope_test::random_case(1, 0, Backend::kHost).describe(), rope_test::random_case(1, 1, Backend::kHost).describe());
}

TEST(RandomizedGenerator, ParsesReplayVariable) {
  const auto r = rope_test::parse_replay("18446744073709551615:42");
  EXPECT_TRUE(r.set);
  EXPECT_EQ(r.seed, 18446744073709551615ull);
  EXPECT_EQ(r.index, 42u);
  EXPECT_FALSE(rope_test::parse_replay("").set);
  EXPECT_FALSE(rope_test::parse_replay("12").set);
  EXPECT_FALSE(rope_test::parse_replay("12:").set);
  EXPECT_FALSE(rope_test::parse_replay("12:3x").set);
  EXPECT_FALSE(rope_test::parse_replay(nullptr).set);
}

// The draws of one host run (4000 cases) reach every option, whatever the seed: so a change to
// the generator cannot silently drop a feature from the randomized coverage.
TEST(RandomizedGenerator, HostCasesCoverEveryOption) {
  for (std::uint64_t seed : {std::uint64_t{1}, rope_test::base_seed()}) {
    std::set<std::string> seen;
    for (std::uint64_t i = 0; i < 4000; ++i) {
      const RandomCase rc = rope_test::random_case(seed, i, Backend::kHost);
      const rope_test::CaseConfig& c = rc.cfg;
      const int rot = c.rotary_dim == 0 ? c.head_dim : c.rotary_dim;
      seen.insert("dtype" + std::to_string(static_cast<int>(rc.dtype)));
      seen.insert("style" + std::to_string(static_cast<int>(c.style)));
      seen.insert("positions" + std::to_string(static_cast<int>(c.position_type)));
      if (c.head_dim % 8 != 0) seen.insert("head_dim%8");
      if (c.head_dim == 2) seen.insert("head_dim=2");
      if (c.head_dim == 256) seen.insert("head_dim=256");
      if (rot < c.head_dim) seen.insert("partial");
      if (c.q_heads == 40) seen.insert("q_heads=40");
      if (c.k_heads == 8) seen.insert("k_heads=8");
      if (c.q_heads == 0) seen.insert("k_only");
      if (c.k_heads > 0 && c.fused_qkv) seen.insert("fused_qkv");
      if (c.in_place) seen.insert("in_place");
      if (c.head_pad > 0 && c.token_pad > 0) seen.insert("pads");
      if (c.y_token_pad > 0) seen.insert("y_pad");
      if (c.misalign == 3) seen.insert("misalign3");
      if (c.k_misalign > 0) seen.insert("k_misalign");
      if (c.tokens == 1) seen.insert("tokens=1");
      if (c.tokens >= 250) seen.insert("tokens>=250");
      if (c.lanes > 0) seen.insert("lanes");
      if (c.backward) seen.insert("backward");
      if (c.out_of_range > 0) seen.insert(c.computed ? "negative_positions" : "out_of_range");
      if (c.computed) {
        if (c.max_position > (std::int64_t{1} << 19) && c.position_type != rope::PositionType::kNone) seen.insert("pos>2^19");
        if (c.attention_scaling != 1.0f) seen.insert("attention_scaling");
        if (c.scaled) seen.insert("scaling" + std::to_string(static_cast<int>(c.scaling.type)));
        if (c.table_misalign > 0) seen.insert("inv_freq_misalign");
      } else {
        seen.insert("layout" + std::to_string(static_cast<int>(c.table_layout)));
        if (c.attention_scaling != 1.0f) seen.insert("table_attention_scaling");
        if (c.table_in_tensor_type) seen.insert("table_in_T");
        if (c.table_misalign > 0) seen.insert("table_misalign");
        if (c.position_type != rope::PositionType::kNone && c.table_rows != 0) {
          seen.insert(c.table_rows < c.tokens ? "rows<tokens" : "rows>=tokens");
        }
      }
    }
    const char* want[] = {"dtype0", "dtype1", "dtype2", "style0", "style1", "positions0", "positions1", "positions2",
                          "head_dim%8", "head_dim=2", "head_dim=256", "partial", "q_heads=40", "k_heads=8", "k_only",
                          "fused_qkv", "in_place", "pads", "y_pad", "misalign3", "k_misalign", "inv_freq_misalign", "tokens=1", "tokens>=250", "lanes",
                          "backward", "negative_positions", "out_of_range", "pos>2^19", "attention_scaling", "table_attention_scaling",
                          "scaling0", "scaling1", "scaling2", "scaling3", "scaling4", "scaling5", "scaling6",
                          "layout0", "layout1", "layout2", "table_in_T", "table_misalign", "rows<tokens",
                          "rows>=tokens"};
    for (const char* w : want) EXPECT_TRUE(seen.count(w)) << "seed " << seed << " never draws " << w;
  }
}

}  // namespace
