// SPDX-License-Identifier: MIT
// Every argument the launchers reject: the error code, the reason, and that nothing was written.
// Runs with or without a GPU (validation happens before any CUDA call); with one, the buffers
// are device memory and are read back to prove nothing was written.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <rope/rope.cuh>

#include "harness.hpp"

namespace {

using Params = rope::RopeParams<float>;

constexpr int kTokens = 8, kHeads = 2, kDim = 64;
constexpr std::size_t kElems = kTokens * kHeads * kDim;

/// Buffers for one valid launch, in device memory when there is a GPU, host memory otherwise.
class Buffers {
 public:
  Buffers() : gpu_(rope_test::gpu_available()) {
    x_ = alloc(kElems + 64);
    y_ = alloc(kElems + 64);
    cos_ = alloc(kTokens * kDim);
    sin_ = alloc(kTokens * kDim);
    freq_ = alloc(kDim);
    pos_ = alloc(2 * kTokens + 2);  // room for int64 positions
  }
  ~Buffers() {
    for (float* p : owned_) gpu_ ? (void)cudaFree(p) : delete[] p;
  }

  Params valid() const {
    Params p;
    p.num_tokens = kTokens;
    p.head_dim = kDim;
    p.q = rope::packed_heads<float>(x_, y_, kHeads, kDim);
    p.cos_sin = rope::cos_sin_table<float>(cos_, sin_, kTokens, kDim / 2);
    return p;
  }
  float* x() const { return x_; }
  float* y() const { return y_; }
  const float* freq() const { return freq_; }
  const void* pos() const { return pos_; }

