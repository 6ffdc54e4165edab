// SPDX-License-Identifier: MIT
// The per-token body run on the host through the launcher's own dispatch: what CI executes.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "case_tests.hpp"
#include "rounding_values.hpp"

template <typename T>
class HostBody : public ::testing::Test {};
ROPE_DEFINE_CASE_TESTS(HostBody, ::rope_test::Backend::kHost, (void)0)

namespace {

using rope_test::Backend;
using rope_test::Case;
using rope_test::CaseConfig;

/// cos and sin of angles drawn uniformly from [-3, 3), one per element of the (equally sized)
/// tables: the per-token tables of the hand-written host tests below.
template <typename Rng>
void fill_random_angles(Rng& rng, std::uniform_real_distribution<float>& u, std::vector<float>& cos,
                        std::vector<float>& sin) {
  for (std::size_t i = 0; i < cos.size(); ++i) {
    const double a = 3.0 * u(rng);
    cos[i] = static_cast<float>(std::cos(a));
    sin[i] = static_cast<float>(std::sin(a));
  }
}

// Other splits of a token across lanes than the launcher picks: fewer lanes than columns
// (each walks several), counts that leave lanes idle, more lanes than work.
TEST(HostBodyLanes, AnyLaneCountCoversEveryElement) {
  for (int lanes : {1, 2, 3, 7, 31, 64, 1000}) {
    for (int d : {6, 64, 128, 136}) {
      CaseConfig c;
      c.head_dim = d;
      c.q_heads = 5;
      c.k_heads = 2;
      c.rotary_dim = d == 136 ? 40 : 0;
      c.tokens = 3;
      c.lanes = lanes;
      Case<__nv_bfloat16> bf(c, lanes * 1000 + d);
      EXPECT_TRUE(bf.run(Backend::kHost));
      Case<float> f32(c, lanes * 1000 + d + 1);
      EXPECT_TRUE(f32.run(Backend::kHost));
    }
  }
}

// Rotated pairs are rounded two at a time (Fragment::set_pair): the paired conversion must give
// each element the bits that rounding it alone gives (rounding_test_values: sampled floats, bf16
// and fp16 ties, subnormals, values past the type's range, infinities, NaN), in either position
// of the pair and at every even index of a fragment of several vectors. This runs the host's
// conversions; GpuSimple.PairedRoundingMatchesSingleRoundingBitForBit runs the GPU's.
template <typename T, int N, int kChunk>
void expect_paired_rounding_matches_single() {
  const std::vector<float> values = rope_test::rounding_test_values(123, 200000);
  rope::detail::Fragment<T, N, kChunk> paired, single;
  for (std::size_t v = 0; v + 1 < values.size(); ++v) {
    const int i = static_cast<int>(2 * (v % (N / 2)));
    paired.set_pair(i, values[v], values[v + 1]);
    single.set(i, values[v]);
    single.set(i + 1, values[v + 1]);
    ASSERT_EQ(std::memcmp(&paired.vec[i / kChunk].elem[i % kChunk], &single.vec[i / kChunk].elem[i % kChunk], 2 * sizeof(T)), 0)
        << "values " << values[v] << ", " << values[v + 1] << " at " << i;
  }
}

TEST(HostBodyVectors, PairedRoundingGivesEachElementItsOwnRounding) {
  expect_paired_rounding_matches_single<__nv_bfloat16, 16, 8>();  // two 16-byte vectors
  expect_paired_rounding_matches_single<__half, 16, 8>();
  expect_paired_rounding_matches_single<__nv_bfloat16, 8, 2>();   // four 4-byte vectors
  expect_paired_rounding_matches_single<float, 8, 4>();
}

// The dispatch takes 16-byte accesses whenever alignment allows, and falls back otherwise;
// tokens with at most two heads take two 16-byte vectors per half.
TEST(HostBodyDivisor, QuotientsAndRemaindersAreTheOperators) {
  // Powers of two take the shift and mask, other counts the division; both must agree with / and %.
  for (int d = 1; d <= 300; ++d) {
    const rope::detail::Divisor divisor(d);
    EXPECT_EQ(divisor.shift >= 0, (d & (d - 1)) == 0) << d;
    for (int x = 0; x < 4096; x += 7) {
      ASSERT_EQ(divisor.quotient(x), x / d) << x << " / " << d;
      ASSERT_EQ(divisor.remainder(x), x % d) << x << " % " << d;
    }
    const std::int64_t big = (std::int64_t{1} << 40) + 12345;  // slots past 32 bits
    ASSERT_EQ(divisor.quotient(big), big / d) << d;
    ASSERT_EQ(divisor.remainder(big), big % d) << d;
    // 32-bit indices up to INT_MAX.
    for (int x = std::numeric_limits<int>::max(); x > std::numeric_limits<int>::max() - 5000; --x) {
      ASSERT_EQ(divisor.quotient(x), x / d) << x << " / " << d;
      ASSERT_EQ(divisor.remainder(x), x % d) << x << " % " << d;
    }
    for (int x = 1; x > 0 && x < std::numeric_limits<int>::max() / 3; x = x * 3 + 1) {
      ASSERT_EQ(divisor.quotient(x), x / d) << x << " / " << d;
      ASSERT_EQ(divisor.quotient(x + d - 1), (x + d - 1) / d) << x << " / " << d;
    }
  }
  // Divisors as large as an int allows, and one past each power of two.
  constexpr int kMax = std::numeric_limits<int>::max();
  for (const int d : {kMax, (1 << 30) + 1, 16383, 16385, 65537, 1000003}) {
    const rope::detail::Divisor divisor(d);
    const int past_d = d < kMax ? d + 1 : d;  // d + 1 would overflow at INT_MAX
    for (const int x : {0, 1, d - 1, d, past_d, kMax - 1, kMax}) {
      ASSERT_EQ(divisor.quotient(x), x / d) << x << " / " << d;
      ASSERT_EQ(divisor.remainder(x), x % d) << x << " % " << d;
    }
  }
}

TEST(HostBodyDispatch, PicksWidestAlignedAccess) {
  struct Want { int head_dim, misalign, head_pad, heads; int vec_f32, vec_bf16; };
  const Want wants[] = {
      {128, 0, 0, 3, 4, 8},    // aligned: 16 bytes
      {128, 0, 0, 1, 8, 16},   // one head: two 16-byte vectors per half
      {128, 0, 0, 2, 8, 16},   // two heads: likewise
      {128, 4, 0, 1, 8, 4},    // one head, 16 bytes off (f32: still double) / 8 bytes off (bf16: 4)
      {128, 2, 0, 3, 2, 1},    // 2 elements off: f32 is 8-byte aligned (2), bf16 only 4-byte (scalar)
      {128, 4, 0, 3, 4, 4},    // 4 elements off: f32 16-byte aligned, bf16 8-byte (4)
      {128, 1, 0, 3, 1, 1},    // odd element offset: scalar
      {72, 0, 0, 3, 4, 4},     // halves of 36: f32 takes 4, bf16 falls to 4 (36 % 8 != 0)
      {6, 0, 0, 3, 1, 1},      // halves of 3: scalar
      {128, 0, 4, 3, 4, 4},    // head stride 132: f32 keeps 4, bf16 needs 8 | 132 -> 4
  };
  for (const Want& w : wants) {
    CaseConfig c;
    c.head_dim = w.head_dim;
    c.misalign = w.misalign;
    c.head_pad = w.head_pad;
    c.q_heads = w.heads;
    c.tokens = 2;
    Case<float> f32(c, 1);
    ASSERT_TRUE(f32.run(Backend::kHost));
    EXPECT_EQ(f32.vec_used(), w.vec_f32) << c.describe();
    Case<__nv_bfloat16> bf(c, 2);
    ASSERT_TRUE(bf.run(Backend::kHost));
    EXPECT_EQ(bf.vec_used(), w.vec_bf16) << c.describe();
  }
}

// Launch shapes stay within the kernel's launch bounds and give every token all its columns.
// Appends and norm launches too, few tokens (the spread shape) and more; norm launches give a
// head a power-of-two group of lanes.
TEST(HostBodyDispatch, LaunchShapeIsValid) {
  using rope::detail::LaunchKind;
  for (int d : {2, 64, 128, 256, 4096}) {
    for (int heads : {1, 3, 33, 40, 128, 200, 4096}) {
      rope::RopeParams<float> p;
      p.head_dim = d;
      p.q.num_heads = heads;
      for (int vec : {1, 2, 4, 8}) {
        if ((d / 2) % vec != 0) continue;
        for (int batch : {1, 4}) {
          for (LaunchKind kind : {LaunchKind::kPlain, LaunchKind::kAppend, LaunchKind::kNorm}) {
            for (std::int64_t tokens : {std::int64_t{1}, rope::detail::kSpreadHeadsMaxTokens,
                                        rope::detail::kSpreadHeadsMaxTokens + 1, std::int64_t{100000}}) {
              using Policy = rope::detail::DefaultPolicy;
              p.num_tokens = tokens;
              const auto s = rope::detail::choose_launch_shape<Policy>(p, vec, batch, kind);
              const std::string what = std::to_string(d) + " " + std::to_string(heads) + " " + std::to_string(vec) +
                                       " kind " + std::to_string(static_cast<int>(kind)) + " T " + std::to_string(tokens);
              EXPECT_GE(s.lanes_per_token, 1) << what;
              EXPECT_GE(s.tokens_per_block, 1) << what;
              EXPECT_LE(s.lanes_per_token * s.tokens_per_block, Policy::kMaxBlockThreads) << what;
              const int columns = d / 2 / vec;
              const int width = kind == LaunchKind::kNorm ? rope::detail::norm_group_width(columns) : columns;
              if (width <= Policy::kMaxBlockThreads) EXPECT_EQ(s.lanes_per_token % width, 0) << what;
            }
          }
        }
      }
    }
  }
}

// Few tokens take smaller blocks so the launch covers more SMs; many tokens keep full blocks.
TEST(HostBodyDispatch, FewTokensTakeSmallerBlocks) {
  using Policy = rope::detail::DefaultPolicy;
  auto shape = [](std::int64_t tokens, int heads) {
    rope::RopeParams<float> p;
    p.head_dim = 128;
    p.q.num_heads = heads;
    p.num_tokens = tokens;
    return rope::detail::choose_launch_shape<Policy>(p, 4, 4);
  };
  auto blocks = [](std::int64_t tokens, rope::detail::LaunchShape s) {
    return (tokens + s.tokens_per_block - 1) / s.tokens_per_block;
  };
  // One head: 16 lanes a token. 2048 tokens: 64-thread blocks, 512 of them (16 tokens a block
  // would be 128 blocks).
  const auto small = shape(2048, 1);
  EXPECT_EQ(small.lanes_per_token * small.tokens_per_block, 64);
  EXPECT_EQ(blocks(2048, small), 512);
  // Enough tokens for 1056 full blocks: unchanged.
  const auto large = shape(1 << 20, 1);
  EXPECT_EQ(large.lanes_per_token * large.tokens_per_block, Policy::kMaxBlockThreads);
  // The seed's sweep at N = 10240 (the double width: 8 lanes a token): 320 full blocks halve to
  // 1280 of 64 threads (8 per H200 SM); with a table gathered by position they stop at 640, 4 per SM.
  rope::RopeParams<float> seed;
  seed.head_dim = 128;
  seed.q.num_heads = 1;
  seed.num_tokens = 10240;
  const rope::detail::LaunchShape by_token = rope::detail::choose_launch_shape<Policy>(seed, 8, 1);
  EXPECT_EQ(by_token.lanes_per_token, 8);
  EXPECT_EQ(blocks(10240, by_token), 1280);
  const std::int64_t positions[1] = {0};
  const float table[128] = {1.0f};
  seed.cos_sin = rope::cos_sin_table(table, table + 64, 1, 64);
  seed.positions = rope::positions(positions);
  EXPECT_EQ(blocks(10240, rope::detail::choose_launch_shape<Policy>(seed, 8, 1)), 640);
  // Decode, 40 heads: 80 lanes, one token a block.
  EXPECT_EQ(shape(1, 40).tokens_per_block, 1);
  EXPECT_EQ(shape(64, 40).tokens_per_block, 1);
  EXPECT_EQ(shape(1 << 16, 40).tokens_per_block, Policy::kMaxBlockThreads / shape(1 << 16, 40).lanes_per_token);
}

// Which launches walk tokens with a grid capped at the resident blocks: table mode with positions
// and no partial-rotary tail, from kResidentMultiple times the resident blocks on.
TEST(HostBodyDispatch, OnlyLargeTableLaunchesWithPositionsWalkTokens) {
  using rope::detail::grid_blocks;
  const std::int64_t positions[1] = {0};
  const float table[2] = {1.0f, 0.0f}, inv_freq[1] = {1.0f};
  rope::RopeParams<__nv_bfloat16> p;
  p.head_dim = 128;
  p.cos_sin = rope::cos_sin_table(table, table + 1, 1, 64);
  p.positions = rope::positions(positions);
  const std::int64_t resident = 264;
  // Llama T = 16384: 21 rounds fit in 261 blocks, 3 fewer than resident (at most 264 / 32 = 8).
  EXPECT_EQ(grid_blocks(p, 5462, resident), 261);
  EXPECT_EQ(grid_blocks(p, 21846, resident), resident);                                 // T = 65536: 83 rounds need all
  EXPECT_EQ(grid_blocks(p, rope::detail::kResidentMultiple * resident, resident), resident);
  EXPECT_EQ(grid_blocks(p, rope::detail::kResidentMultiple * resident - 1, resident),
            rope::detail::kResidentMultiple * resident - 1);
  EXPECT_EQ(grid_blocks(p, 1366, resident), resident);  // T = 4096: six rounds fit in 228, too many fewer
  // Every walking grid keeps its rounds: it is the smallest grid with those rounds (one block
  // fewer would add a round) where that gives up at most 1/32 of the resident blocks, and every
  // resident block where it would give up more.
  using rope::detail::ceil_div;
  const std::int64_t fewest = resident - resident / rope::detail::kBalancingGiveUpDivisor;
  int balanced_grids = 0;
  for (std::int64_t blocks = rope::detail::kResidentMultiple * resident; blocks < 40 * resident; blocks += 7) {
    const std::int64_t grid = grid_blocks(p, blocks, resident), rounds = ceil_div(blocks, resident);
    const std::int64_t smallest = ceil_div(blocks, rounds);
    ASSERT_EQ(ceil_div(blocks, smallest), rounds) << blocks;
    ASSERT_GT(ceil_div(blocks, smallest - 1), rounds) << blocks;
    ASSERT_EQ(grid, smallest >= fewest ? smallest : resident) << blocks;
    balanced_grids += grid < resident;
  }
  EXPECT_GT(balanced_grids, 0);
  EXPECT_EQ(grid_blocks(p, 512, resident), 512);                                        // T = 512: too few
  EXPECT_EQ(grid_blocks(p, 5462, 0), 5462);                                             // occupancy unknown
  p.rotary_dim = 64;                                                                    // a tail to copy
  EXPECT_EQ(grid_blocks(p, 5462, resident), 5462);
  p.rotary_dim = 0;
  p.positions = rope::Positions{};                                                      // rows by token index
  EXPECT_EQ(grid_blocks(p, 5462, resident), 5462);
  p.positions = rope::positions(positions);
  p.cos_sin = rope::computed_cos_sin(inv_freq);                                         // no table to gather
  EXPECT_EQ(grid_blocks(p, 5462, resident), 5462);
  // The instances that walk: not the per-pair multi-axis ones, nor multi-axis appends and norms.
  using rope::detail::AxisLookup;
  using Bf16Append = rope::detail::CacheAppend<__nv_bfloat16, __nv_bfloat16>;
  EXPECT_TRUE((rope::detail::kWalksTokens<AxisLookup::kSingleAxis, rope::detail::NoAppend, rope::detail::NoNorm>));
  EXPECT_TRUE((rope::detail::kWalksTokens<AxisLookup::kSingleAxis, Bf16Append, rope::detail::NoNorm>));
  EXPECT_TRUE((rope::detail::kWalksTokens<AxisLookup::kPerColumn, rope::detail::NoAppend, rope::detail::NoNorm>));
  EXPECT_FALSE((rope::detail::kWalksTokens<AxisLookup::kPerColumn, Bf16Append, rope::detail::NoNorm>));
  EXPECT_FALSE((rope::detail::kWalksTokens<AxisLookup::kPerPair, rope::detail::NoAppend, rope::detail::NoNorm>));
  EXPECT_TRUE((rope::detail::kWalksTokens<AxisLookup::kSingleAxis, rope::detail::NoAppend, rope::detail::RmsNorm<float>>));
  EXPECT_FALSE((rope::detail::kWalksTokens<AxisLookup::kPerColumn, rope::detail::NoAppend, rope::detail::RmsNorm<float>>));
}

// Which instances stage each next token in shared memory (detail/device/staging.cuh): the norm
// instances that walk, and not their scalar path of 2-byte accesses, which cp.async cannot copy.
TEST(HostBodyStaging, OnlyWalkingNormInstancesStage) {
  using namespace rope::detail;
  using rope::Style;
  using Bf16 = __nv_bfloat16;
  EXPECT_TRUE((kStagesTokens<Bf16, Style::kHalfSplit, 8, AxisLookup::kSingleAxis, NoAppend, RmsNorm<Bf16>>));
  EXPECT_TRUE((kStagesTokens<float, Style::kInterleaved, 2, AxisLookup::kSingleAxis, NoAppend, RmsNorm<float>>));
  EXPECT_FALSE((kStagesTokens<Bf16, Style::kHalfSplit, 1, AxisLookup::kSingleAxis, NoAppend, RmsNorm<Bf16>>));
  EXPECT_FALSE((kStagesTokens<Bf16, Style::kHalfSplit, 8, AxisLookup::kPerColumn, NoAppend, RmsNorm<Bf16>>));
  EXPECT_FALSE((kStagesTokens<Bf16, Style::kHalfSplit, 8, AxisLookup::kSingleAxis, NoAppend, NoNorm>));
  EXPECT_FALSE((kStagesTokens<Bf16, Style::kHalfSplit, 8, AxisLookup::kSingleAxis, CacheAppend<Bf16, Bf16>, NoNorm>));
  // Two sets of slots, 16 bytes each, per lane: 61,440 bytes for the Qwen3 norm launch's 240 threads.
  EXPECT_EQ(stage_bytes(240, kStageLaneSlots<Bf16, Style::kHalfSplit, 8, 4>), 61440);
}

// Lanes of one block stage chunks of successive tokens into one buffer, set by set, as the
// staged walk does: each lane reads back exactly the chunks it staged a token earlier (no lane's
// slots overlap another's, and a set is not overwritten while it holds a token).
TEST(HostBodyStaging, LanesReadBackTheirOwnChunksATokenLater) {
  using namespace rope::detail;
  using Bf16 = __nv_bfloat16;
  using Chunk = PairChunk<Bf16, rope::Style::kHalfSplit, 8>;  // 8 pairs: two 16-byte accesses per head
  constexpr int kLanes = 3, kBatch = 2, kTokens = 5, kHead = 16, kLaneSlots = kBatch * Chunk::kVectors;
  // Head b of lane l at token t: 16 distinct values.
  std::vector<Packed<Bf16, 8>> heads(static_cast<std::size_t>(kTokens) * kLanes * kBatch * 2);
  auto head = [&](int t, int l, int b) { return heads[static_cast<std::size_t>(((t * kLanes + l) * kBatch + b) * 2)].elem; };
  for (int t = 0; t < kTokens; ++t)
    for (int l = 0; l < kLanes; ++l)
      for (int b = 0; b < kBatch; ++b)
        for (int i = 0; i < kHead; ++i) head(t, l, b)[i] = __float2bfloat16(static_cast<float>(((t * 8 + l) * 4 + b) * 16 + i));
  std::vector<Packed<unsigned char, 16>> slots(static_cast<std::size_t>(stage_bytes(kLanes, kLaneSlots)) / 16);
  SharedStage stage[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    stage[l] = make_shared_stage(reinterpret_cast<unsigned char*>(slots.data()), l, kLanes, kLaneSlots);
  }
  for (int t = 0; t < kTokens; ++t) {
    // Every lane stages token t + 1, then reads back token t (staged in the other set).
    for (int l = 0; l < kLanes; ++l) {
      if (t + 1 < kTokens) {
        for (int b = 0; b < kBatch; ++b) Chunk::stage(stage[l], b * Chunk::kVectors, head(t + 1, l, b), 8, 0);
      }
    }
    for (int l = 0; l < kLanes; ++l) {
      if (t > 0) {
        for (int b = 0; b < kBatch; ++b) {
          Chunk staged, loaded;
          staged.unstage(stage[l], b * Chunk::kVectors);
          loaded.load(head(t, l, b), 8, 0);
          EXPECT_EQ(std::memcmp(&staged, &loaded, sizeof(Chunk)), 0) << "token " << t << " lane " << l << " head " << b;
        }
      }
      stage[l].current_set ^= 1;
    }
  }
}

// Plain multi-axis table launches of many tokens whose columns each lie in one section give each
// lane two batches of heads that share its column's cos/sin, as computed mode does; appends, norm
// launches, few tokens and (below) large one-axis tables keep one batch per lane.
TEST(HostBodyDispatch, GatheredAxesShareTheirCosSin) {
  using rope::detail::LaunchKind;
  using Policy = rope::detail::DefaultPolicy;
  static const std::int64_t kPositions[3 * 1024] = {};
  float table[128] = {};
  rope::RopeParams<__nv_bfloat16> p;
  p.num_tokens = 1024;
  p.head_dim = 128;
  p.q.num_heads = 28;
  p.k.num_heads = 4;
  p.cos_sin = rope::cos_sin_table<float>(table, table + 64, 1, 64);
  p.positions = rope::multi_axis_positions(kPositions, 3, 1024, rope::AxisSections::kContiguous, 16, 24, 24);
  auto lanes = [&](LaunchKind kind) { return rope::detail::choose_launch_shape<Policy>(p, 8, 4, kind).lanes_per_token; };
  EXPECT_EQ(lanes(LaunchKind::kPlain), 8 * 4);  // 8 columns x 4 groups of 8 heads
  EXPECT_EQ(lanes(LaunchKind::kAppend), 8 * 8);
  p.num_tokens = 1023;
  EXPECT_EQ(lanes(LaunchKind::kPlain), 8 * 8);
  p.num_tokens = 1024;
  p.positions = rope::multi_axis_positions(kPositions, 3, 1024, rope::AxisSections::kInterleaved, 24, 20, 20);
  EXPECT_EQ(lanes(LaunchKind::kPlain), 8 * 8) << "per-pair lookups (interleaved sections) were not measured";
  p.positions = rope::positions(kPositions);
  p.num_tokens = 1 << 16;
  EXPECT_EQ(lanes(LaunchKind::kPlain), 8 * 8) << "large one-axis tables keep one batch per lane";
  p.cos_sin = rope::computed_cos_sin(table);
  EXPECT_EQ(lanes(LaunchKind::kPlain), 8 * 4) << "computed mode shares its sincos";
}

/// Llama-3-8B's heads (32 q, 8 k, 128 dims) with positions into a one-row fp32 table: the launch
/// shape tests' params (choose_launch_shape reads no data, so the pointers are placeholders).
rope::RopeParams<__nv_bfloat16> llama_table_launch() {
  static const std::int64_t kPositions[1] = {};
  static const float kTable[128] = {};
  rope::RopeParams<__nv_bfloat16> p;
  p.head_dim = 128;
  p.q.num_heads = 32;
  p.k.num_heads = 8;
  p.cos_sin = rope::cos_sin_table<float>(kTable, kTable + 64, 1, 64);
  p.positions = rope::positions(kPositions);
  return p;
}

// Plain one-axis table launches with positions give each lane two batches of heads only while
// that launch has fewer than kQueryBlocks blocks, so that none of its rows walks; larger ones,
// launches with a partial-rotary tail and appends keep one batch. Llama-3-8B: 40 heads, 8 columns.
TEST(HostBodyDispatch, OneAxisTablesShareCosSinWhileTheirRowsTakeOneToken) {
  using rope::detail::LaunchKind;
  using rope::detail::LaunchShape;
  using Policy = rope::detail::DefaultPolicy;
  rope::RopeParams<__nv_bfloat16> p = llama_table_launch();
  auto shape = [&](std::int64_t tokens, LaunchKind kind = LaunchKind::kPlain) {
    p.num_tokens = tokens;
    return rope::detail::choose_launch_shape<Policy>(p, 8, 4, kind);
  };
  auto blocks = [](std::int64_t tokens, LaunchShape s) { return (tokens + s.tokens_per_block - 1) / s.tokens_per_block; };
  // T = 4096: 5 groups of 8 heads, 6 tokens a block, 683 blocks.
  EXPECT_EQ(shape(4096).lanes_per_token, 8 * 5);
  EXPECT_EQ(shape(4096).tokens_per_block, 6);
  EXPECT_EQ(blocks(4096, shape(4096)), 683);
  // T = 2048: 342 such blocks halve to 683 of 3 tokens (below 4 blocks per SM with gathered rows).
  EXPECT_EQ(shape(2048).lanes_per_token, 8 * 5);
  EXPECT_EQ(shape(2048).tokens_per_block, 3);
  // T = 3100: 517 blocks would halve to 1034, past kQueryBlocks (the launcher would cap the grid
  // and the rows would walk), so they keep 6 tokens.
  EXPECT_EQ(shape(3100).lanes_per_token, 8 * 5);
  EXPECT_EQ(shape(3100).tokens_per_block, 6);
  // The last token count whose two-batch launch stays under kQueryBlocks, and the first past it.
  const std::int64_t last = 6 * (rope::detail::kQueryBlocks - 1);
  EXPECT_EQ(blocks(last, shape(last)), rope::detail::kQueryBlocks - 1);
  EXPECT_EQ(shape(last).lanes_per_token, 8 * 5);
  EXPECT_EQ(shape(last + 1).lanes_per_token, 8 * 10);
  EXPECT_EQ(shape(16384).lanes_per_token, 8 * 10);
  // Few tokens, appends, norm launches, and a launch with a tail (which reads no positions ahead).
  EXPECT_EQ(shape(1023).lanes_per_token, 8 * 10);
  EXPECT_EQ(shape(4096, LaunchKind::kAppend).lanes_per_token, 8 * 10);
  EXPECT_EQ(shape(4096, LaunchKind::kNorm).lanes_per_token, 8 * 10);
  p.rotary_dim = 64;  // 4 columns of 8 pairs
  EXPECT_EQ(shape(4096).lanes_per_token, 4 * 10);
}

// Append and norm launches of few tokens give each lane about one head (20 groups of 2 of
// Llama-3-8B's 40 heads), up to kSpreadHeadsMaxTokens; plain launches keep their batch (few plain
// tokens take head groups instead), and so do larger appends and norm launches.
TEST(HostBodyDispatch, FewTokenAppendsAndNormsSpreadTheirHeads) {
  using rope::detail::LaunchKind;
  using Policy = rope::detail::DefaultPolicy;
  rope::RopeParams<__nv_bfloat16> p = llama_table_launch();
  auto lanes = [&](std::int64_t tokens, LaunchKind kind) {
    p.num_tokens = tokens;
    return rope::detail::choose_launch_shape<Policy>(p, 8, 4, kind).lanes_per_token;
  };
  const std::int64_t most = rope::detail::kSpreadHeadsMaxTokens;
  for (LaunchKind kind : {LaunchKind::kAppend, LaunchKind::kNorm}) {
    EXPECT_EQ(lanes(1, kind), 8 * 20);
    EXPECT_EQ(lanes(most, kind), 8 * 20);
    EXPECT_EQ(lanes(most + 1, kind), 8 * 10);
  }
  EXPECT_EQ(lanes(1, LaunchKind::kPlain), 8 * 10);
  p.q.num_heads = 3;  // three heads: one group of three with a batch, three groups spread
  p.k.num_heads = 0;
  EXPECT_EQ(lanes(1, LaunchKind::kAppend), 8 * 3);
  EXPECT_EQ(lanes(most + 1, LaunchKind::kAppend), 8);
  p.q.num_heads = 1;  // one head: nothing to spread
  EXPECT_EQ(lanes(1, LaunchKind::kAppend), 8);
}

// Every tuning policy computes the same function: the head batch only changes the order of
// loads and stores, so outputs must match the default policy's bit for bit.
TEST(HostBodyDispatch, TuningPoliciesAgree) {
  const int tokens = 5, q_heads = 7, k_heads = 3, dim = 128;
  std::mt19937 rng(static_cast<unsigned>(rope_test::base_seed()));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<__nv_bfloat16> x(tokens * (q_heads + k_heads) * dim);
  for (auto& v : x) v = __float2bfloat16(u(rng));
  std::vector<float> cos(tokens * dim / 2), sin(cos.size());
  fill_random_angles(rng, u, cos, sin);
  auto run = [&](auto policy) {
    std::vector<__nv_bfloat16> y(x.size(), __float2bfloat16(NAN));
    const std::int64_t stride = (q_heads + k_heads) * dim;
    rope::RopeParams<__nv_bfloat16> p;
    p.num_tokens = tokens;
    p.head_dim = dim;
    p.q = rope::strided_heads<__nv_bfloat16>(x.data(), y.data(), q_heads, stride, dim);
    p.k = rope::strided_heads<__nv_bfloat16>(x.data() + q_heads * dim, y.data() + q_heads * dim, k_heads, stride, dim);
    p.cos_sin = rope::cos_sin_table<float>(cos.data(), sin.data(), tokens, dim / 2);
    // The per-token body: few tokens would otherwise take head groups, which have no policy.
    EXPECT_EQ(rope_test::run_on_host<decltype(policy)>(p, false, 0, nullptr, rope_test::HostPath::kPerTokenBody),
              cudaSuccess);
    std::vector<std::uint16_t> bits(y.size());
    std::memcpy(bits.data(), y.data(), y.size() * sizeof(std::uint16_t));
    return bits;
  };
  const auto expected = run(rope::detail::DefaultPolicy{});
  for (std::uint16_t b : expected) ASSERT_NE(b & 0x7fc0, 0x7fc0) << "an output was left unwritten";
  EXPECT_EQ(run(rope::detail::RopePolicy<1>{}), expected);
  EXPECT_EQ(run(rope::detail::RopePolicy<3, 2>{}), expected);
  EXPECT_EQ(run(rope::detail::RopePolicy<8>{}), expected);
}

}  // namespace

