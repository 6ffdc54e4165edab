// SPDX-License-Identifier: MIT
// Packed sequences (THD, rope::PackedSequences): positions from cu_seqlens, per-sequence offsets
// and context parallelism (load-balanced and contiguous splits). Each launch must equal, bit for
// bit, the same launch given the positions written out as an array by an independent rule
// (written from Transformer Engine's chunk assignment, not the library's arithmetic), on the host
// (CI) and on the GPU: table and computed mode, both styles, partial rotary, GQA, padded strides,
// in place, backward, the head-group (decode) and per-token paths. Then what a bad device
// cu_seqlens does, the host check of cu_seqlens, and every invalid argument.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <rope/rope.cuh>

#include "harness.hpp"
#include "host_run.hpp"

namespace {

using rope_test::Backend;
using rope_test::Mirror;

struct PackedConfig {
  std::vector<int> lengths = {5, 1, 12, 0, 9};  // full sequence lengths
  rope::ContextParallel context;
  int offsets = 0;  // 0: none, 32 or 64: int32 or int64 offsets
  int q_heads = 4, k_heads = 2, head_dim = 64, rotary_dim = 0, head_pad = 0;
  rope::Style style = rope::Style::kHalfSplit;
  bool computed = false;
  bool in_place = false;
  bool backward = false;
  std::int64_t table_rows = 4096;

  int rot() const { return rotary_dim == 0 ? head_dim : rotary_dim; }
  std::string describe() const {
    std::ostringstream o;
    o << "lengths=[";
    for (int l : lengths) o << l << ",";
    o << "] cp=" << context.size << "/" << context.rank << " split=" << static_cast<int>(context.split)
      << " offsets=" << offsets << " q=" << q_heads << " k=" << k_heads << " dim=" << head_dim << " rot=" << rot()
      << " pad=" << head_pad << " style=" << static_cast<int>(style) << " computed=" << computed
      << " in_place=" << in_place << " backward=" << backward;
    return o.str();
  }
};

/// The chunks of a sequence that `context`'s rank holds, in order, as Transformer Engine and
/// Megatron-Core assign them: 2 * size chunks, rank r gets r and 2 * size - 1 - r; or `size`
/// chunks, rank r gets r.
std::vector<int> chunks_of_rank(const rope::ContextParallel& context, int& chunk_count) {
  if (context.size == 1) {
    chunk_count = 1;
    return {0};
  }
  if (context.split == rope::ContextSplit::kContiguous) {
    chunk_count = context.size;
    return {context.rank};
  }
  chunk_count = 2 * context.size;
  return {context.rank, 2 * context.size - 1 - context.rank};
}

/// This rank's tokens' positions: each sequence's full positions 0, 1, ..., cut into chunks, the
/// rank's chunks in order, each position plus its sequence's offset.
std::vector<std::int64_t> reference_positions(const PackedConfig& c, const std::vector<std::int64_t>& offsets) {
  int chunk_count = 0;
  const std::vector<int> mine = chunks_of_rank(c.context, chunk_count);
  std::vector<std::int64_t> out;
  for (std::size_t s = 0; s < c.lengths.size(); ++s) {
    const int chunk = c.lengths[s] / chunk_count;
    for (int k : mine) {
      for (int i = 0; i < chunk; ++i) out.push_back(std::int64_t{k} * chunk + i + (offsets.empty() ? 0 : offsets[s]));
    }
  }
  return out;
}

std::vector<std::int32_t> cu_seqlens_of(const std::vector<int>& lengths) {
  std::vector<std::int32_t> cu{0};
  for (int l : lengths) cu.push_back(cu.back() + l);
  return cu;
}

/// One launch, with the positions as packed sequences or (`as_array`) as the reference's array.
/// Returns the output elements as floats (NaN where unwritten) and the out-of-range flag.
template <typename T>
::testing::AssertionResult run_packed(const PackedConfig& c, Backend backend, bool as_array, std::uint64_t seed,
                                      std::vector<float>& out, int& flag_out,
                                      const std::vector<std::int32_t>* cu_override = nullptr,
                                      const std::vector<std::int64_t>* positions_override = nullptr) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<std::int64_t> pick_offset(0, 1000);
  const int half = c.rot() / 2;
  const int heads = c.q_heads + c.k_heads;
  const std::int64_t head_stride = c.head_dim + c.head_pad, token_stride = heads * head_stride;

