// SPDX-License-Identifier: MIT
// Every argument rope_forward_append rejects: the error code, the reason, and that nothing was
// written (caches and outputs read back when there is a GPU). Validation happens before any CUDA
// call, so this runs without a GPU too (host memory then stands in for device memory).

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

namespace {

using Params = rope::RopeParams<float>;
using Append = rope::KvCacheAppend<float, float>;
using Fp8Append = rope::KvCacheAppend<float, __nv_fp8_e4m3>;

constexpr int kTokens = 8, kQHeads = 4, kKvHeads = 2, kDim = 64, kBlockSize = 4, kBlocks = 3;
constexpr std::size_t kHeadElems = kTokens * kDim;
constexpr std::size_t kCacheElems = std::size_t{kBlocks} * kBlockSize * kKvHeads * kDim;

/// One allocation holding every buffer of a valid launch (device memory with a GPU).
class Buffers {
 public:
  float* q() const { return memory_.data(); }
  float* k() const { return q() + kQHeads * kHeadElems; }
  float* v() const { return q() + (kQHeads + kKvHeads) * kHeadElems; }
  float* k_cache() const { return q() + (kQHeads + 2 * kKvHeads) * kHeadElems; }
  float* v_cache() const { return k_cache() + kCacheElems; }
  float* cos() const { return v_cache() + kCacheElems; }
  std::int64_t* slots() const { return reinterpret_cast<std::int64_t*>(cos() + kTokens * kDim); }
  /// q's FP8 output, [tokens, q heads, dim] bytes, after the slots.
  __nv_fp8_e4m3* q8() const { return reinterpret_cast<__nv_fp8_e4m3*>(cos() + kTokens * kDim + 64); }

  Params params() const {
    Params p;
    p.num_tokens = kTokens;
    p.head_dim = kDim;
    p.q = rope::packed_heads<float>(q(), q(), kQHeads, kDim);
    p.k = rope::packed_heads<float>(k(), k(), kKvHeads, kDim);
    p.cos_sin = rope::fused_cos_sin_cache<float>(cos(), kTokens, kDim);
    return p;
  }
  template <typename C>
  rope::KvCacheAppend<float, C> append() const {
    rope::KvCacheAppend<float, C> a;
    a.v = v();
    a.v_token_stride = kKvHeads * kDim;
    a.v_head_stride = kDim;
    a.k_cache = rope::nhd_paged_cache<C>(reinterpret_cast<C*>(k_cache()), kBlockSize, kKvHeads, kDim);
    a.v_cache = rope::nhd_paged_cache<C>(reinterpret_cast<C*>(v_cache()), kBlockSize, kKvHeads, kDim);
    a.num_blocks = kBlocks;
    a.block_size = kBlockSize;
    a.slots = rope::slot_mapping(static_cast<const std::int64_t*>(slots()));
    return a;
  }
  std::vector<float> contents() const { return memory_.contents(); }

