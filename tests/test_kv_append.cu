// SPDX-License-Identifier: MIT
// RoPE + KV-cache append: the per-token body with its append stage, run on the host through the
// launcher's own validation, argument conversion and dispatch (what CI executes), plus the FP8
// reference itself.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
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

/// The float with bit pattern u.
float float_from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// Every FP8 E4M3 rounding boundary of finite values: the midpoints of neighbouring codes, both
/// signs.
std::vector<float> fp8_rounding_boundaries() {
  std::vector<float> boundaries;
  for (unsigned code = 0; code < 0x7E; ++code) {
    const double mid = (rope_test::e4m3_value(code) + rope_test::e4m3_value(code + 1)) / 2;
    boundaries.push_back(static_cast<float>(mid));
    boundaries.push_back(static_cast<float>(-mid));
  }
  return boundaries;
}

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
    const __nv_fp8_e4m3 got = rope::detail::to_fp8(v, rope::detail::division_scale(1.0f));
    ASSERT_EQ(rope_test::bits_of(got), rope_test::e4m3_quantize(v)) << v;
  }
  for (unsigned code = 0; code < 0x7F; ++code) {  // every value and every midpoint, both signs
    for (double sign : {1.0, -1.0}) {
      const double value = sign * rope_test::e4m3_value(code);
      const __nv_fp8_e4m3 exact = rope::detail::to_fp8(static_cast<float>(value), rope::detail::division_scale(1.0f));
      ASSERT_EQ(rope_test::bits_of(exact), rope_test::e4m3_quantize(value)) << value;
      const double mid = sign * (rope_test::e4m3_value(code) + rope_test::e4m3_value(code + 1)) / 2;
      const __nv_fp8_e4m3 tie = rope::detail::to_fp8(static_cast<float>(mid), rope::detail::division_scale(1.0f));
      if (code + 1 < 0x7F) ASSERT_EQ(rope_test::bits_of(tie), rope_test::e4m3_quantize(mid)) << mid;
    }
  }
}

// The kernel divides by an FP8 scale through its reciprocal and two corrections
// (detail/device/quantize.cuh). Against the host's IEEE division, over values of every exponent and
// scales across the accepted range (the ends, all-ones mantissas, the engines' usual ones):
// the same float wherever the quotient can reach FP8's range, and the same FP8 byte always.
TEST(AppendFp8Quantize, DivisionByReciprocalIsIeeeDivision) {
  using rope::detail::divide_by_scale;
  using rope::detail::division_scale;
  auto bits = [](float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
  };
  auto fp8 = [](float quotient) { return __nv_cvt_float_to_fp8(quotient, __NV_SATFINITE, __NV_E4M3); };
  std::vector<float> scales = {0x1p-64f, 0x1p64f, 1.0f, 3.0f, 1.0f / 3.0f, 0.0025f, 0.01f, 448.0f, 1.0f / 448.0f,
                               0x1.fffffep0f, 0x1.fffffep-1f, 0x1.000002p0f, 0x1.fffffep63f, 0x1.000002p-64f};
  std::mt19937 rng(20261129);
  std::uniform_real_distribution<float> exponent(-64.0f, 64.0f);
  for (int i = 0; i < 200; ++i) scales.push_back(std::exp2(exponent(rng)));
  std::uniform_int_distribution<std::uint32_t> any_bits;
  std::int64_t exact_compared = 0;
  for (float scale : scales) {
    ASSERT_TRUE(rope::detail::quant_scale_in_range(scale)) << scale;
    const rope::detail::DivisionScale ds = division_scale(scale);
    for (int i = 0; i < 20000; ++i) {
      // Random bit patterns (every exponent, subnormals, infinities, NaNs), and values placed so
      // that the quotient is near FP8's range.
      float x = float_from_bits(any_bits(rng));
      if (i % 2 == 1) x = std::ldexp(float_from_bits((any_bits(rng) & 0x807fffffu) | 0x3f800000u), i % 40 - 14) * scale;
      const float want = x / scale, got = divide_by_scale(x, ds);
      ASSERT_EQ(fp8(got), fp8(want)) << x << " / " << scale;
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan(got)) << x << " / " << scale;
      } else if (std::fabs(want) >= 0x1p-11f && std::fabs(want) <= 0x1p64f) {
        ASSERT_EQ(bits(got), bits(want)) << x << " / " << scale << ": " << got << " vs " << want;
        ++exact_compared;
      }
    }
  }
  EXPECT_GT(exact_compared, 1000000);  // most of the second kind of value
  // Signed zeros and infinities keep the quotient's FP8 byte.
  for (float x : {0.0f, -0.0f, INFINITY, -INFINITY}) {
    EXPECT_EQ(fp8(divide_by_scale(x, division_scale(0.5f))), fp8(x / 0.5f)) << x;
  }
}