  std::vector<std::int64_t> offsets;
  if (c.offsets != 0) {
    for (std::size_t s = 0; s < c.lengths.size(); ++s) offsets.push_back(pick_offset(rng));
  }
  const std::vector<std::int64_t> positions =
      positions_override != nullptr ? *positions_override : reference_positions(c, offsets);
  const std::int64_t tokens = static_cast<std::int64_t>(positions.size());

  Mirror<T> x, y;
  x.host.resize(static_cast<std::size_t>(tokens * token_stride));
  for (T& v : x.host) v = rope::detail::from_float<T>(u(rng));
  y.host.assign(x.host.size(), rope::detail::from_float<T>(NAN));
  Mirror<std::int64_t> pos, off64;
  Mirror<std::int32_t> cu, off32;
  Mirror<int> flag;
  pos.host = positions;
  cu.host = cu_override != nullptr ? *cu_override : cu_seqlens_of(c.lengths);
  off64.host = offsets;
  for (std::int64_t v : offsets) off32.host.push_back(static_cast<std::int32_t>(v));
  flag.host = {0};
  Mirror<float> freq, cos_t, sin_t;
  for (int i = 0; i < half; ++i) freq.host.push_back(static_cast<float>(std::pow(1e4, -2.0 * i / c.rot())));
  if (!c.computed) {
    for (std::int64_t r = 0; r < c.table_rows; ++r) {
      for (int i = 0; i < half; ++i) {
        cos_t.host.push_back(static_cast<float>(std::cos(static_cast<double>(r) * freq.host[i])));
        sin_t.host.push_back(static_cast<float>(std::sin(static_cast<double>(r) * freq.host[i])));
      }
    }
  }
  if (backend == Backend::kGpu) {
    for (auto* m : {&freq, &cos_t, &sin_t}) m->upload();
    for (auto* m : {&x, &y}) m->upload();
    for (auto* m : {&off32, &cu}) m->upload();
    pos.upload();
    off64.upload();
    flag.upload();
  }

  rope::RopeParams<T> p;
  p.num_tokens = tokens;
  p.head_dim = c.head_dim;
  p.rotary_dim = c.rotary_dim;
  p.style = c.style;
  T* xb = x.base(backend);
  T* yb = c.in_place ? xb : y.base(backend);
  if (c.q_heads > 0) p.q = rope::strided_heads<T>(xb, yb, c.q_heads, token_stride, head_stride);
  if (c.k_heads > 0) {
    p.k = rope::strided_heads<T>(xb + c.q_heads * head_stride, yb + c.q_heads * head_stride, c.k_heads, token_stride,
                                 head_stride);
  }
  p.cos_sin = c.computed ? rope::computed_cos_sin(freq.base(backend))
                         : rope::cos_sin_table<float>(cos_t.base(backend), sin_t.base(backend), c.table_rows, half);
  const int count = static_cast<int>(cu.host.size()) - 1;
  if (as_array) {
    p.positions = rope::positions(pos.base(backend));
  } else if (c.offsets == 32) {
    p.positions = rope::packed_sequence_positions(cu.base(backend), count, off32.base(backend), c.context);
  } else if (c.offsets == 64) {
    p.positions = rope::packed_sequence_positions(cu.base(backend), count, off64.base(backend), c.context);
  } else {
    p.positions = rope::packed_sequence_positions(cu.base(backend), count, c.context);
  }
  p.out_of_range_flag = flag.base(backend);
  const rope::Status st = rope::validate(p);
  if (!st.ok()) return ::testing::AssertionFailure() << "rejected: " << st.message << " | " << c.describe();
  cudaError_t e = cudaSuccess;
  if (backend == Backend::kHost) {
    e = rope_test::run_on_host(p, c.backward);
  } else {
    e = c.backward ? rope::rope_backward(p) : rope::rope_forward(p);
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    x.download();
    y.download();
    flag.download();
  }
  if (e != cudaSuccess) return ::testing::AssertionFailure() << "launch: " << cudaGetErrorString(e) << " | " << c.describe();
  out.clear();
  for (const T& v : c.in_place ? x.host : y.host) out.push_back(rope::detail::to_float(v));
  flag_out = flag.host[0];
  return ::testing::AssertionSuccess();
}