 private:
  static constexpr std::size_t kElems =
      (kQHeads + 2 * kKvHeads) * kHeadElems + 2 * kCacheElems + kTokens * kDim + 64 + kQHeads * kHeadElems / 4;
  rope_test::ScratchFloats memory_{kElems, 1234.5f};
};

struct BadAppend {
  const char* name;
  std::function<void(Params&, Append&, const Buffers&)> spoil;
  const char* reason;  // expected substring of the message
};

void PrintTo(const BadAppend& bad, std::ostream* os) { *os << bad.name; }

template <typename P>
P* shifted(P* p, int bytes) {
  return reinterpret_cast<P*>(reinterpret_cast<std::uintptr_t>(p) + static_cast<std::uintptr_t>(bytes));
}

std::vector<BadAppend> bad_appends() {
  using B = const Buffers&;
  return {
      {"NoK", [](Params& p, Append&, B) { p.k = rope::HeadsTensor<float>{}; }, "append needs k"},
      {"BadRopeArgument", [](Params& p, Append&, B) { p.head_dim = 63; }, "head_dim must be even"},
      {"ZeroBlockSize", [](Params&, Append& a, B) { a.block_size = 0; }, "block_size must be positive"},
      {"NegativeBlocks", [](Params&, Append& a, B) { a.num_blocks = -1; }, "num_blocks is negative"},
      {"TooManySlots", [](Params&, Append& a, B) { a.num_blocks = std::int64_t{1} << 62; }, "num_blocks * block_size"},
      {"BadSlotType", [](Params&, Append& a, B) { a.slots.type = static_cast<rope::SlotType>(0); }, "slots.type"},
      {"ScaleWithSameTypeCache", [](Params&, Append& a, B) { a.k_scale = 0.5f; }, "apply only to an FP8 cache"},
      {"NegativeKCacheStride", [](Params&, Append& a, B) { a.k_cache.row_stride = -1; }, "k_cache strides are negative"},
      {"NegativeVCacheStride", [](Params&, Append& a, B) { a.v_cache.head_stride = -1; }, "v_cache strides are negative"},
      {"KCacheSpanOverflows",
       [](Params&, Append& a, B) { a.k_cache.block_stride = std::numeric_limits<std::int64_t>::max() / 4; },
       "k_cache strides and sizes exceed 64-bit offsets"},
      {"KCacheHeadsOverlap", [](Params&, Append& a, B) { a.k_cache.head_stride = kDim - 2; }, "k_cache strides make cache rows overlap"},
      {"VCacheRowsOverlap", [](Params&, Append& a, B) { a.v_cache.row_stride = kDim; }, "v_cache strides make cache rows overlap"},
      {"KCacheBlocksOverlap", [](Params&, Append& a, B) { a.k_cache.block_stride = kKvHeads * kDim; }, "k_cache strides make cache rows overlap"},
      {"NegativeVStride", [](Params&, Append& a, B) { a.v_token_stride = -1; }, "v strides are negative"},
      {"VSpanOverflows",
       [](Params&, Append& a, B) { a.v_token_stride = std::numeric_limits<std::int64_t>::max() / 4; },
       "v strides and sizes exceed 64-bit offsets"},
      {"NullV", [](Params&, Append& a, B) { a.v = nullptr; }, "v is null"},
      {"NullKCache", [](Params&, Append& a, B) { a.k_cache.data = nullptr; }, "k_cache.data is null"},
      {"NullVCache", [](Params&, Append& a, B) { a.v_cache.data = nullptr; }, "v_cache.data is null"},
      {"NullSlots", [](Params&, Append& a, B) { a.slots.data = nullptr; }, "slots.data is null"},
      {"MisalignedV", [](Params&, Append& a, B) { a.v = shifted(a.v, 2); }, "v is not aligned"},
      {"MisalignedCache", [](Params&, Append& a, B) { a.v_cache.data = shifted(a.v_cache.data, 2); }, "not aligned to its element type"},
      {"MisalignedSlots",
       [](Params&, Append& a, B b) { a.slots = rope::SlotMapping{shifted(b.slots(), 4), rope::SlotType::kInt64}; },
       "slots.data is not aligned"},
      {"MisalignedSlotFlag",
       [](Params&, Append& a, B b) { a.slot_out_of_range_flag = shifted(reinterpret_cast<int*>(b.slots()), 2); },
       "slot_out_of_range_flag is not aligned"},
      {"VIsQOutput", [](Params&, Append& a, B b) { a.v = b.q(); }, "v overlaps q.y or k.y"},
      {"VIsKOutput", [](Params&, Append& a, B b) { a.v = b.k() + kDim; }, "v overlaps q.y or k.y"},
      {"CachesOverlap", [](Params&, Append& a, B b) { a.v_cache.data = b.k_cache() + kDim; }, "k_cache and v_cache overlap"},
      {"CachesSameBuffer", [](Params&, Append& a, B b) { a.v_cache.data = b.k_cache(); }, "k_cache and v_cache overlap"},
      {"CacheOverlapsQ", [](Params&, Append& a, B b) { a.k_cache.data = b.q(); }, "a cache overlaps q, k or v"},
      {"VInsideCache", [](Params&, Append& a, B b) { a.v = b.k_cache() + kDim; }, "a cache overlaps q, k or v"},
      {"SlotsInKCache",
       [](Params&, Append& a, B b) { a.slots = rope::slot_mapping(reinterpret_cast<const std::int64_t*>(b.k_cache()) + 2); },
       "slots overlap an output of the launch"},
      {"SlotsInQ", [](Params&, Append& a, B b) { a.slots = rope::slot_mapping(reinterpret_cast<const std::int64_t*>(b.q())); },
       "slots overlap an output of the launch"},
      {"PositionsInVCache",
       [](Params& p, Append&, B b) { p.positions = rope::positions(reinterpret_cast<const std::int64_t*>(b.v_cache())); },
       "positions overlap an output of the launch"},
      {"TableInKCache", [](Params& p, Append&, B b) { p.cos_sin.cos = b.k_cache() + 4 * kDim; },
       "cos/sin table overlaps an output"},
      {"FlagInKCache", [](Params& p, Append&, B b) { p.out_of_range_flag = reinterpret_cast<int*>(b.k_cache()) + 4; },
       "out_of_range_flag lies in a tensor the launch reads or writes"},
      {"FlagInV", [](Params& p, Append&, B b) { p.out_of_range_flag = reinterpret_cast<int*>(b.v()) + 4; },
       "out_of_range_flag lies in a tensor"},
      {"SlotFlagInVCache", [](Params&, Append& a, B b) { a.slot_out_of_range_flag = reinterpret_cast<int*>(b.v_cache()) + 6; },
       "slot_out_of_range_flag lies in a tensor the launch reads or writes"},
      {"SlotFlagInSlots", [](Params&, Append& a, B b) { a.slot_out_of_range_flag = reinterpret_cast<int*>(b.slots()) + 4; },
       "slot_out_of_range_flag lies in a tensor"},
      {"SlotFlagInTable", [](Params&, Append& a, B b) { a.slot_out_of_range_flag = reinterpret_cast<int*>(b.cos()) + 4; },
       "slot_out_of_range_flag lies in a tensor"},
      {"SlotFlagInK", [](Params&, Append& a, B b) { a.slot_out_of_range_flag = reinterpret_cast<int*>(b.k()) + 4; },
       "slot_out_of_range_flag lies in a tensor"},
  };
}

/// Starts from the valid launch `a` (built on b), applies `spoil`, and expects the launcher to
/// refuse it with a message containing `reason` and to leave every buffer as it was.
template <typename C, typename Spoil>
void expect_rejected_and_nothing_written(const Buffers& b, rope::KvCacheAppend<float, C> a, const Spoil& spoil,
                                         const char* reason) {
  const std::vector<float> before = b.contents();
  Params p = b.params();
  ASSERT_TRUE(rope::validate(p, a).ok()) << rope::validate(p, a).message;
  spoil(p, a, b);
  const rope::Status status = rope::validate(p, a);
  EXPECT_EQ(status.error, cudaErrorInvalidValue);
  EXPECT_NE(std::string(status.message).find(reason), std::string::npos) << status.message;
  EXPECT_EQ(rope::rope_forward_append(p, a), cudaErrorInvalidValue);
  EXPECT_STREQ(rope::last_error_message(), status.message);
  if (rope_test::gpu_available()) ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> after = b.contents();
  EXPECT_EQ(std::memcmp(before.data(), after.data(), before.size() * sizeof(float)), 0) << "a rejected launch wrote";
}

class InvalidAppendArgs : public ::testing::TestWithParam<BadAppend> {};

TEST_P(InvalidAppendArgs, RejectedBeforeLaunchAndNothingWritten) {
  Buffers b;
  expect_rejected_and_nothing_written(b, b.append<float>(), GetParam().spoil, GetParam().reason);
}

INSTANTIATE_TEST_SUITE_P(Launcher, InvalidAppendArgs, ::testing::ValuesIn(bad_appends()),
                         [](const ::testing::TestParamInfo<BadAppend>& info) { return std::string(info.param.name); });

// FP8 scales: positive and within [2^-64, 2^64], where the kernel's division by a reciprocal is
// exact (detail/device/quantize.cuh); both ends are accepted.
TEST(InvalidAppendArgsFp8, ScalesMustBeInRange) {
  Buffers b;
  const Params p = b.params();
  Fp8Append a = b.append<__nv_fp8_e4m3>();
  EXPECT_TRUE(rope::validate(p, a).ok()) << rope::validate(p, a).message;
  for (float good : {0x1p-64f, 1e-3f, 448.0f, 0x1p64f}) {
    a.k_scale = good;
    a.v_scale = good;
    EXPECT_TRUE(rope::validate(p, a).ok()) << good;
  }
  a.k_scale = a.v_scale = 1.0f;
  const float below = std::nextafter(0x1p-64f, 0.0f), above = std::nextafter(0x1p64f, INFINITY);
  for (float bad : {0.0f, -1.0f, NAN, INFINITY, 1e-30f, below, above, 1e30f}) {
    a.k_scale = bad;
    EXPECT_EQ(rope::rope_forward_append(p, a), cudaErrorInvalidValue);
    EXPECT_STREQ(rope::last_error_message(), "k_scale must be in [2^-64, 2^64]");
    a.k_scale = 1.0f;
    a.v_scale = bad;
    EXPECT_STREQ(rope::validate(p, a).message, "v_scale must be in [2^-64, 2^64]");
    a.v_scale = 1.0f;
  }
}

// q quantized to FP8 (an FP8 cache's option): each bad argument rejected before launch, nothing
// written.
struct BadQuantizedQ {
  const char* name;
  std::function<void(Params&, Fp8Append&, const Buffers&)> spoil;
  const char* reason;
};

void PrintTo(const BadQuantizedQ& bad, std::ostream* os) { *os << bad.name; }

Fp8Append with_q_fp8(const Buffers& b) {
  Fp8Append a = b.append<__nv_fp8_e4m3>();
  a.q_fp8 = b.q8();
  a.q_fp8_token_stride = kQHeads * kDim;
  a.q_fp8_head_stride = kDim;
  a.q_scale = 0.5f;
  return a;
}

std::vector<BadQuantizedQ> bad_quantized_q() {
  using B = const Buffers&;
  using Fp8 = __nv_fp8_e4m3;
  return {
      {"NoQ", [](Params& p, Fp8Append&, B) { p.q = rope::HeadsTensor<float>{}; }, "q_fp8 needs q (q.num_heads >= 1)"},
      {"ZeroScale", [](Params&, Fp8Append& a, B) { a.q_scale = 0.0f; }, "q_scale must be in [2^-64, 2^64]"},
      {"NanScale", [](Params&, Fp8Append& a, B) { a.q_scale = NAN; }, "q_scale must be in [2^-64, 2^64]"},
      {"HugeScale", [](Params&, Fp8Append& a, B) { a.q_scale = 1e30f; }, "q_scale must be in [2^-64, 2^64]"},
      {"ScaleWithoutQFp8", [](Params&, Fp8Append& a, B) { a.q_fp8 = nullptr; }, "q_scale applies only with q_fp8"},
      {"NullQyWithoutQFp8",
       [](Params& p, Fp8Append& a, B) {
         a.q_fp8 = nullptr;
         a.q_scale = 1.0f;
         p.q.y = nullptr;
       },
       "q.y is null"},
      {"NegativeStride", [](Params&, Fp8Append& a, B) { a.q_fp8_head_stride = -kDim; }, "q_fp8 strides are negative"},
      {"HugeStride", [](Params&, Fp8Append& a, B) { a.q_fp8_token_stride = std::int64_t{1} << 62; },
       "q_fp8 strides and sizes exceed 64-bit offsets"},
      {"RowsOverlap", [](Params&, Fp8Append& a, B) { a.q_fp8_head_stride = kDim / 2; },
       "q_fp8 strides make output rows overlap"},
      {"OverlapsKCache", [](Params&, Fp8Append& a, B b) { a.q_fp8 = reinterpret_cast<Fp8*>(b.k_cache()) + 8; },
       "q_fp8 overlaps a cache"},
      {"OverlapsVCache", [](Params&, Fp8Append& a, B b) { a.q_fp8 = reinterpret_cast<Fp8*>(b.v_cache()); },
       "q_fp8 overlaps a cache"},
      {"OverlapsQ", [](Params&, Fp8Append& a, B b) { a.q_fp8 = reinterpret_cast<Fp8*>(b.q()) + 100; },
       "q_fp8 overlaps q, k or v"},
      {"OverlapsV", [](Params&, Fp8Append& a, B b) { a.q_fp8 = reinterpret_cast<Fp8*>(b.v()); },
       "q_fp8 overlaps q, k or v"},
      {"OverlapsQWithoutBlocks",
       [](Params&, Fp8Append& a, B b) {
         a.num_blocks = 0;
         a.q_fp8 = reinterpret_cast<Fp8*>(b.k());
       },
       "q_fp8 overlaps q, k or v"},
  };
}

class InvalidQuantizedQ : public ::testing::TestWithParam<BadQuantizedQ> {};

TEST_P(InvalidQuantizedQ, RejectedBeforeLaunchAndNothingWritten) {
  Buffers b;
  expect_rejected_and_nothing_written(b, with_q_fp8(b), GetParam().spoil, GetParam().reason);
}

INSTANTIATE_TEST_SUITE_P(Launcher, InvalidQuantizedQ, ::testing::ValuesIn(bad_quantized_q()),
                         [](const ::testing::TestParamInfo<BadQuantizedQ>& info) { return std::string(info.param.name); });

TEST(InvalidQuantizedQ, NeedsAnFp8Cache) {
  Buffers b;
  const Params p = b.params();
  Append a = b.append<float>();
  a.q_fp8 = b.q8();
  a.q_fp8_token_stride = kQHeads * kDim;
  a.q_fp8_head_stride = kDim;
  EXPECT_EQ(rope::rope_forward_append(p, a), cudaErrorInvalidValue);
  EXPECT_STREQ(rope::last_error_message(),
               "q_fp8 needs an FP8 cache (C = __nv_fp8_e4m3); rope_attention_prologue takes it with any cache");
}

TEST(ValidQuantizedQ, OptionalQyAndNoBlocks) {
  Buffers b;
  Params p = b.params();
  Fp8Append a = with_q_fp8(b);
  p.q.y = nullptr;  // q to the FP8 buffer only
  EXPECT_TRUE(rope::validate(p, a).ok()) << rope::validate(p, a).message;
  a.num_blocks = 0;  // no cache rows at all: q_fp8 is still written
  EXPECT_TRUE(rope::validate(p, a).ok()) << rope::validate(p, a).message;
  p.num_tokens = 0;
  EXPECT_TRUE(rope::validate(p, a).ok()) << rope::validate(p, a).message;
}

// Layouts that share memory legitimately are accepted (validation only).
TEST(ValidAppendArgs, SharedLayoutsAndOptionalParts) {
  Buffers b;
  Params p = b.params();
  Append a = b.append<float>();
  // No write-back: k.y null.
  p.k.y = nullptr;
  EXPECT_TRUE(rope::validate(p, a).ok()) << rope::validate(p, a).message;
  // k only.
  p.q = rope::HeadsTensor<float>{};
  EXPECT_TRUE(rope::validate(p, a).ok()) << rope::validate(p, a).message;
  // FlashInfer's [pages, 2, heads, page, dim]: k and v alternate per block in one buffer.
  a.k_cache = rope::hnd_paged_cache<float>(b.k_cache(), kBlockSize, kKvHeads, kDim);
  a.k_cache.block_stride *= 2;
  a.v_cache = a.k_cache;
  a.v_cache.data = b.k_cache() + kBlockSize * kKvHeads * kDim;
  a.num_blocks = 1;  // the buffer holds one such block pair... and a bit: 2 * 1 block of each
  EXPECT_TRUE(rope::validate(p, a).ok()) << rope::validate(p, a).message;
  // v read from the fused QKV buffer that q and k are rotated in, in place.
  Params fused = b.params();
  fused.q = rope::strided_heads<float>(b.q(), b.q(), 2, 4 * kDim, kDim);
  fused.k = rope::strided_heads<float>(b.q() + 2 * kDim, b.q() + 2 * kDim, 1, 4 * kDim, kDim);
  Append fa = b.append<float>();
  fa.v = b.q() + 3 * kDim;
  fa.v_token_stride = 4 * kDim;
  fa.k_cache = rope::nhd_paged_cache<float>(b.k_cache(), kBlockSize, 1, kDim);
  fa.v_cache = rope::nhd_paged_cache<float>(b.v_cache(), kBlockSize, 1, kDim);
  EXPECT_TRUE(rope::validate(fused, fa).ok()) << rope::validate(fused, fa).message;
}

TEST(InvalidAppendArgs, ZeroTokensSucceedWithoutLaunching) {
  Params p;
  p.num_tokens = 0;
  p.head_dim = 128;
  p.k.num_heads = 8;
  p.cos_sin.row_stride = 64;
  Append a;  // empty tensors and caches may carry null pointers
  a.block_size = 16;
  a.k_cache = rope::nhd_paged_cache<float>(nullptr, 16, 8, 128);
  a.v_cache = a.k_cache;
  EXPECT_EQ(rope::rope_forward_append(p, a), cudaSuccess);
  EXPECT_STREQ(rope::last_error_message(), "ok");
  a.block_size = 0;  // the configuration is still checked
  EXPECT_EQ(rope::rope_forward_append(p, a), cudaErrorInvalidValue);
}

}  // namespace