namespace {

// Head-major views ([heads, tokens, head_dim], as after a transpose in HF attention code): the
// token stride is smaller than the head stride. Checked element by element against the formula.
TEST(HostBodyLayouts, HeadMajorStrides) {
  const int tokens = 7, heads = 3, dim = 64, half = dim / 2;
  std::mt19937 rng(static_cast<unsigned>(rope_test::base_seed()));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(heads * tokens * dim), y(x.size(), NAN), cos(tokens * half), sin(tokens * half);
  for (float& v : x) v = u(rng);
  fill_random_angles(rng, u, cos, sin);
  rope::RopeParams<float> p;
  p.num_tokens = tokens;
  p.head_dim = dim;
  p.q = rope::strided_heads<float>(x.data(), y.data(), heads, /*token_stride=*/dim, /*head_stride=*/tokens * dim);
  p.cos_sin = rope::cos_sin_table<float>(cos.data(), sin.data(), tokens, half);
  ASSERT_EQ(rope_test::run_on_host(p, false), cudaSuccess);
  for (int h = 0; h < heads; ++h) {
    for (int t = 0; t < tokens; ++t) {
      const float* xi = &x[(h * tokens + t) * dim];
      const float* yi = &y[(h * tokens + t) * dim];
      for (int i = 0; i < half; ++i) {
        const double c = cos[t * half + i], s = sin[t * half + i];
        EXPECT_NEAR(yi[i], xi[i] * c - xi[i + half] * s, 1e-6) << h << " " << t << " " << i;
        EXPECT_NEAR(yi[i + half], xi[i] * s + xi[i + half] * c, 1e-6) << h << " " << t << " " << i;
      }
    }
  }
}

}  // namespace

