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
