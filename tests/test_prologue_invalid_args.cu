// SPDX-License-Identifier: MIT
// Every argument rope_attention_prologue rejects: the error, the reason, and that nothing was
// written (with or without a GPU); and the optional parts it accepts. Apart from
// test_prologue.cu (the host runs) so that the two compile side by side.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include <cuda_fp8.h>
#include <gtest/gtest.h>

#include <rope/rope.cuh>

#include "harness.hpp"
#include "host_run.hpp"

namespace {

using Params = rope::RopeParams<float>;
using Norm = rope::QkNorm<float, float>;
using Cache = rope::KvCacheAppend<float, float>;
using Prologue = rope::AttentionPrologue<float, float, float>;
using Fp8 = __nv_fp8_e4m3;

constexpr int kTokens = 8, kQHeads = 4, kKvHeads = 2, kDim = 64, kBlockSize = 4, kBlocks = 3;
constexpr std::size_t kHeadElems = kTokens * kDim;
constexpr std::size_t kCacheElems = std::size_t{kBlocks} * kBlockSize * kKvHeads * kDim;

/// One allocation holding every buffer of a valid launch (device memory with a GPU).
class Buffers {
 public:
  float* q() const { return memory_.data(); }
  float* k() const { return q() + kQHeads * kHeadElems; }
  float* v() const { return k() + kKvHeads * kHeadElems; }
  float* qy() const { return v() + kKvHeads * kHeadElems; }  // q's out-of-place output
  float* ky() const { return qy() + kQHeads * kHeadElems; }  // k's
  float* k_cache() const { return ky() + kKvHeads * kHeadElems; }
  float* v_cache() const { return k_cache() + kCacheElems; }
  float* cos() const { return v_cache() + kCacheElems; }
  std::int64_t* slots() const { return reinterpret_cast<std::int64_t*>(cos() + kTokens * kDim); }
  float* weights() const { return cos() + kTokens * kDim + 2 * kTokens; }  // q's, then k's
  /// q's FP8 output, [tokens, q heads, dim] bytes, after the weights.
  Fp8* q8() const { return reinterpret_cast<Fp8*>(weights() + 2 * kDim); }

  std::vector<float> contents() const { return memory_.contents(); }

 private:
  static constexpr std::size_t kElems = (2 * kQHeads + 3 * kKvHeads) * kHeadElems + 2 * kCacheElems + kTokens * kDim +
                                        2 * kTokens + 2 * kDim + kQHeads * kHeadElems / 4 + 64;
  rope_test::ScratchFloats memory_{kElems, 1234.5f};
};

/// A launch's arguments: every stage present (norm, float cache, q to FP8, q.y and k.y written
/// out of place) unless a test takes one away.
struct Args {
  Params p;
  Norm norm;
  Cache cache;
  rope::QuantizedQ q8;
  bool has_norm = true, has_cache = true;