namespace {

// A broadcast input: one k head read as four (head stride 0, as `expand` gives), rotated out of
// place into four dense output heads; and a plain table with an attention factor applied.
TEST(HostBodyLayouts, BroadcastInputAndScaledTable) {
  const int tokens = 6, heads = 4, dim = 64, half = dim / 2;
  const float scaling = 1.2079f;
  std::mt19937 rng(static_cast<unsigned>(rope_test::base_seed()) + 7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> q(tokens * dim), k(tokens * dim), yk(tokens * heads * dim + 8, NAN);
  std::vector<float> cos(tokens * half), sin(tokens * half);
  for (float& v : q) v = u(rng);
  for (float& v : k) v = u(rng);
  fill_random_angles(rng, u, cos, sin);
  rope::RopeParams<float> p;
  p.num_tokens = tokens;
  p.head_dim = dim;
  p.q = rope::packed_heads<float>(q.data(), q.data(), 1, dim);
  p.k = rope::HeadsTensor<float>{k.data(), yk.data(), heads, dim, 0, heads * dim, dim};
  p.cos_sin = rope::cos_sin_table<float>(cos.data(), sin.data(), tokens, half, scaling);
  ASSERT_TRUE(rope::validate(p).ok()) << rope::validate(p).message;
  ASSERT_EQ(rope_test::run_on_host(p, false), cudaSuccess);
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      const float* xi = &k[t * dim];
      const float* yi = &yk[(t * heads + h) * dim];
      for (int i = 0; i < half; ++i) {
        const double c = cos[t * half + i] * double{scaling}, s = sin[t * half + i] * double{scaling};
        EXPECT_NEAR(yi[i], xi[i] * c - xi[i + half] * s, 2e-6) << t << " " << h << " " << i;
        EXPECT_NEAR(yi[i + half], xi[i] * s + xi[i + half] * c, 2e-6) << t << " " << h << " " << i;
      }
    }
  }
  for (int g = 0; g < 8; ++g) EXPECT_TRUE(std::isnan(yk[tokens * heads * dim + g])) << "guard " << g << " written";
}

}  // namespace