/// Packed sequences and the reference's positions array give the same bits, and the launch
/// rotated something (a token past its sequence's first position changed).
template <typename T>
::testing::AssertionResult packed_matches_array(const PackedConfig& c, Backend backend, std::uint64_t seed) {
  std::vector<float> packed, array;
  int packed_flag = 0, array_flag = 0;
  ::testing::AssertionResult r = run_packed<T>(c, backend, false, seed, packed, packed_flag);
  if (!r) return r;
  r = run_packed<T>(c, backend, true, seed, array, array_flag);
  if (!r) return r;
  if (packed.empty()) return ::testing::AssertionFailure() << "no tokens | " << c.describe();
  for (std::size_t i = 0; i < packed.size(); ++i) {
    const bool same = std::memcmp(&packed[i], &array[i], sizeof(float)) == 0;
    if (!same) {
      return ::testing::AssertionFailure() << "element " << i << ": packed " << packed[i] << ", array " << array[i]
                                           << " | " << c.describe();
    }
    const std::int64_t in_head = static_cast<std::int64_t>(i) % (c.head_dim + c.head_pad);
    if (std::isnan(packed[i]) && in_head < c.head_dim) {  // padding between heads stays unwritten
      return ::testing::AssertionFailure() << "element " << i << " unwritten | " << c.describe();
    }
  }
  if (packed_flag != 0 || array_flag != 0) return ::testing::AssertionFailure() << "flag raised | " << c.describe();
  return ::testing::AssertionSuccess();
}

/// Every option once, over several sequence mixes and every context-parallel rank.
std::vector<PackedConfig> named_configs() {
  std::vector<PackedConfig> v;
  PackedConfig base;
  v.push_back(base);
  for (int offsets : {32, 64}) {
    PackedConfig c = base;
    c.offsets = offsets;
    v.push_back(c);
  }
  for (rope::ContextSplit split : {rope::ContextSplit::kLoadBalanced, rope::ContextSplit::kContiguous}) {
    for (int size : {2, 4}) {
      for (int rank = 0; rank < size; ++rank) {
        PackedConfig c = base;
        c.lengths = {8 * size, 0, 2 * size, 16 * size, 4 * size};
        c.context = rope::ContextParallel{size, rank, split};
        c.offsets = rank % 2 == 0 ? 0 : 64;
        v.push_back(c);
      }
    }
  }
  PackedConfig many = base;  // many short sequences (a training batch of 1,024 x 64, scaled down)
  many.lengths.assign(300, 3);
  many.lengths[7] = 0;
  many.lengths[299] = 40;
  v.push_back(many);
  PackedConfig one = base;  // one sequence: the whole launch
  one.lengths = {50};
  v.push_back(one);
  PackedConfig decode = base;  // one token per sequence: decode of a batch, the head-group path
  decode.lengths.assign(6, 1);
  decode.offsets = 64;
  v.push_back(decode);
  const std::size_t named = v.size();
  for (std::size_t i = 0; i < named; i += 2) {
    PackedConfig c = v[i];
    c.computed = true;
    v.push_back(c);
  }
  PackedConfig options = base;
  options.context = rope::ContextParallel{2, 1, rope::ContextSplit::kLoadBalanced};
  options.lengths = {12, 4, 20};
  options.offsets = 32;
  for (int variant = 0; variant < 6; ++variant) {
    PackedConfig c = options;
    c.style = variant % 2 == 0 ? rope::Style::kInterleaved : rope::Style::kHalfSplit;
    c.rotary_dim = variant == 1 || variant == 4 ? 32 : 0;
    c.head_pad = variant == 2 ? 8 : 0;
    c.in_place = variant == 3;
    c.backward = variant == 4 || variant == 5;
    c.k_heads = variant == 5 ? 0 : c.k_heads;
    c.computed = variant >= 3;
    v.push_back(c);
  }
  return v;
}