  explicit Args(const Buffers& b) {
    p.num_tokens = kTokens;
    p.head_dim = kDim;
    p.q = rope::packed_heads<float>(b.q(), b.qy(), kQHeads, kDim);
    p.k = rope::packed_heads<float>(b.k(), b.ky(), kKvHeads, kDim);
    p.cos_sin = rope::fused_cos_sin_cache<float>(b.cos(), kTokens, kDim);
    p.positions = rope::positions(static_cast<const std::int64_t*>(b.slots()));
    norm.q_weight = b.weights();
    norm.k_weight = b.weights() + kDim;
    cache.v = b.v();
    cache.v_token_stride = kKvHeads * kDim;
    cache.v_head_stride = kDim;
    cache.k_cache = rope::nhd_paged_cache<float>(b.k_cache(), kBlockSize, kKvHeads, kDim);
    cache.v_cache = rope::nhd_paged_cache<float>(b.v_cache(), kBlockSize, kKvHeads, kDim);
    cache.num_blocks = kBlocks;
    cache.block_size = kBlockSize;
    cache.slots = rope::slot_mapping(static_cast<const std::int64_t*>(b.slots()));
    q8.data = b.q8();
    q8.token_stride = kQHeads * kDim;
    q8.head_stride = kDim;
    q8.scale = 0.5f;
  }
  Prologue prologue() const {
    Prologue pr;
    if (has_norm) pr.norm = &norm;
    if (has_cache) pr.cache = &cache;
    pr.q_fp8 = q8;
    return pr;
  }
};

struct BadPrologue {
  const char* name;
  std::function<void(Args&, const Buffers&)> spoil;
  const char* reason;  // expected substring of the message
};

void PrintTo(const BadPrologue& bad, std::ostream* os) { *os << bad.name; }

void no_cache(Args& a) { a.has_cache = false; }
void no_q8(Args& a) { a.q8 = rope::QuantizedQ{}; }

std::vector<BadPrologue> bad_prologues() {
  using B = const Buffers&;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const float below = std::nextafter(0x1p-64f, 0.0f), above = std::nextafter(0x1p64f, inf);
  std::vector<BadPrologue> v = {
      // The cache may not quantize q itself: q to FP8 is the prologue's q_fp8.
      {"CacheSetsItsOwnQFp8", [](Args& a, B b) { a.cache.q_fp8 = b.q8(); }, "the prologue's cache has q_fp8 or q_scale set"},
      {"CacheSetsItsOwnQScale", [](Args& a, B) { a.cache.q_scale = 0.5f; }, "the prologue's cache has q_fp8 or q_scale set"},
      {"CacheSetsItsOwnQFp8WithoutPrologueQFp8",
       [](Args& a, B b) {
         no_q8(a);
         a.cache.q_fp8 = b.q8();
         a.cache.q_fp8_token_stride = kQHeads * kDim;
         a.cache.q_fp8_head_stride = kDim;
       },
       "the prologue's cache has q_fp8 or q_scale set"},
      // q_fp8's scale.
      {"QFp8ScaleWithoutData", [](Args& a, B) { a.q8.data = nullptr; }, "q_fp8.scale applies only with q_fp8.data"},
      {"QFp8ScaleWithoutDataNoCache",
       [](Args& a, B) {
         no_cache(a);
         a.q8.data = nullptr;
       },
       "q_fp8.scale applies only with q_fp8.data"},
      {"QFp8ScaleWithoutAnything",
       [](Args& a, B) {
         no_cache(a);
         a.has_norm = false;
         a.q8.data = nullptr;
       },
       "q_fp8.scale applies only with q_fp8.data"},
      // q_fp8's strides.
      {"QFp8NegativeTokenStride", [](Args& a, B) { a.q8.token_stride = -1; }, "q_fp8 strides are negative"},
      {"QFp8NegativeHeadStrideNoCache",
       [](Args& a, B) {
         no_cache(a);
         a.q8.head_stride = -kDim;
       },
       "q_fp8 strides are negative"},
      {"QFp8HeadsOverlap", [](Args& a, B) { a.q8.head_stride = kDim / 2; }, "q_fp8 strides make output rows overlap"},
      {"QFp8TokensOverlapNoCache",
       [](Args& a, B) {
         no_cache(a);
         a.q8.token_stride = kDim;
       },
       "q_fp8 strides make output rows overlap"},
      {"QFp8BroadcastHeads", [](Args& a, B) { a.q8.head_stride = 0; }, "q_fp8 strides make output rows overlap"},
      {"QFp8SpanOverflows", [](Args& a, B) { a.q8.token_stride = std::int64_t{1} << 62; },
       "q_fp8 strides and sizes exceed 64-bit offsets"},
      {"QFp8SpanOverflowsNoCache",
       [](Args& a, B) {
         no_cache(a);
         a.q8.head_stride = std::int64_t{1} << 61;
       },
       "q_fp8 strides and sizes exceed 64-bit offsets"},
      // q_fp8 overlapping what the launch reads or writes.
      {"QFp8OverlapsQx", [](Args& a, B b) { a.q8.data = reinterpret_cast<Fp8*>(b.q()) + 100; }, "q_fp8 overlaps q, k or v"},
      {"QFp8OverlapsQy", [](Args& a, B b) { a.q8.data = reinterpret_cast<Fp8*>(b.qy()); }, "q_fp8 overlaps q, k or v"},
      {"QFp8OverlapsKy", [](Args& a, B b) { a.q8.data = reinterpret_cast<Fp8*>(b.ky()) + 3; }, "q_fp8 overlaps q, k or v"},
      {"QFp8OverlapsV", [](Args& a, B b) { a.q8.data = reinterpret_cast<Fp8*>(b.v()); }, "q_fp8 overlaps q, k or v"},
      {"QFp8OverlapsKCache", [](Args& a, B b) { a.q8.data = reinterpret_cast<Fp8*>(b.k_cache()) + 8; }, "q_fp8 overlaps a cache"},
      {"QFp8OverlapsVCache", [](Args& a, B b) { a.q8.data = reinterpret_cast<Fp8*>(b.v_cache()); }, "q_fp8 overlaps a cache"},
      {"QFp8OverlapsQxNoCache",
       [](Args& a, B b) {
         no_cache(a);
         a.q8.data = reinterpret_cast<Fp8*>(b.q());
       },
       "q_fp8 overlaps q or k"},
      {"QFp8OverlapsQyNoCache",
       [](Args& a, B b) {
         no_cache(a);
         a.q8.data = reinterpret_cast<Fp8*>(b.qy()) + 1;
       },
       "q_fp8 overlaps q or k"},
      {"QFp8OverlapsKxNoCache",
       [](Args& a, B b) {
         no_cache(a);
         a.q8.data = reinterpret_cast<Fp8*>(b.k()) + kDim;
       },
       "q_fp8 overlaps q or k"},
      {"QFp8OverlapsKyNoCache",
       [](Args& a, B b) {
         no_cache(a);
         a.q8.data = reinterpret_cast<Fp8*>(b.ky());
       },
       "q_fp8 overlaps q or k"},
      {"QFp8OverlapsQxWhenQyNull",
       [](Args& a, B b) {
         no_cache(a);
         a.p.q.y = nullptr;  // q to FP8 only: q.x is still read
         a.q8.data = reinterpret_cast<Fp8*>(b.q()) + 40;
       },
       "q_fp8 overlaps q or k"},
      // q_fp8 needs q.
      {"QFp8WithoutQ",
       [](Args& a, B) {
         a.p.q = rope::HeadsTensor<float>{};
         a.norm.q_weight = nullptr;
       },
       "q_fp8 needs q (q.num_heads >= 1)"},
      {"QFp8WithoutQNoCache",
       [](Args& a, B) {
         no_cache(a);
         a.p.q = rope::HeadsTensor<float>{};
         a.norm.q_weight = nullptr;
       },
       "q_fp8 needs q (q.num_heads >= 1)"},
      {"QFp8WithZeroQHeadsButPointers",
       [](Args& a, B) {
         no_cache(a);
         a.p.q.num_heads = 0;
         a.norm.q_weight = nullptr;
       },
       "q pointers are set but q.num_heads is 0"},
      // Where the rotated q and k go.
      {"KyNullWithoutCache",
       [](Args& a, B) {
         no_cache(a);
         a.p.k.y = nullptr;
       },
       "k.y is null without a cache"},
      {"KyNullWithoutCacheOrQFp8",
       [](Args& a, B) {
         no_cache(a);
         no_q8(a);
         a.p.k.y = nullptr;
       },
       "k.y is null"},
      {"QyNullWithoutQFp8", [](Args& a, B) { no_q8(a); a.p.q.y = nullptr; }, "q.y is null"},
      {"QyNullWithoutQFp8OrCache",
       [](Args& a, B) {
         no_cache(a);
         no_q8(a);
         a.p.q.y = nullptr;
       },
       "q.y is null"},
      // The norm's arguments, in each combination of the other stages.
      {"QWeightNull", [](Args& a, B) { a.norm.q_weight = nullptr; }, "q_weight is null"},
      {"KWeightNull", [](Args& a, B) { a.norm.k_weight = nullptr; }, "k_weight is null"},
      {"QWeightNullNoCache",
       [](Args& a, B) {
         no_cache(a);
         a.norm.q_weight = nullptr;
       },
       "q_weight is null"},
      {"KWeightNullNoAppend",
       [](Args& a, B) {
         no_cache(a);
         no_q8(a);
         a.norm.k_weight = nullptr;
       },
       "k_weight is null"},
      {"QWeightWithoutQ",
       [](Args& a, B) {
         no_q8(a);
         a.p.q = rope::HeadsTensor<float>{};
       },
       "q_weight is set but q.num_heads is 0"},
      {"KWeightWithoutK",
       [](Args& a, B) {
         no_cache(a);
         a.p.k = rope::HeadsTensor<float>{};
       },
       "k_weight is set but k.num_heads is 0"},
      {"NegativeEps", [](Args& a, B) { a.norm.eps = -1e-6f; }, "eps must be finite and non-negative"},
      {"NanEpsNoCache",
       [nan](Args& a, B) {
         no_cache(a);
         a.norm.eps = nan;
       },
       "eps must be finite and non-negative"},
      {"BadWeighting", [](Args& a, B) { a.norm.weighting = static_cast<rope::NormWeighting>(2); }, "rope::NormWeighting"},
      {"MisalignedWeight",
       [](Args& a, B b) { a.norm.k_weight = reinterpret_cast<const float*>(reinterpret_cast<std::uintptr_t>(b.weights()) + 2); },
       "not aligned to its element type"},
      {"WeightInQOutput", [](Args& a, B b) { a.norm.q_weight = b.qy() + 3 * kDim; }, "overlaps q.y or k.y"},
      {"WeightInKCache", [](Args& a, B b) { a.norm.k_weight = b.k_cache() + kDim; }, "overlaps a cache or q_fp8"},
      {"WeightInVCache", [](Args& a, B b) { a.norm.q_weight = b.v_cache(); }, "overlaps a cache or q_fp8"},
      {"WeightInQFp8", [](Args& a, B b) { a.norm.q_weight = reinterpret_cast<const float*>(b.q8()) + 4; },
       "overlaps a cache or q_fp8"},
      {"WeightInQFp8NoCache",
       [](Args& a, B b) {
         no_cache(a);
         a.norm.k_weight = reinterpret_cast<const float*>(b.q8());
       },
       "overlaps a cache or q_fp8"},
      // The cache's own checks still apply.
      {"CacheWithoutK",
       [](Args& a, B) {
         a.p.k = rope::HeadsTensor<float>{};
         a.norm.k_weight = nullptr;
       },
       "append needs k"},
      {"CacheZeroBlockSize", [](Args& a, B) { a.cache.block_size = 0; }, "block_size must be positive"},
      {"CacheScaleOfSameType", [](Args& a, B) { a.cache.k_scale = 0.5f; }, "apply only to an FP8 cache"},
      {"CacheNullV", [](Args& a, B) { a.cache.v = nullptr; }, "v is null"},
      {"CacheOverlapsQ", [](Args& a, B b) { a.cache.k_cache.data = b.qy(); }, "a cache overlaps q, k or v"},
      {"CachesOverlap", [](Args& a, B b) { a.cache.v_cache.data = b.k_cache() + kDim; }, "k_cache and v_cache overlap"},
      // RoPE's own checks, whichever stages the launch has.
      {"BadRopeArgument", [](Args& a, B) { a.p.head_dim = 63; }, "head_dim must be even"},
      {"BadRopeArgumentNoCache",
       [](Args& a, B) {
         no_cache(a);
         a.p.rotary_dim = 3;
       },
       "rotary_dim must be even"},
      {"BadRopeArgumentNoStage",
       [](Args& a, B) {
         no_cache(a);
         no_q8(a);
         a.has_norm = false;
         a.p.cos_sin.row_stride = 1;
       },
       "row_stride is smaller than rotary_dim / 2"},
      {"BadMultiAxisPositions",
       [](Args& a, B b) {
         a.p.positions = rope::multi_axis_positions(static_cast<const std::int64_t*>(b.slots()), 3, 0,
                                                    rope::AxisSections::kContiguous, 8, 8, 8);
       },
       "positions.sections must sum to rotary_dim / 2"},
  };
  // q_fp8.scale outside [2^-64, 2^64], with and without a cache.
  for (float bad : {0.0f, -1.0f, nan, inf, below, above, 1e-30f, 1e30f}) {
    v.push_back({"QFp8ScaleOutOfRange", [bad](Args& a, B) { a.q8.scale = bad; }, "q_fp8.scale must be in [2^-64, 2^64]"});
    v.push_back({"QFp8ScaleOutOfRangeNoCache",
                 [bad](Args& a, B) {
                   no_cache(a);
                   a.q8.scale = bad;
                 },
                 "q_fp8.scale must be in [2^-64, 2^64]"});
  }
  return v;
}

class InvalidPrologueArgs : public ::testing::TestWithParam<BadPrologue> {};

// Rejected by validate, by the launcher (cudaErrorInvalidValue, the reason kept for
// last_error_message) and by the host runner, and nothing written anywhere.
TEST_P(InvalidPrologueArgs, RejectedBeforeLaunchAndNothingWritten) {
  Buffers b;
  Args a(b);
  {
    const Prologue valid = a.prologue();
    ASSERT_TRUE(rope::validate(a.p, valid).ok()) << rope::validate(a.p, valid).message;
  }
  GetParam().spoil(a, b);
  const Prologue pr = a.prologue();
  const std::vector<float> before = b.contents();
  const rope::Status status = rope::validate(a.p, pr);
  EXPECT_EQ(status.error, cudaErrorInvalidValue);
  EXPECT_NE(std::strstr(status.message, GetParam().reason), nullptr) << status.message;
  EXPECT_EQ(rope::rope_attention_prologue(a.p, pr), cudaErrorInvalidValue);
  EXPECT_STREQ(rope::last_error_message(), status.message);
  EXPECT_NE(std::strstr(rope::last_error_message(), GetParam().reason), nullptr) << rope::last_error_message();
  EXPECT_EQ(rope_test::run_prologue_on_host(a.p, pr), cudaErrorInvalidValue);  // validation reads no memory
  if (rope_test::gpu_available()) ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> after = b.contents();
  EXPECT_EQ(std::memcmp(before.data(), after.data(), before.size() * sizeof(float)), 0) << "a rejected launch wrote";
}

INSTANTIATE_TEST_SUITE_P(Launcher, InvalidPrologueArgs, ::testing::ValuesIn(bad_prologues()),
                         [](const ::testing::TestParamInfo<BadPrologue>& info) {
                           return std::string(info.param.name) + "_" + std::to_string(info.index);
                         });

// Every optional part may be left out, and the parts that make a y optional make it so.
TEST(ValidPrologueArgs, OptionalParts) {
  Buffers b;
  auto ok = [](const Args& a) {
    const Prologue pr = a.prologue();
    const rope::Status s = rope::validate(a.p, pr);
    EXPECT_TRUE(s.ok()) << s.message;
  };
  Args full(b);
  ok(full);
  {  // q to FP8 only, k to the cache only
    Args a(b);
    a.p.q.y = nullptr;
    a.p.k.y = nullptr;
    ok(a);
  }
  {  // q_fp8 with no cache (and q.y null), no norm
    Args a(b);
    no_cache(a);
    a.p.q.y = nullptr;
    ok(a);
    a.has_norm = false;
    ok(a);
  }
  {  // nothing but RoPE; norm alone; cache alone; in place
    Args a(b);
    no_cache(a);
    no_q8(a);
    a.has_norm = false;
    ok(a);
    a.has_norm = true;
    ok(a);
    Args c(b);
    no_q8(c);
    c.has_norm = false;
    ok(c);
    c.p.q.y = const_cast<float*>(c.p.q.x);
    c.p.k.y = const_cast<float*>(c.p.k.x);
    ok(c);
  }
  {  // q only with q_fp8, k only with a cache
    Args a(b);
    no_cache(a);
    a.p.k = rope::HeadsTensor<float>{};
    a.norm.k_weight = nullptr;
    ok(a);
    Args c(b);
    no_q8(c);
    c.p.q = rope::HeadsTensor<float>{};
    c.norm.q_weight = nullptr;
    ok(c);
  }
  {  // the scale's range is closed; one weight for both tensors
    Args a(b);
    a.q8.scale = 0x1p-64f;
    ok(a);
    a.q8.scale = 0x1p64f;
    ok(a);
    a.norm.k_weight = a.norm.q_weight;
    ok(a);
  }
  {  // q to FP8 with caches of the tensor's type (rope_forward_append takes it only with FP8 ones)
    Args a(b);
    ok(a);
    Cache with_q = a.cache;
    with_q.q_fp8 = a.q8.data;
    with_q.q_fp8_token_stride = a.q8.token_stride;
    with_q.q_fp8_head_stride = a.q8.head_stride;
    EXPECT_NE(std::strstr(rope::validate(a.p, with_q).message, "q_fp8 needs an FP8 cache"), nullptr);
  }
}

// FP8 caches and fp32 weights with bf16 tensors: the same rules (validation only).
TEST(ValidPrologueArgs, Fp8CacheTypes) {
  using T = __nv_bfloat16;
  std::vector<T> tensors(static_cast<std::size_t>(kTokens) * (kQHeads + 2 * kKvHeads) * kDim);
  std::vector<Fp8> caches(2 * kCacheElems + static_cast<std::size_t>(kTokens) * kQHeads * kDim);
  std::vector<float> weights(2 * kDim), cos(kTokens * kDim);
  std::vector<std::int64_t> slots(kTokens, 0);
  rope::RopeParams<T> p;
  p.num_tokens = kTokens;
  p.head_dim = kDim;
  p.q = rope::packed_heads<T>(tensors.data(), tensors.data(), kQHeads, kDim);
  p.k = rope::packed_heads<T>(tensors.data() + kQHeads * kHeadElems, tensors.data() + kQHeads * kHeadElems, kKvHeads, kDim);
  p.cos_sin = rope::fused_cos_sin_cache<float>(cos.data(), kTokens, kDim);
  rope::KvCacheAppend<T, Fp8> cache;
  cache.v = tensors.data() + (kQHeads + kKvHeads) * kHeadElems;
  cache.v_token_stride = kKvHeads * kDim;
  cache.v_head_stride = kDim;
  cache.k_cache = rope::nhd_paged_cache<Fp8>(caches.data(), kBlockSize, kKvHeads, kDim);
  cache.v_cache = rope::nhd_paged_cache<Fp8>(caches.data() + kCacheElems, kBlockSize, kKvHeads, kDim);
  cache.num_blocks = kBlocks;
  cache.block_size = kBlockSize;
  cache.slots = rope::slot_mapping(static_cast<const std::int64_t*>(slots.data()));
  cache.k_scale = 0.01f;
  cache.v_scale = 0.02f;
  rope::QkNorm<T, float> norm;
  norm.q_weight = weights.data();
  norm.k_weight = weights.data() + kDim;
  rope::AttentionPrologue<T, Fp8, float> pr;
  pr.norm = &norm;
  pr.cache = &cache;
  pr.q_fp8 = rope::QuantizedQ{caches.data() + 2 * kCacheElems, kQHeads * kDim, kDim, 0.003f};
  EXPECT_TRUE(rope::validate(p, pr).ok()) << rope::validate(p, pr).message;
  cache.q_scale = 0.003f;  // the cache's own q quantization: refused here
  EXPECT_STREQ(rope::validate(p, pr).message,
               "the prologue's cache has q_fp8 or q_scale set: give q to FP8 as the prologue's q_fp8");
  cache.q_scale = 1.0f;
  cache.k_scale = 0.0f;
  EXPECT_STREQ(rope::validate(p, pr).message, "k_scale must be in [2^-64, 2^64]");
  cache.k_scale = 0.01f;
  pr.q_fp8.data = caches.data() + kCacheElems + 5;  // inside the v cache
  EXPECT_STREQ(rope::validate(p, pr).message, "q_fp8 overlaps a cache");
}

// Zero tokens: success without a launch, null pointers allowed; the configuration is still checked.
TEST(ValidPrologueArgs, ZeroTokensSucceedWithoutLaunching) {
  Params p;
  p.num_tokens = 0;
  p.head_dim = 128;
  p.q.num_heads = 8;
  p.k.num_heads = 2;
  p.cos_sin.row_stride = 64;
  Norm norm;
  Cache cache;
  cache.block_size = 16;
  cache.k_cache = rope::nhd_paged_cache<float>(nullptr, 16, 2, 128);
  cache.v_cache = cache.k_cache;
  Prologue pr;
  pr.norm = &norm;
  pr.cache = &cache;
  EXPECT_EQ(rope::rope_attention_prologue(p, pr), cudaSuccess);
  EXPECT_STREQ(rope::last_error_message(), "ok");
  pr.q_fp8.scale = 2.0f;  // without data
  EXPECT_EQ(rope::rope_attention_prologue(p, pr), cudaErrorInvalidValue);
  EXPECT_NE(std::strstr(rope::last_error_message(), "q_fp8.scale applies only with q_fp8.data"), nullptr);
  pr.q_fp8.scale = 1.0f;
  cache.block_size = 0;
  EXPECT_EQ(rope::rope_attention_prologue(p, pr), cudaErrorInvalidValue);
  EXPECT_NE(std::strstr(rope::last_error_message(), "block_size must be positive"), nullptr);
}

}  // namespace