  /// y's contents (poisoned at construction).
  std::vector<float> y_contents() const {
    std::vector<float> out(kElems + 64);
    if (gpu_) {
      EXPECT_EQ(cudaMemcpy(out.data(), y_, out.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    } else {
      std::memcpy(out.data(), y_, out.size() * sizeof(float));
    }
    return out;
  }

 private:
  float* alloc(std::size_t n) {
    std::vector<float> fill(n, 1234.5f);
    float* p = nullptr;
    if (gpu_) {
      EXPECT_EQ(cudaMalloc(&p, n * sizeof(float)), cudaSuccess);
      cudaMemcpy(p, fill.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    } else {
      p = new float[n];
      std::memcpy(p, fill.data(), n * sizeof(float));
    }
    owned_.push_back(p);
    return p;
  }
  bool gpu_;
  std::vector<float*> owned_;
  float *x_, *y_, *cos_, *sin_, *freq_, *pos_;
};

struct BadArgument {
  const char* name;
  std::function<void(Params&, const Buffers&)> spoil;
  const char* reason;  // expected substring of the message
};

// ctest lists parameterized cases with their printed parameter: print the name, not the bytes.
void PrintTo(const BadArgument& bad, std::ostream* os) { *os << bad.name; }

std::vector<BadArgument> bad_arguments() {
  using B = const Buffers&;
  auto i64 = [](B b) { return static_cast<const std::int64_t*>(b.pos()); };
  return {
      {"NegativeTokens", [](Params& p, B) { p.num_tokens = -1; }, "num_tokens is negative"},
      {"TooManyTokens", [](Params& p, B) { p.num_tokens = std::int64_t{1} << 31; }, "exceeds 2^31"},
      {"ZeroHeadDim", [](Params& p, B) { p.head_dim = 0; }, "head_dim must be positive"},
      {"NegativeHeadDim", [](Params& p, B) { p.head_dim = -64; }, "head_dim must be positive"},
      {"OddHeadDim", [](Params& p, B) { p.head_dim = 63; }, "head_dim must be even"},
      {"NegativeRotaryDim", [](Params& p, B) { p.rotary_dim = -2; }, "rotary_dim is negative"},
      {"OddRotaryDim", [](Params& p, B) { p.rotary_dim = 31; }, "rotary_dim must be even"},
      {"RotaryDimOverHeadDim", [](Params& p, B) { p.rotary_dim = 66; }, "rotary_dim is larger than head_dim"},
      {"BadStyle", [](Params& p, B) { p.style = static_cast<rope::Style>(7); }, "style"},
      {"NegativeQHeads", [](Params& p, B) { p.q.num_heads = -1; }, "q.num_heads is negative"},
      {"QPointersWithoutHeads",  // a k-only launch that left q's pointers set
       [](Params& p, B b) {
         p.k = rope::packed_heads<float>(b.x(), b.y(), kHeads, kDim);
         p.q.num_heads = 0;
       },
       "q pointers are set but q.num_heads is 0"},
      {"NoHeadsAtAll", [](Params& p, B) { p.q = rope::HeadsTensor<float>{}; }, "must be at least 1"},
      {"NoHeadsAtAllWithKPointers",
       [](Params& p, B b) {
         p.q = rope::HeadsTensor<float>{};
         p.k.x = b.x();
       },
       "must be at least 1"},
      {"TooManyHeads", [](Params& p, B) { p.q.num_heads = 4097; }, "exceeds 4096"},
      {"HeadCountSumOverflows",
       [](Params& p, B b) {
         p.q.num_heads = 2147483647;
         p.k = rope::packed_heads<float>(b.x(), b.x(), 1, kDim);
       },
       "exceeds 4096"},
      {"HeadDimTooLarge", [](Params& p, B) { p.head_dim = 16386; }, "head_dim exceeds 16384"},
      {"StridesOverflow64Bit",
       [](Params& p, B) { p.q.x_token_stride = std::numeric_limits<std::int64_t>::max() / 4; }, "64-bit offsets"},
      {"MisalignedOutOfRangeFlag",
       [](Params& p, B b) { p.out_of_range_flag = reinterpret_cast<int*>(reinterpret_cast<char*>(b.x()) + 2); },
       "out_of_range_flag is not aligned"},
      {"NegativeKHeads", [](Params& p, B) { p.k.num_heads = -1; }, "k.num_heads is negative"},
      {"KPointersWithoutHeads", [](Params& p, B b) { p.k.x = b.x(); }, "k.num_heads is 0"},
      {"KHeadsWithoutPointers", [](Params& p, B) { p.k.num_heads = 1; }, "k.x is null"},
      {"NullQX", [](Params& p, B) { p.q.x = nullptr; }, "q.x is null"},
      {"NullQY", [](Params& p, B) { p.q.y = nullptr; }, "q.y is null"},
      {"MisalignedQ",
       [](Params& p, B b) { p.q.x = reinterpret_cast<const float*>(reinterpret_cast<const char*>(b.x()) + 2); },
       "not aligned"},
      {"HeadStrideOverlapsHeads", [](Params& p, B) { p.q.y_head_stride = kDim - 2; }, "rows overlap"},
      {"TokenStrideOverlapsTokens", [](Params& p, B) { p.q.y_token_stride = kDim; }, "rows overlap"},
      {"NegativeStride", [](Params& p, B) { p.q.x_token_stride = -kHeads * kDim; }, "strides are negative"},
      {"KAliasesQ",
       [](Params& p, B b) {
         p.q = rope::packed_heads<float>(b.x(), b.x(), kHeads, kDim);
         p.k = rope::packed_heads<float>(b.x(), b.x(), 1, kDim);
       },
       "k overlaps q"},
      {"KWritesQInput",  // q out of place reads head 1 of x, which k rotates in place
       [](Params& p, B b) { p.k = rope::strided_heads<float>(b.x() + kDim, b.x() + kDim, 1, kHeads * kDim, kDim); },
       "k overlaps q"},
      {"KWritesQOutput",  // k reads q's input (allowed) but writes into q's output head 1
       [](Params& p, B b) {
         p.k = rope::HeadsTensor<float>{b.x(), b.y() + kDim, 1, kHeads * kDim, kDim, kHeads * kDim, kDim};
       },
       "k overlaps q"},
      {"KFusedWithOtherTokenStride",  // q and k interleave by tokens, but their token strides differ
       [](Params& p, B b) {
         p.q = rope::strided_heads<float>(b.x(), b.x(), 1, 2 * kDim, kDim);
         p.k = rope::strided_heads<float>(b.x() + kDim, b.x() + kDim, 1, 2 * kDim + 2, kDim);
       },
       "k overlaps q"},
      {"KInsideQHeadSlots",  // per-head interleaving as GPT-NeoX's [T, H, 3D], but k starts inside q's head
       [](Params& p, B b) {
         p.q = rope::strided_heads<float>(b.x(), b.x(), 2, 6 * kDim, 3 * kDim);
         p.k = rope::strided_heads<float>(b.x() + kDim / 2, b.x() + kDim / 2, 2, 6 * kDim, 3 * kDim);
       },
       "k overlaps q"},
      {"KHeadsBeforeQEnds",  // k starts inside q's head range of the same layout
       [](Params& p, B b) {
         p.q = rope::strided_heads<float>(b.x(), b.x(), 2, 4 * kDim, kDim);
         p.k = rope::strided_heads<float>(b.x() + kDim, b.x() + kDim, 2, 4 * kDim, kDim);
       },
       "k overlaps q"},
      {"PartialOverlap", [](Params& p, B b) { p.q.y = b.x() + 2; }, "partially overlaps"},
      {"InPlaceWithOtherStrides",
       [](Params& p, B b) {
         p.q.y = b.x();
         p.q.y_token_stride = kHeads * kDim + 2;
       },
       "partially overlaps"},
      {"TableTypeMismatch",
       [](Params& p, B) { p.cos_sin.table_type = rope::TableType::kBFloat16; }, "table type"},
      {"NegativeTableRows", [](Params& p, B) { p.cos_sin.rows = -1; }, "rows is negative"},
      {"TableRowStrideTooSmall", [](Params& p, B) { p.cos_sin.row_stride = kDim / 2 - 1; }, "row_stride"},
      {"TableSpanOverflows64Bit", [](Params& p, B) { p.cos_sin.row_stride = std::int64_t{1} << 62; },
       "rows and row_stride exceed 64-bit offsets"},
      {"NanTableAttentionScaling", [](Params& p, B) { p.cos_sin.attention_scaling = NAN; }, "attention_scaling"},
      {"ZeroAttentionScaling", [](Params& p, B) { p.cos_sin.attention_scaling = 0.0f; }, "attention_scaling must be finite and > 0"},
      {"NegativeAttentionScaling", [](Params& p, B) { p.cos_sin.attention_scaling = -1.0f; }, "attention_scaling"},
      {"CosIsSin", [](Params& p, B) { p.cos_sin.sin = p.cos_sin.cos; }, "cos and sin rows overlap"},
      {"FusedCacheForSmallerRotaryDim",  // a [cos | sin] cache of rotary_dim 32 used for rotary_dim 64
       [](Params& p, B) { p.cos_sin = rope::fused_cos_sin_cache(static_cast<const float*>(p.cos_sin.cos), kTokens, 32, 64); },
       "cos and sin rows overlap"},
      {"PositionsInOutput",
       [](Params& p, B b) { p.positions = rope::positions(reinterpret_cast<const std::int64_t*>(b.y() + kDim)); },
       "positions overlap an output of the launch"},
      {"TableInOutput", [](Params& p, B b) { p.cos_sin.cos = b.y() + 2 * kDim; }, "cos/sin table overlaps an output"},
      {"FrequenciesInOutput", [](Params& p, B b) { p.cos_sin = rope::computed_cos_sin(b.y() + 8); },
       "inv_freq overlaps an output"},
      {"FlagInOutput", [](Params& p, B b) { p.out_of_range_flag = reinterpret_cast<int*>(b.y() + 5); },
       "out_of_range_flag lies in a tensor the launch reads or writes"},
      {"FlagInInput", [](Params& p, B b) { p.out_of_range_flag = reinterpret_cast<int*>(b.x() + kElems - 1); },
       "out_of_range_flag lies in a tensor"},
      {"FlagInTable",
       [](Params& p, B) { p.out_of_range_flag = const_cast<int*>(static_cast<const int*>(p.cos_sin.sin) + 3); },
       "out_of_range_flag lies in a tensor"},
      {"FlagInPositions",
       [](Params& p, B b) {
         p.positions = rope::positions(static_cast<const std::int64_t*>(b.pos()));
         p.out_of_range_flag = const_cast<int*>(static_cast<const int*>(b.pos()) + 2 * kTokens - 1);
       },
       "out_of_range_flag lies in a tensor"},
      {"TableTooSmallForTokens", [](Params& p, B) { p.cos_sin.rows = kTokens - 1; }, "fewer rows than tokens"},
      {"NullCos", [](Params& p, B) { p.cos_sin.cos = nullptr; }, "table pointer is null"},
      {"NullSin", [](Params& p, B) { p.cos_sin.sin = nullptr; }, "table pointer is null"},
      {"MisalignedTable",
       [](Params& p, B) { p.cos_sin.sin = static_cast<const char*>(p.cos_sin.sin) + 1; }, "not aligned"},
      {"BadCosSinKind", [](Params& p, B) { p.cos_sin.kind = static_cast<rope::CosSin::Kind>(5); }, "kind"},
      {"MissingFrequencies", [](Params& p, B) { p.cos_sin = rope::computed_cos_sin(nullptr); }, "inv_freq is null"},
      {"NanAttentionScaling",
       [](Params& p, B b) { p.cos_sin = rope::computed_cos_sin(b.freq(), NAN); }, "attention_scaling"},
      {"InfiniteAttentionScaling",
       [](Params& p, B b) { p.cos_sin = rope::computed_cos_sin(b.freq(), INFINITY); }, "attention_scaling"},
      {"MisalignedFrequencies",
       [](Params& p, B b) {
         p.cos_sin = rope::computed_cos_sin(
             reinterpret_cast<const float*>(reinterpret_cast<const char*>(b.freq()) + 1));
       },
       "not aligned"},
      {"BadPositionType",
       [](Params& p, B b) { p.positions = rope::Positions{b.pos(), static_cast<rope::PositionType>(9)}; },
       "positions.type"},
      {"NullPositions",
       [](Params& p, B) { p.positions = rope::positions(static_cast<const std::int64_t*>(nullptr)); },
       "positions.data is null"},
      {"PositionsWithoutType", [](Params& p, B b) { p.positions.data = b.pos(); }, "type is kNone"},
      {"MisalignedPositions",
       [i64](Params& p, B b) {
         p.positions = rope::Positions{reinterpret_cast<const char*>(i64(b)) + 4, rope::PositionType::kInt64};
       },
       "positions.data is not aligned"},
      // Multi-axis positions (M-RoPE): kDim 64 has 32 frequencies to assign.
      {"PositionAxesOutOfRange",
       [i64](Params& p, B b) { p.positions = rope::multi_axis_positions(i64(b), 4, kTokens, rope::AxisSections::kContiguous, 8, 12, 12); },
       "positions.axes must be 1, 2 or 3"},
      {"MultiAxisWithoutArray",
       [](Params& p, B) {
         p.positions = rope::Positions{};
         p.positions.axes = 2;
         p.positions.sections[0] = p.positions.sections[1] = 16;
       },
       "multi-axis positions need a positions array"},
      {"BadAxisSectionsLayout",
       [i64](Params& p, B b) {
         p.positions = rope::multi_axis_positions(i64(b), 3, kTokens, static_cast<rope::AxisSections>(5), 8, 12, 12);
       },
       "rope::AxisSections"},
      {"NegativeSection",
       [i64](Params& p, B b) { p.positions = rope::multi_axis_positions(i64(b), 3, kTokens, rope::AxisSections::kContiguous, 40, -4, -4); },
       "negative entry"},
      {"SectionForMissingAxis",
       [i64](Params& p, B b) { p.positions = rope::multi_axis_positions(i64(b), 2, kTokens, rope::AxisSections::kContiguous, 8, 12, 12); },
       "past positions.axes"},
      {"SectionsMissFrequencies",
       [i64](Params& p, B b) { p.positions = rope::multi_axis_positions(i64(b), 3, kTokens, rope::AxisSections::kInterleaved, 8, 8, 8); },
       "sum to rotary_dim / 2"},
      {"NegativeAxisStride",
       [i64](Params& p, B b) { p.positions = rope::multi_axis_positions(i64(b), 3, -kTokens, rope::AxisSections::kContiguous, 8, 12, 12); },
       "axis_stride is negative"},
      {"AxisStrideOverflows64Bit",
       [i64](Params& p, B b) {
         p.positions = rope::multi_axis_positions(i64(b), 3, std::int64_t{1} << 62, rope::AxisSections::kContiguous, 8, 12, 12);
       },
       "axis_stride exceeds 64-bit offsets"},
  };
}

class InvalidArgs : public ::testing::TestWithParam<BadArgument> {};

TEST_P(InvalidArgs, RejectedBeforeLaunchAndNothingWritten) {
  Buffers b;
  const std::vector<float> y_before = b.y_contents();
  Params p = b.valid();
  ASSERT_TRUE(rope::validate(p).ok()) << rope::validate(p).message;
  GetParam().spoil(p, b);

  const rope::Status status = rope::validate(p);
  EXPECT_EQ(status.error, cudaErrorInvalidValue);
  EXPECT_NE(std::string(status.message).find(GetParam().reason), std::string::npos) << status.message;

  EXPECT_EQ(rope::rope_forward(p), cudaErrorInvalidValue);
  EXPECT_NE(std::string(rope::last_error_message()).find(GetParam().reason), std::string::npos)
      << rope::last_error_message();
  EXPECT_EQ(rope::rope_backward(p), cudaErrorInvalidValue);
  EXPECT_STREQ(rope::last_error_message(), status.message);
  if (rope_test::gpu_available()) ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> y_after = b.y_contents();
  EXPECT_EQ(std::memcmp(y_before.data(), y_after.data(), y_before.size() * sizeof(float)), 0)
      << "a rejected launch wrote to y";
}

INSTANTIATE_TEST_SUITE_P(Launcher, InvalidArgs, ::testing::ValuesIn(bad_arguments()),
                         [](const ::testing::TestParamInfo<BadArgument>& info) { return std::string(info.param.name); });

TEST(InvalidArgsSimple, ConvenienceLauncherValidatesToo) {
  float* null = nullptr;
  EXPECT_EQ(rope::rope_forward<float>(null, null, null, null, 4, 64), cudaErrorInvalidValue);
  EXPECT_STREQ(rope::last_error_message(), "q.x is null");
  float dummy[4];
  EXPECT_EQ(rope::rope_forward<float>(dummy, dummy, dummy, dummy, 4, 7), cudaErrorInvalidValue);
  EXPECT_STREQ(rope::last_error_message(), "head_dim must be even");
}

// In place with one token: the token stride is never used, so x and y may carry different ones
// (frameworks give size-1 dimensions arbitrary strides). Only validation is checked here.
TEST(InvalidArgsSimple, SizeOneDimensionsIgnoreTheirStrides) {
  Buffers b;
  Params p = b.valid();
  p.num_tokens = 1;
  p.q.x = b.x();
  p.q.y = b.x();
  p.q.y_token_stride = p.q.x_token_stride + 7;
  EXPECT_TRUE(rope::validate(p).ok()) << rope::validate(p).message;
  p.num_tokens = 2;  // now the stride matters
  EXPECT_FALSE(rope::validate(p).ok());
}

// Layouts that share memory legitimately are accepted (validation only: nothing is launched,
// so host vectors stand in for device buffers).
TEST(ValidArgs, SharedBuffersWithoutSharedElements) {
  std::vector<float> buf(4 * kTokens * 4 * kDim), out(buf.size()), table(kTokens * kDim);
  float* x = buf.data();
  auto accepted = [](const Params& p) {
    const rope::Status s = rope::validate(p);
    return s.ok() ? ::testing::AssertionSuccess() : ::testing::AssertionFailure() << s.message;
  };
  Params p;
  p.num_tokens = kTokens;
  p.head_dim = kDim;
  p.cos_sin = rope::fused_cos_sin_cache<float>(table.data(), kTokens, kDim);  // never read by validate

  // Fused QKV [T, 3 + 1 + 1, D] in place: q heads 0-2, k head 3 (v untouched).
  p.q = rope::strided_heads<float>(x, x, 3, 5 * kDim, kDim);
  p.k = rope::strided_heads<float>(x + 3 * kDim, x + 3 * kDim, 1, 5 * kDim, kDim);
  EXPECT_TRUE(accepted(p));
  // MQA: one k head; its head stride is never used and may be anything.
  p.k.x_head_stride = p.k.y_head_stride = 12345;
  EXPECT_TRUE(accepted(p));
  // A gap of heads between q and k (k after v).
  p.q = rope::strided_heads<float>(x, x, 2, 4 * kDim, kDim);
  p.k = rope::strided_heads<float>(x + 3 * kDim, x + 3 * kDim, 1, 4 * kDim, kDim);
  EXPECT_TRUE(accepted(p));
  // k before q in the buffer.
  p.q = rope::strided_heads<float>(x + 2 * kDim, x + 2 * kDim, 2, 4 * kDim, kDim);
  p.k = rope::strided_heads<float>(x, x, 2, 4 * kDim, kDim);
  EXPECT_TRUE(accepted(p));
  // Head-major [heads, tokens, D]: q is head 0, k heads 1-2.
  p.q = rope::strided_heads<float>(x, x, 1, kDim, kTokens * kDim);
  p.k = rope::strided_heads<float>(x + kTokens * kDim, x + kTokens * kDim, 2, kDim, kTokens * kDim);
  EXPECT_TRUE(accepted(p));
  // GPT-NeoX's per-head interleaving [T, H, 3D] (q, k, v of a head side by side), in place.
  p.q = rope::strided_heads<float>(x, x, 2, 6 * kDim, 3 * kDim);
  p.k = rope::strided_heads<float>(x + kDim, x + kDim, 2, 6 * kDim, 3 * kDim);
  EXPECT_TRUE(accepted(p));
  p.k = rope::strided_heads<float>(x + 2 * kDim, x + 2 * kDim, 2, 6 * kDim, 3 * kDim);  // k in v's place
  EXPECT_TRUE(accepted(p));
  // q in place in a fused buffer while k reads one head of it broadcast (head stride 0) into a
  // dense output elsewhere.
  p.q = rope::strided_heads<float>(x, x, 2, 3 * kDim, kDim);
  p.k = rope::HeadsTensor<float>{x + 2 * kDim, out.data(), 4, 3 * kDim, 0, 4 * kDim, kDim};
  EXPECT_TRUE(accepted(p));
  // q and k read one input (both only read it) and write separate outputs.
  p.q = rope::HeadsTensor<float>{x, out.data(), 2, 2 * kDim, kDim, 2 * kDim, kDim};
  p.k = rope::HeadsTensor<float>{x, out.data() + 2 * kTokens * kDim, 2, 2 * kDim, kDim, 2 * kDim, kDim};
  EXPECT_TRUE(accepted(p));
  // A broadcast input: one k head read as 4 (head stride 0), written out of place to 4 heads.
  p.q = rope::packed_heads<float>(x, x, 2, kDim);
  p.k = rope::HeadsTensor<float>{x + 2 * kTokens * kDim, out.data(), 4, kDim, 0, 4 * kDim, kDim};
  EXPECT_TRUE(accepted(p));
  // A flag and positions right after the outputs' last element, and a flag in a buffer of its own.
  p.q = rope::packed_heads<float>(x, out.data(), 2, kDim);
  p.k = rope::packed_heads<float>(x + 2 * kTokens * kDim, out.data() + 2 * kTokens * kDim, 1, kDim);
  p.positions = rope::positions(reinterpret_cast<const std::int64_t*>(out.data() + 3 * kTokens * kDim));
  p.out_of_range_flag = reinterpret_cast<int*>(out.data() + 3 * kTokens * kDim + 2 * kTokens);
  EXPECT_TRUE(accepted(p));
  p.positions = rope::Positions{};
  p.out_of_range_flag = reinterpret_cast<int*>(x + 3 * kTokens * kDim);
  EXPECT_TRUE(accepted(p));
  p.out_of_range_flag = nullptr;
  // ... but a broadcast output is rejected: its rows would be written twice.
  p.k = rope::HeadsTensor<float>{out.data(), out.data() + 4 * kTokens * kDim, 4, 4 * kDim, kDim, kDim, 0};
  EXPECT_FALSE(rope::validate(p).ok());
}

// A k-only (or q-only) launch checks the one tensor it has like any other: its own arguments
// are still rejected, and the absent tensor's pointers must stay null.
TEST(InvalidArgsSimple, KOnlyLaunchChecksK) {
  Buffers b;
  Params p = b.valid();
  p.k = p.q;
  p.q = rope::HeadsTensor<float>{};
  EXPECT_TRUE(rope::validate(p).ok()) << rope::validate(p).message;
  p.k.y = nullptr;
  EXPECT_STREQ(rope::validate(p).message, "k.y is null");
  p.k.y = b.y();
  p.k.y_head_stride = 1;
  EXPECT_STREQ(rope::validate(p).message, "k.y strides make output rows overlap (rows of the output must be disjoint)");
  p.k.y_head_stride = kDim;
  p.q.y = b.y();
  EXPECT_STREQ(rope::validate(p).message, "q pointers are set but q.num_heads is 0");
}

TEST(InvalidArgsSimple, ZeroTokensSucceedWithoutLaunching) {
  // Empty tensors may carry null pointers (as frameworks give them): no launch, success.
  Params p;
  p.num_tokens = 0;
  p.head_dim = 128;
  p.q.num_heads = 4;
  p.cos_sin.row_stride = 64;
  EXPECT_EQ(rope::rope_forward(p), cudaSuccess);
  EXPECT_STREQ(rope::last_error_message(), "ok");
  // ... but the configuration itself is still checked.
  p.head_dim = 3;
  EXPECT_EQ(rope::rope_forward(p), cudaErrorInvalidValue);
}

}  // namespace
