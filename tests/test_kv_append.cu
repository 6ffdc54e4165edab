// SPDX-License-Identifier: MIT
// RoPE + KV-cache append: the per-token body with its append stage, run on the host through the
// launcher's own validation, argument conversion and dispatch (what CI executes), plus the FP8
// reference itself.

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "kv_append_cases.hpp"

template <typename T>
class HostAppend : public ::testing::Test {};
ROPE_DEFINE_APPEND_TESTS(HostAppend, ::rope_test::Backend::kHost, (void)0)

namespace {

using rope_test::AppendCase;
using rope_test::AppendConfig;
using rope_test::Backend;

// The reference's FP8 E4M3 against the definition's landmarks, and CUDA's own conversion against
// the reference over a sweep of values (ties included): the library relies on that conversion.
TEST(AppendFp8Reference, KnownValuesAndCudaAgree) {
  EXPECT_EQ(rope_test::e4m3_value(0x7E), 448.0);
  EXPECT_EQ(rope_test::e4m3_value(0x01), 1.0 / 512);  // smallest subnormal, 2^-9
  EXPECT_EQ(rope_test::e4m3_value(0x38), 1.0);
  EXPECT_TRUE(std::isnan(rope_test::e4m3_value(0x7F)));
  EXPECT_EQ(rope_test::e4m3_quantize(1000.0), 0x7Eu);   // saturates
  EXPECT_EQ(rope_test::e4m3_quantize(-1000.0), 0xFEu);
  EXPECT_EQ(rope_test::e4m3_quantize(1.0625), 0x38u);   // tie between 1 and 1.125: even
  EXPECT_EQ(rope_test::e4m3_quantize(1.1875), 0x3Au);   // tie between 1.125 and 1.25: even
  for (int i = -200000; i <= 200000; ++i) {
    const float v = static_cast<float>(i) * 0.00251f;
    const __nv_fp8_e4m3 got = rope::detail::to_cache_element<__nv_fp8_e4m3>(v, 1.0f);
    ASSERT_EQ(rope_test::bits_of(got), rope_test::e4m3_quantize(v)) << v;
  }
  for (unsigned code = 0; code < 0x7F; ++code) {  // every value and every midpoint, both signs
    for (double sign : {1.0, -1.0}) {
      const double value = sign * rope_test::e4m3_value(code);
      const __nv_fp8_e4m3 exact = rope::detail::to_cache_element<__nv_fp8_e4m3>(static_cast<float>(value), 1.0f);
      ASSERT_EQ(rope_test::bits_of(exact), rope_test::e4m3_quantize(value)) << value;
      const double mid = sign * (rope_test::e4m3_value(code) + rope_test::e4m3_value(code + 1)) / 2;
      const __nv_fp8_e4m3 tie = rope::detail::to_cache_element<__nv_fp8_e4m3>(static_cast<float>(mid), 1.0f);
      if (code + 1 < 0x7F) ASSERT_EQ(rope_test::bits_of(tie), rope_test::e4m3_quantize(mid)) << mid;
    }
  }
}

// Other splits of a token across lanes than the launcher picks.
TEST(HostAppendLanes, AnyLaneCountCoversEveryElement) {
  for (int lanes : {1, 3, 7, 64, 300}) {
    AppendConfig c;
    c.head_dim = 80;
    c.rotary_dim = 32;
    c.q_heads = 5;
    c.kv_heads = 3;
    c.tokens = 4;
    c.lanes = lanes;
    c.negative_slots = 1;
    AppendCase<__nv_bfloat16, __nv_bfloat16> same(c, static_cast<std::uint64_t>(lanes));
    EXPECT_TRUE(same.run(Backend::kHost));
    AppendCase<float, __nv_fp8_e4m3> fp8(c, static_cast<std::uint64_t>(lanes) + 1000);
    EXPECT_TRUE(fp8.run(Backend::kHost));
  }
}

// The launch shape and the body split a token's lanes the same way: where the block has room, the
// shape's extra lanes are exactly the body's copy lanes, so the rotating lanes keep their own count
// (Llama-3-8B append: 80 rotate and 32 copy v, two tokens per block; head_dim 80 with 32 rotary
// dims out of place: 32 rotate and 96 copy the tails); the block is never exceeded.
TEST(HostPassThroughLanes, LaunchShapeAndBodyAgreeOnCopyLanes) {
  using Policy = rope::detail::DefaultPolicy;
  using rope::detail::HeadLanes;
  for (int q_heads : {0, 1, 8, 32}) {
    for (int kv_heads : {1, 2, 8, 64}) {
      for (int vec : {1, 4, 8}) {
        rope::RopeParams<__nv_bfloat16> p;
        p.num_tokens = 4096;
        p.head_dim = 128;
        p.q.num_heads = q_heads;
        p.k.num_heads = kv_heads;
        const int items = rope::detail::v_items_per_token(p, vec);
        const rope::detail::LaunchShape plain = rope::detail::choose_launch_shape<Policy>(p, vec, Policy::kHeadBatch);
        const rope::detail::LaunchShape append =
            rope::detail::choose_launch_shape<Policy>(p, vec, Policy::kHeadBatch, HeadLanes::kOnePerColumn, items);
        const int copiers = rope::detail::copy_lanes(items, Policy::kHeadBatch, append.lanes_per_token);
        const int wanted = (items + Policy::kHeadBatch - 1) / Policy::kHeadBatch;
        if (wanted <= 3 * plain.lanes_per_token && plain.lanes_per_token + wanted <= Policy::kMaxBlockThreads) {
          EXPECT_EQ(append.lanes_per_token - copiers, plain.lanes_per_token) << q_heads << " " << kv_heads << " " << vec;
          EXPECT_EQ(copiers, wanted);
        }
        EXPECT_GT(copiers, 0);
        EXPECT_LE(append.lanes_per_token * append.tokens_per_block, Policy::kMaxBlockThreads);
      }
    }
  }
  rope::RopeParams<__nv_bfloat16> llama;
  llama.num_tokens = 16384;
  llama.head_dim = 128;
  llama.q.num_heads = 32;
  llama.k.num_heads = 8;
  const int v_items = rope::detail::v_items_per_token(llama, 8);
  const rope::detail::LaunchShape s =
      rope::detail::choose_launch_shape<Policy>(llama, 8, Policy::kHeadBatch, HeadLanes::kOnePerColumn, v_items);
  EXPECT_EQ(s.lanes_per_token, 112);
  EXPECT_EQ(s.tokens_per_block, 2);
  EXPECT_EQ(rope::detail::copy_lanes(v_items, Policy::kHeadBatch, 112), 32);

  // Partial rotary, out of place: q's and k's tails (6 items of 8 each, 64 heads) are 96 lanes' work.
  std::vector<__nv_bfloat16> x(1), y(1);
  rope::RopeParams<__nv_bfloat16> partial;
  partial.num_tokens = 16384;
  partial.head_dim = 80;
  partial.rotary_dim = 32;
  partial.q = rope::packed_heads(x.data(), y.data(), 32, 80);
  partial.k = rope::packed_heads(x.data(), y.data(), 32, 80);
  const int tail_items = rope::detail::pass_through_items(partial, rope::detail::NoAppend{}, 8);
  EXPECT_EQ(tail_items, 384);
  const rope::detail::LaunchShape t =
      rope::detail::choose_launch_shape<Policy>(partial, 8, Policy::kHeadBatch, HeadLanes::kOnePerColumn, tail_items);
  EXPECT_EQ(t.lanes_per_token, 128);
  EXPECT_EQ(rope::detail::copy_lanes(tail_items, Policy::kHeadBatch, t.lanes_per_token), 96);
  // In place, nothing passes through.
  partial.q = rope::packed_heads(x.data(), x.data(), 32, 80);
  partial.k = rope::packed_heads(x.data(), x.data(), 32, 80);
  EXPECT_EQ(rope::detail::pass_through_items(partial, rope::detail::NoAppend{}, 8), 0);
}

// The caches and v follow the one alignment rule: a cache aligned to fewer bytes narrows the
// access of the whole launch, as a misaligned q or k does.
TEST(HostAppendDispatch, CachesAndVNarrowTheAccess) {
  struct Want { int cache_misalign, misalign; int vec_same, vec_fp8; };
  const Want wants[] = {
      {0, 0, 8, 8},  // bf16, 128 dims, 4 + 2 heads: 16-byte accesses (fp8 cache: 8 bytes)
      {1, 0, 1, 1},  // caches one element off: scalar
      {4, 0, 4, 4},  // four elements off: bf16 8 bytes; fp8 4 bytes
      {2, 0, 1, 1},  // two elements off: no width of bf16 fits but the scalar one
      {0, 4, 4, 4},  // the tensors (v included) four elements off
  };
  for (const Want& w : wants) {
    AppendConfig c;
    c.cache_misalign = w.cache_misalign;
    c.misalign = w.misalign;
    c.tokens = 3;
    AppendCase<__nv_bfloat16, __nv_bfloat16> same(c, 1);
    ASSERT_TRUE(same.run(Backend::kHost));
    EXPECT_EQ(same.vec_used(), w.vec_same) << c.describe();
    AppendCase<__nv_bfloat16, __nv_fp8_e4m3> fp8(c, 2);
    ASSERT_TRUE(fp8.run(Backend::kHost));
    EXPECT_EQ(fp8.vec_used(), w.vec_fp8) << c.describe();
  }
}

// FP8 codes match the reference byte for byte except where the reference is within the fp32
// computation's error of a rounding boundary: those must stay rare, or the check means little.
TEST(HostAppendFp8, AmbiguousCodesAreRare) {
  AppendConfig c;
  c.tokens = 64;
  c.q_heads = 4;
  c.kv_heads = 4;
  AppendCase<float, __nv_fp8_e4m3> f(c, 5);
  ASSERT_TRUE(f.run(Backend::kHost));
  EXPECT_LT(f.fp8_ambiguous(), 64 * 4 * 128 / 100) << "more than 1% of the k cache was ambiguous";
  AppendCase<__nv_bfloat16, __nv_fp8_e4m3> b(c, 6);
  ASSERT_TRUE(b.run(Backend::kHost));
  EXPECT_LT(b.fp8_ambiguous(), 64 * 4 * 128 / 100);
}

}  // namespace