template <typename T>
void expect_named(Backend backend) {
  std::uint64_t seed = 1;
  for (const PackedConfig& c : named_configs()) EXPECT_TRUE(packed_matches_array<T>(c, backend, seed++));
}

TEST(PackedSequences, MatchTheirPositionsArrayOnTheHostF32) { expect_named<float>(Backend::kHost); }
TEST(PackedSequences, MatchTheirPositionsArrayOnTheHostBf16) { expect_named<__nv_bfloat16>(Backend::kHost); }
TEST(PackedSequences, MatchTheirPositionsArrayOnTheGpuF32) {
  ROPE_SKIP_WITHOUT_GPU();
  expect_named<float>(Backend::kGpu);
}
TEST(PackedSequences, MatchTheirPositionsArrayOnTheGpuBf16) {
  ROPE_SKIP_WITHOUT_GPU();
  expect_named<__nv_bfloat16>(Backend::kGpu);
}

/// Enough tokens for the per-token kernel's walking rows on the GPU (positions read a walk ahead).
TEST(PackedSequences, ManyTokensMatchTheirPositionsArrayOnTheGpu) {
  ROPE_SKIP_WITHOUT_GPU();
  PackedConfig c;
  c.q_heads = 8;
  c.k_heads = 2;
  c.head_dim = 128;
  c.lengths.assign(96, 64);  // 6,144 tokens
  c.lengths[5] = 0;
  c.lengths[40] = 512;
  c.offsets = 64;
  EXPECT_TRUE(packed_matches_array<__nv_bfloat16>(c, Backend::kGpu, 99));
  c.context = rope::ContextParallel{2, 1, rope::ContextSplit::kLoadBalanced};
  EXPECT_TRUE(packed_matches_array<__nv_bfloat16>(c, Backend::kGpu, 100));
  c.computed = true;
  EXPECT_TRUE(packed_matches_array<__nv_bfloat16>(c, Backend::kGpu, 101));
}

/// A device cu_seqlens that breaks the rules is read within its count + 1 entries only, and its
/// tokens take the positions its entries give: with cu_seqlens[0] = 5 the first five tokens fall
/// 5 before their sequence's start, negative positions that table mode passes through unrotated
/// and flags, exactly as the same positions given as an array.
template <typename T>
void expect_bad_cu_seqlens_bounded(Backend backend) {
  PackedConfig c;
  c.lengths = {30};
  const std::vector<std::int32_t> bad{5, 30};
  std::vector<std::int64_t> positions;
  for (int t = 0; t < 30; ++t) positions.push_back(t - 5);
  std::vector<float> packed, array;
  int packed_flag = 0, array_flag = 0;
  ASSERT_TRUE(run_packed<T>(c, backend, false, 7, packed, packed_flag, &bad, &positions));
  ASSERT_TRUE(run_packed<T>(c, backend, true, 7, array, array_flag, &bad, &positions));
  ASSERT_EQ(packed.size(), array.size());
  EXPECT_EQ(std::memcmp(packed.data(), array.data(), packed.size() * sizeof(float)), 0);
  EXPECT_EQ(packed_flag, 1);
  EXPECT_FALSE(std::isnan(packed[0]));                  // token 0: position -5, passed through
  EXPECT_FALSE(std::isnan(packed[packed.size() - 1]));  // token 29: position 24
}

TEST(PackedSequences, BadCuSeqlensStayInBoundsOnTheHost) { expect_bad_cu_seqlens_bounded<float>(Backend::kHost); }
TEST(PackedSequences, BadCuSeqlensStayInBoundsOnTheGpu) {
  ROPE_SKIP_WITHOUT_GPU();
  expect_bad_cu_seqlens_bounded<float>(Backend::kGpu);
}

TEST(CheckCuSeqlens, AcceptsValidArrays) {
  const std::vector<std::int32_t> cu{0, 4, 4, 12};
  EXPECT_TRUE(rope::check_cu_seqlens(cu.data(), 3, 12).ok());
  EXPECT_TRUE(rope::check_cu_seqlens(cu.data(), 3, 6, {2, 1, rope::ContextSplit::kContiguous}).ok());
  EXPECT_TRUE(rope::check_cu_seqlens(cu.data(), 3, 6, {2, 0, rope::ContextSplit::kLoadBalanced}).ok());
}