// Values whose quotient lies within six ulp of every FP8 rounding boundary (midpoints of
// neighbouring codes, both signs), for scales across the range: the stores' byte is the IEEE
// quotient's. The product with the reciprocal alone gets 2% of these bytes wrong (measured).
TEST(AppendFp8Quantize, BytesAtRoundingBoundariesAreTheQuotients) {
  const std::vector<float> boundaries = fp8_rounding_boundaries();
  std::vector<float> scales = {1.0f / 224.0f, 0.0025f, 3.0f, 0x1p-64f, 0x1p64f, 0x1.fffffep0f};
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-64.0f, 64.0f);
  for (int i = 0; i < 30; ++i) scales.push_back(std::exp2(exponent(rng)));
  std::int64_t product_differs = 0, checked = 0;
  for (float scale : scales) {
    const rope::detail::DivisionScale ds = rope::detail::division_scale(scale);
    for (float boundary : boundaries) {
      float quotient = boundary;
      for (int step = 0; step < 6; ++step) quotient = std::nextafter(quotient, 0.0f);
      for (int step = 0; step < 13; ++step, quotient = std::nextafter(quotient, 2.0f * boundary)) {
        const float x = quotient * scale;
        for (float v : {x, std::nextafter(x, INFINITY), std::nextafter(x, -INFINITY)}) {
          const unsigned want = __nv_cvt_float_to_fp8(v / scale, __NV_SATFINITE, __NV_E4M3);
          ASSERT_EQ(rope::detail::to_fp8(v, ds).__x, want) << v << " / " << scale;
          product_differs += __nv_cvt_float_to_fp8(v * ds.reciprocal, __NV_SATFINITE, __NV_E4M3) != want;
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(product_differs, checked / 100);  // the values do probe the boundaries
}

// The stores (detail/device/cache_append.cuh's fragment_to_cache) convert the products with the
// reciprocal as they are when the scale is a power of two (its reciprocal is exact, so they are
// the quotients) and correct them otherwise. Either way every byte must be the IEEE quotient's:
// around every rounding boundary and for any bit pattern (subnormals, infinities, NaNs), at
// every power of two in the accepted range and at inexact scales.
TEST(AppendFp8Quantize, StoresHoldTheQuotientsBytesAtEveryScale) {
  const std::vector<float> boundaries = fp8_rounding_boundaries();
  auto quotient_byte = [](float v, float scale) { return __nv_cvt_float_to_fp8(v / scale, __NV_SATFINITE, __NV_E4M3); };
  std::mt19937 rng(11);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  std::vector<float> scales = {1.0f / 224.0f, 0.0025f, 3.0f, 0x1.fffffep0f, 0x1.000002p0f, 0x1.fffffep63f};
  for (float scale : scales) EXPECT_FALSE(rope::detail::division_scale(scale).reciprocal_is_exact) << scale;
  const std::size_t first_power = scales.size();
  for (int e = -64; e <= 64; ++e) scales.push_back(std::ldexp(1.0f, e));
  std::int64_t wrong = 0, checked = 0;
  for (std::size_t s = 0; s < scales.size(); ++s) {
    const float scale = scales[s];
    const rope::detail::DivisionScale ds = rope::detail::division_scale(scale);
    ASSERT_EQ(ds.reciprocal_is_exact, s >= first_power) << scale;
    auto check = [&](float first, float second) {
      rope::detail::Fragment<float, 2, 2> f;
      f.vec[0].elem[0] = first;
      f.vec[0].elem[1] = second;
      alignas(2) __nv_fp8_e4m3 out[2];
      rope::detail::fragment_to_cache<__nv_fp8_e4m3, 2>(f, out, ds);
      ++checked;
      if (out[0].__x != quotient_byte(first, scale) || out[1].__x != quotient_byte(second, scale)) {
        if (wrong++ < 5) ADD_FAILURE() << "pair (" << first << ", " << second << ") / " << scale;
      }
    };
    for (float boundary : boundaries) {
      float quotient = boundary;
      for (int step = 0; step < 4; ++step) quotient = std::nextafter(quotient, 0.0f);
      for (int step = 0; step < 9; ++step, quotient = std::nextafter(quotient, 2.0f * boundary)) {
        const float x = quotient * scale;
        check(x, std::nextafter(-x, INFINITY));
      }
    }
    for (int i = 0; i < 2000; ++i) check(float_from_bits(any_bits(rng)), float_from_bits(any_bits(rng)));
    for (float v : {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e30f, -1e-30f, 0x1p-149f}) check(v, -v);
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(checked, 135 * 2000);
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
    c.q_fp8 = true;  // q's FP8 stores and tail pass split across lanes too
    c.q_to_y = lanes % 2 == 1;
    AppendCase<__nv_bfloat16, __nv_fp8_e4m3> q8(c, static_cast<std::uint64_t>(lanes) + 2000);
    EXPECT_TRUE(q8.run(Backend::kHost));
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
  // q's FP8 output alone, one or four bytes off the 16-byte alignment, narrows it the same way.
  for (int m : {1, 4}) {
    AppendConfig c;
    c.q_fp8 = true;
    c.q_fp8_misalign = m;
    c.tokens = 3;
    AppendCase<__nv_bfloat16, __nv_fp8_e4m3> fp8(c, 3);
    ASSERT_TRUE(fp8.run(Backend::kHost));
    EXPECT_EQ(fp8.vec_used(), m) << c.describe();
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