namespace {

using rope::detail::HeadGroupShape;

rope::RopeParams<float> head_group_params(std::int64_t tokens, int heads, int head_dim, int rotary_dim) {
  rope::RopeParams<float> p;
  p.num_tokens = tokens;
  p.head_dim = head_dim;
  p.rotary_dim = rotary_dim;
  p.q.num_heads = heads;
  return p;
}

// Which plain launches the launcher gives head groups (detail/device/head_groups.cuh): few tokens, or few
// heads in all, with one position axis; computed mode only while a token's cos/sin row fits the
// block's budget.
TEST(HostHeadGroups, WhichLaunchesTakeThem) {
  using rope::detail::kHeadGroupMaxTokens;
  using rope::detail::takes_head_groups;
  rope::RopeParams<float> p = head_group_params(1, 40, 128, 0);
  EXPECT_TRUE(takes_head_groups(p));
  p.num_tokens = kHeadGroupMaxTokens;
  EXPECT_TRUE(takes_head_groups(p));
  p.num_tokens = kHeadGroupMaxTokens + 1;
  EXPECT_FALSE(takes_head_groups(p));
  // Or few heads in all: the seed's single-head sweep up to N = kHeadGroupMaxHeads.
  using rope::detail::kHeadGroupMaxHeads;
  p.q.num_heads = 1;
  p.num_tokens = kHeadGroupMaxHeads;
  EXPECT_TRUE(takes_head_groups(p));
  p.num_tokens = kHeadGroupMaxHeads + 1;
  EXPECT_FALSE(takes_head_groups(p));
  p.q.num_heads = 3;
  p.k.num_heads = 1;
  p.num_tokens = kHeadGroupMaxHeads / 4;
  EXPECT_TRUE(takes_head_groups(p));
  p.num_tokens = kHeadGroupMaxHeads / 4 + 1;
  EXPECT_FALSE(takes_head_groups(p));
  p.k.num_heads = 0;
  p.q.num_heads = 40;
  p.num_tokens = 8;
  static const std::int32_t kPositions[3 * 8] = {};
  p.positions = rope::multi_axis_positions(kPositions, 3, 8, rope::AxisSections::kContiguous, 16, 24, 24);
  EXPECT_FALSE(takes_head_groups(p)) << "multi-axis launches keep the per-token body";
  p.positions = rope::Positions{};
  p.cos_sin.kind = rope::CosSin::Kind::kComputed;
  EXPECT_TRUE(takes_head_groups(p));
  p.head_dim = p.rotary_dim = rope::detail::kDynamicSharedBytesWithoutOptIn / 4;  // a row of exactly the budget
  EXPECT_TRUE(takes_head_groups(p));
  p.head_dim = p.rotary_dim = rope::detail::kDynamicSharedBytesWithoutOptIn / 4 + 2;
  EXPECT_FALSE(takes_head_groups(p)) << "a computed row past the shared-memory budget";
}

// Every shape fits its block and covers every head exactly once, with no empty head block; the
// Llama-3-8B decode shape is two blocks of 20 heads.
TEST(HostHeadGroups, ShapesFitTheirBlocks) {
  using rope::detail::choose_head_group_shape;
  const HeadGroupShape llama = choose_head_group_shape(head_group_params(1, 40, 128, 0), 8);
  EXPECT_EQ(llama.group_size, 8);
  EXPECT_EQ(llama.heads_per_block, 20);
  EXPECT_EQ(llama.blocks_per_token, 2);
  EXPECT_EQ(llama.tokens_per_block, 1);
  EXPECT_EQ(llama.shared_bytes, 0);
  // Head groups take at most 16 bytes per access: fp32's double width (8 pairs) becomes 4.
  using rope::detail::head_group_vec;
  static_assert(head_group_vec<float>(8) == 4 && head_group_vec<float>(4) == 4 && head_group_vec<float>(1) == 1, "");
  static_assert(head_group_vec<__nv_bfloat16>(16) == 8 && head_group_vec<__nv_bfloat16>(8) == 8, "");
  // The seed's fp32 sweep at N = 10240 (one 128-dim head, 16 lanes at 4 pairs): 16 tokens a block
  // would be 640 blocks; they halve to 1280 blocks of 128 threads. At N = 2048 the 64-thread floor
  // stops them at 512 blocks of 4 tokens.
  const HeadGroupShape seed = choose_head_group_shape(head_group_params(10240, 1, 128, 0), head_group_vec<float>(8));
  EXPECT_EQ(seed.group_size * seed.heads_per_block, 16);
  EXPECT_EQ(seed.tokens_per_block, 8);
  EXPECT_EQ(choose_head_group_shape(head_group_params(2048, 1, 128, 0), 4).tokens_per_block, 4);
  // A launch with enough blocks keeps its full ones: 4-dim heads, 64 tokens a block.
  EXPECT_EQ(choose_head_group_shape(head_group_params(1 << 20, 1, 4, 0), 2).tokens_per_block,
            rope::detail::kHeadGroupBlockTokens);
  for (const bool computed : {false, true}) {
    for (int columns = 1; columns <= 48; ++columns) {
      for (int heads = 1; heads <= 96; ++heads) {
        for (const std::int64_t tokens : {1, 3, 65, 512, 2048, 10240}) {
          rope::RopeParams<float> p = head_group_params(tokens, heads, 2 * columns, 0);
          if (computed) p.cos_sin.kind = rope::CosSin::Kind::kComputed;
          const HeadGroupShape s = choose_head_group_shape(p, 1);
          const std::string what = "columns " + std::to_string(columns) + " heads " + std::to_string(heads) +
                                   " tokens " + std::to_string(tokens) + " computed " + std::to_string(computed);
          ASSERT_EQ(s.group_size, columns < 32 ? columns : 32) << what;
          ASSERT_LE(s.group_size * s.heads_per_block * s.tokens_per_block, rope::detail::kHeadGroupBlockThreads) << what;
          ASSERT_GE(s.heads_per_block * s.blocks_per_token, heads) << what;
          ASSERT_LT((s.blocks_per_token - 1) * s.heads_per_block, heads) << what;
          ASSERT_GE(s.tokens_per_block, 1) << what;
          ASSERT_LE(s.tokens_per_block, rope::detail::kHeadGroupBlockTokens) << what;
          ASSERT_LE(s.tokens_per_block, tokens) << what;
          ASSERT_EQ(s.shared_bytes, computed ? s.tokens_per_block * 2 * columns * 4 : 0) << what;
          ASSERT_LE(s.shared_bytes, rope::detail::kDynamicSharedBytesWithoutOptIn) << what;
          ASSERT_LE(s.grid(tokens).y, 65535u) << what;
        }
      }
    }
  }
}

/// One plain launch run on the host as the launcher runs it (head groups) and through the
/// per-token body, out of place from the same inputs into outputs that start as the same NaNs:
/// every output bit and the out-of-range flag must agree.
enum class TableElements { kFloat, kTensorType };

template <typename T>
void expect_head_groups_match_per_token_body(const CaseConfig& c, TableElements table, bool inverse) {
  std::mt19937 rng(static_cast<unsigned>(rope_test::base_seed() + c.tokens * 131 + c.head_dim));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int rotary = c.rotary_dim == 0 ? c.head_dim : c.rotary_dim, half = rotary / 2;
  const std::int64_t rows = 97;
  std::vector<T> q(static_cast<std::size_t>(c.tokens) * c.q_heads * c.head_dim);
  std::vector<T> k(static_cast<std::size_t>(c.tokens) * c.k_heads * c.head_dim);
  for (T& v : q) v = static_cast<T>(u(rng));
  for (T& v : k) v = static_cast<T>(u(rng));
  std::vector<float> cos(static_cast<std::size_t>(rows) * half), sin(cos.size()), inv_freq(half);
  fill_random_angles(rng, u, cos, sin);
  std::vector<T> cos_t(cos.size()), sin_t(sin.size());
  for (std::size_t i = 0; i < cos.size(); ++i) {
    cos_t[i] = static_cast<T>(cos[i]);
    sin_t[i] = static_cast<T>(sin[i]);
  }
  for (int j = 0; j < half; ++j) inv_freq[j] = static_cast<float>(std::pow(10000.0, -2.0 * j / rotary));
  std::vector<std::int64_t> positions(static_cast<std::size_t>(c.tokens));
  for (std::size_t t = 0; t < positions.size(); ++t) positions[t] = static_cast<std::int64_t>(rng() % rows);
  if (!c.computed && c.tokens > 2) positions[1] = rows;  // outside the table: left unwritten, flag raised
  std::vector<T> outputs[2][2];
  int flags[2] = {0, 0};
  for (int run = 0; run < 2; ++run) {
    outputs[run][0].assign(q.size(), static_cast<T>(NAN));
    outputs[run][1].assign(k.size(), static_cast<T>(NAN));
    rope::RopeParams<T> p;
    p.num_tokens = c.tokens;
    p.head_dim = c.head_dim;
    p.rotary_dim = c.rotary_dim;
    p.style = c.style;
    p.q = rope::packed_heads<T>(q.data(), outputs[run][0].data(), c.q_heads, c.head_dim);
    if (c.k_heads > 0) p.k = rope::packed_heads<T>(k.data(), outputs[run][1].data(), c.k_heads, c.head_dim);
    if (c.computed) {
      p.cos_sin = rope::computed_cos_sin(inv_freq.data(), c.attention_scaling);
    } else if (table == TableElements::kFloat) {
      p.cos_sin = rope::cos_sin_table<float>(cos.data(), sin.data(), rows, half, c.attention_scaling);
    } else {
      p.cos_sin = rope::cos_sin_table<T>(cos_t.data(), sin_t.data(), rows, half, c.attention_scaling);
    }
    p.positions = rope::positions(positions.data());
    p.out_of_range_flag = &flags[run];
    ASSERT_TRUE(rope::detail::takes_head_groups(p));
    ASSERT_EQ(rope_test::run_on_host(p, inverse, 0, nullptr,
                                     run == 0 ? rope_test::HostPath::kAsLaunched : rope_test::HostPath::kPerTokenBody),
              cudaSuccess)
        << rope::last_error_message();
  }
  for (int tensor = 0; tensor < 2; ++tensor) {
    ASSERT_EQ(std::memcmp(outputs[0][tensor].data(), outputs[1][tensor].data(), outputs[0][tensor].size() * sizeof(T)), 0)
        << c.describe() << " inverse=" << inverse << " tensor " << tensor;
  }
  EXPECT_EQ(flags[0], flags[1]) << c.describe();
  EXPECT_EQ(flags[0], !c.computed && c.tokens > 2 ? 1 : 0) << c.describe();
}

template <typename T>
void expect_head_groups_match_for_type() {
  for (const rope::Style style : {rope::Style::kHalfSplit, rope::Style::kInterleaved}) {
    for (const bool computed : {false, true}) {
      for (const TableElements table : {TableElements::kFloat, TableElements::kTensorType}) {
        if ((computed || std::is_same<T, float>::value) && table == TableElements::kTensorType) continue;
        // Llama-like GQA; partial rotary with a tail (copied out of place); one head (several
        // tokens per block); a 2-pair head (the narrowest accesses) and 130 tokens of it (blocks of
        // at most 64 tokens, the last one partly empty); a head wider than a warp's columns.
        const int shapes[][5] = {{5, 32, 8, 128, 0}, {3, 4, 1, 192, 64}, {9, 1, 0, 128, 0},
                                 {4, 3, 2, 4, 0},    {130, 1, 0, 4, 0},  {2, 2, 1, 1024, 768}};
        for (const auto& s : shapes) {
          CaseConfig c;
          c.tokens = s[0];
          c.q_heads = s[1];
          c.k_heads = s[2];
          c.head_dim = s[3];
          c.rotary_dim = s[4];
          c.style = style;
          c.computed = computed;
          c.attention_scaling = computed ? 0.75f : 1.0f;
          for (const bool inverse : {false, true}) expect_head_groups_match_per_token_body<T>(c, table, inverse);
        }
      }
    }
  }
}

TEST(HostHeadGroups, SameBitsAsThePerTokenBody) {
  expect_head_groups_match_for_type<float>();
  expect_head_groups_match_for_type<__half>();
  expect_head_groups_match_for_type<__nv_bfloat16>();
}

}  // namespace