TEST(CheckCuSeqlens, NamesEachBrokenRule) {
  auto message = [](std::vector<std::int32_t> cu, std::int64_t tokens, rope::ContextParallel cp = {}) {
    const rope::Status s = rope::check_cu_seqlens(cu.data(), static_cast<int>(cu.size()) - 1, tokens, cp);
    EXPECT_EQ(s.error, cudaErrorInvalidValue);
    return std::string(s.message);
  };
  EXPECT_NE(message({1, 4}, 4).find("cu_seqlens[0] must be 0"), std::string::npos);
  EXPECT_NE(message({0, 6, 4}, 4).find("decreases"), std::string::npos);
  EXPECT_NE(message({0, -2}, 0).find("decreases"), std::string::npos);
  EXPECT_NE(message({0, 4, 9}, 8).find("last entry"), std::string::npos);
  EXPECT_NE(message({0, 6}, 3, {2, 0, rope::ContextSplit::kLoadBalanced}).find("multiple of 2 * context.size"),
            std::string::npos);
  EXPECT_NE(message({0, 3}, 2, {3, 0, rope::ContextSplit::kContiguous}).find("last entry"), std::string::npos);
  EXPECT_NE(message({0, 4}, 1, {3, 0, rope::ContextSplit::kContiguous}).find("multiple of context.size"),
            std::string::npos);
  EXPECT_NE(message({0, 4}, 2, {2, 2, rope::ContextSplit::kLoadBalanced}).find("context.rank"), std::string::npos);
  EXPECT_NE(message({0, 4}, 4, {0, 0, rope::ContextSplit::kLoadBalanced}).find("context.size"), std::string::npos);
  EXPECT_FALSE(rope::check_cu_seqlens(nullptr, 1, 0).ok());
  const std::int32_t zero = 0;
  EXPECT_FALSE(rope::check_cu_seqlens(&zero, 0, 0).ok());
}

/// Each bad packed-sequence argument: rejected by validate and by the launcher with its reason,
/// and the output left as it was.
TEST(PackedSequencesInvalidArgs, EachIsRejectedAndNothingIsWritten) {
  constexpr int kTokens = 8, kHeads = 2, kDim = 16;
  rope_test::ScratchFloats x(kTokens * kHeads * kDim, 0.5f), y(kTokens * kHeads * kDim, -7.0f),
      cos(64 * kDim / 2, 1.0f), sin(64 * kDim / 2, 0.0f), ints(64, 0.0f);
  auto* cu = reinterpret_cast<std::int32_t*>(ints.data());
  auto* offsets32 = reinterpret_cast<std::int32_t*>(ints.data() + 8);
  auto* offsets64 = reinterpret_cast<std::int64_t*>(ints.data() + 16);
  auto base = [&] {
    rope::RopeParams<float> p;
    p.num_tokens = kTokens;
    p.head_dim = kDim;
    p.q = rope::packed_heads<float>(x.data(), y.data(), kHeads, kDim);
    p.cos_sin = rope::cos_sin_table<float>(cos.data(), sin.data(), 64, kDim / 2);
    p.positions = rope::packed_sequence_positions(cu, 2);
    return p;
  };
  ASSERT_TRUE(rope::validate(base()).ok());
  struct Bad {
    const char* expect;
    void (*edit)(rope::RopeParams<float>&, std::int32_t*, std::int32_t*, std::int64_t*, float*);
  };
  const Bad cases[] = {
      {"not both", [](auto& p, auto*, auto*, auto* o64, auto*) {
         p.positions.data = o64;
         p.positions.type = rope::PositionType::kInt64;
       }},
      {"count must be at least 1", [](auto& p, auto*, auto*, auto*, auto*) { p.positions.sequences.count = 0; }},
      {"offsets and offsets_type disagree", [](auto& p, auto*, auto* o32, auto*, auto*) {
         p.positions.sequences.offsets = o32;
       }},
      {"offsets and offsets_type disagree", [](auto& p, auto*, auto*, auto*, auto*) {
         p.positions.sequences.offsets_type = rope::PositionType::kInt32;
       }},
      {"offsets_type is not", [](auto& p, auto*, auto* o32, auto*, auto*) {
         p.positions.sequences.offsets = o32;
         p.positions.sequences.offsets_type = static_cast<rope::PositionType>(9);
       }},
      {"context.size must be at least 1", [](auto& p, auto*, auto*, auto*, auto*) { p.positions.sequences.context.size = 0; }},
      {"context.rank must be in", [](auto& p, auto*, auto*, auto*, auto*) {
         p.positions.sequences.context = {2, 2, rope::ContextSplit::kLoadBalanced};
       }},
      {"context.rank must be in", [](auto& p, auto*, auto*, auto*, auto*) { p.positions.sequences.context.rank = -1; }},
      {"context.split is not", [](auto& p, auto*, auto*, auto*, auto*) {
         p.positions.sequences.context = {2, 0, static_cast<rope::ContextSplit>(5)};
       }},
      {"no packed sequences", [](auto& p, auto*, auto*, auto*, auto*) {
         p.positions = rope::Positions{};
         p.positions.sequences.context.size = 2;
       }},
      {"but no cu_seqlens", [](auto& p, auto*, auto*, auto*, auto*) {
         p.positions = rope::Positions{};
         p.positions.sequences.count = 3;
       }},
      {"multi-axis positions need a positions array", [](auto& p, auto*, auto*, auto*, auto*) { p.positions.axes = 3; }},
      {"cu_seqlens is not aligned", [](auto& p, auto* cu, auto*, auto*, auto*) {
         p.positions.sequences.cu_seqlens = reinterpret_cast<const std::int32_t*>(reinterpret_cast<const char*>(cu) + 1);
       }},
      {"offsets is not aligned", [](auto& p, auto*, auto*, auto* o64, auto*) {
         p.positions = rope::packed_sequence_positions(p.positions.sequences.cu_seqlens, 2,
                                                       reinterpret_cast<const std::int64_t*>(reinterpret_cast<const char*>(o64) + 4));
       }},
      {"cu_seqlens or offsets overlap an output", [](auto& p, auto*, auto*, auto*, auto* y) {
         p.positions.sequences.cu_seqlens = reinterpret_cast<const std::int32_t*>(y);
       }},
      {"cu_seqlens or offsets overlap an output", [](auto& p, auto*, auto*, auto*, auto* y) {
         p.positions = rope::packed_sequence_positions(p.positions.sequences.cu_seqlens, 2,
                                                       reinterpret_cast<const std::int32_t*>(y + 5));
       }},
  };
  for (const Bad& bad : cases) {
    rope::RopeParams<float> p = base();
    bad.edit(p, cu, offsets32, offsets64, y.data());
    const rope::Status s = rope::validate(p);
    EXPECT_EQ(s.error, cudaErrorInvalidValue) << bad.expect;
    EXPECT_NE(std::string(s.message).find(bad.expect), std::string::npos) << s.message;
    EXPECT_EQ(rope::rope_forward(p), cudaErrorInvalidValue) << bad.expect;
    EXPECT_EQ(rope::rope_backward(p), cudaErrorInvalidValue) << bad.expect;
  }
  for (float v : y.contents()) ASSERT_EQ(v, -7.0f);
}

/// Packed sequences make the table's row count independent of the token count (positions are
/// looked up, not the token index).
TEST(PackedSequencesInvalidArgs, TableNeedsNoRowPerToken) {
  rope_test::ScratchFloats x(64 * 16, 0.5f), cos(4 * 8, 1.0f), sin(4 * 8, 0.0f), ints(8, 0.0f);
  rope::RopeParams<float> p;
  p.num_tokens = 64;
  p.head_dim = 16;
  p.q = rope::packed_heads<float>(x.data(), x.data(), 1, 16);
  p.cos_sin = rope::cos_sin_table<float>(cos.data(), sin.data(), 4, 8);
  EXPECT_FALSE(rope::validate(p).ok());
  p.positions = rope::packed_sequence_positions(reinterpret_cast<const std::int32_t*>(ints.data()), 1);
  EXPECT_TRUE(rope::validate(p).ok());
}

}  // namespace
