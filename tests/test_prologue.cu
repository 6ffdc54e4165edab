// SPDX-License-Identifier: MIT
// The attention prologue (rope::rope_attention_prologue) on the host: every fusion of QK-norm,
// RoPE / M-RoPE, the paged cache write and q to FP8 run through the launcher's own validation,
// conversion and plan (run_prologue_on_host: the per-token body, norm lanes as threads), each
// element checked against the float64 reference composed of the stages' references; and a
// randomized suite over every option. test_prologue_gpu.cu runs the same cases on the GPU;
// test_prologue_invalid_args.cu has the arguments the prologue rejects.

#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <cuda_fp8.h>
#include <gtest/gtest.h>

#include <rope/rope.cuh>

#include "prologue_cases.hpp"
#include "randomized_prologue.hpp"

ROPE_DEFINE_PROLOGUE_TESTS(HostPrologue, ::rope_test::Backend::kHost, (void)0)

namespace {

using rope_test::Backend;
using rope_test::PrologueCache;
using rope_test::PrologueConfig;
using rope_test::PrologueNorm;
using rope_test::PrologueQFp8;

// Llama's shape at 1100 tokens (past kQueryBlocks blocks) planned for a modelled device that
// holds 100 blocks: the plan's rows walk tokens and norm launches stage the next token; the host
// run walks its rows as the kernel's would.
TEST(HostPrologueLarge, WalkingLaunchesMatchReference) {
  std::uint64_t salt = 1;
  for (const PrologueConfig& c : rope_test::large_cases(1100, 100)) {
    EXPECT_TRUE(rope_test::run_prologue<__nv_bfloat16>(c, Backend::kHost, ++salt));
  }
  // The plan of the last one walks (and that of a norm launch stages).
  const rope::detail::LaunchPlan plan = rope_test::last_host_plan();
  EXPECT_TRUE(plan.walks);
  EXPECT_GT(plan.shared_bytes, 0u);
}

// Other lane counts than the plan's (norm launches round them up to whole groups): more lanes
// than work, one lane for everything, spare and walking lanes.
TEST(HostPrologueLanes, AnyLaneCountCoversEveryElement) {
  std::uint64_t salt = 100;
  for (int lanes : {1, 3, 7, 64, 300}) {
    for (PrologueNorm norm : {PrologueNorm::kNone, PrologueNorm::kOnePlus}) {
      for (PrologueCache cache : {PrologueCache::kNone, PrologueCache::kFp8}) {
        PrologueConfig c;
        c.tokens = 3;
        c.head_dim = 128;
        c.rotary_dim = lanes % 2 == 0 ? 96 : 0;
        c.q_heads = 5;
        c.kv_heads = 3;
        c.lanes = lanes;
        c.norm = norm;
        c.cache = cache;
        c.q_fp8 = PrologueQFp8::kWithY;
        EXPECT_TRUE(rope_test::run_prologue<__nv_bfloat16>(c, Backend::kHost, ++salt));
        c.axes = 3;  // M-RoPE as well
        c.sections[0] = c.rot() / 8, c.sections[1] = c.rot() / 8, c.sections[2] = c.rot() / 2 - c.rot() / 4;
        EXPECT_TRUE(rope_test::run_prologue<__nv_bfloat16>(c, Backend::kHost, ++salt));
      }
    }
  }
}

// A case is a function of its configuration and data seed: two runs agree to the bit (the host's
// group sums are taken in lane order).
TEST(HostPrologue, ReproducibleRuns) {
  PrologueConfig c = rope_test::llama_shape(5);
  c.norm = PrologueNorm::kMultiply;
  c.cache = PrologueCache::kFp8;
  c.q_fp8 = PrologueQFp8::kOnly;
  c.data_seed = 1234;
  rope_test::PrologueCase<__nv_bfloat16, __nv_fp8_e4m3, __nv_bfloat16> a(c), b(c);
  ASSERT_TRUE(a.run(Backend::kHost));
  ASSERT_TRUE(b.run(Backend::kHost));
  EXPECT_EQ(a.rel_l2(), b.rel_l2());
}

// Where q.y and k.y are not written the FP8 codes are checked against the reference alone, any
// code within the computation's error bound accepted at a rounding boundary: such acceptances stay
// rare (the checks are exact nearly everywhere).
TEST(HostPrologue, Fp8ChecksAreNearlyAllExact) {
  PrologueConfig c = rope_test::llama_shape(64);
  c.norm = PrologueNorm::kMultiply;
  c.cache = PrologueCache::kFp8;
  c.k_write_back = false;
  c.q_fp8 = PrologueQFp8::kOnly;
  c.rotary_dim = 64;
  rope_test::PrologueCase<__nv_bfloat16, __nv_fp8_e4m3, __nv_bfloat16> run(c, 77);
  ASSERT_TRUE(run.run(Backend::kHost));
  const std::int64_t codes = c.tokens * (c.q_heads + c.kv_heads) * c.head_dim;
  EXPECT_LT(run.fp8_ambiguous(), codes / 200) << run.fp8_ambiguous() << " of " << codes;
}

// The randomized suite: 300 drawn configurations per run (fresh seed unless ROPE_TEST_SEED).
TEST(RandomizedHostPrologue, Cases000To299MatchReference) {
  rope_test::run_random_prologue_batch("RandomizedHostPrologue", Backend::kHost, 0, 300);
}

// The draws of a host run reach every option, whatever the seed.
TEST(RandomizedHostPrologue, DrawsCoverEveryOption) {
  for (std::uint64_t seed : {std::uint64_t{1}, rope_test::base_seed()}) {
    std::set<std::string> seen;
    for (std::uint64_t i = 0; i < 300; ++i) {
      const rope_test::RandomPrologue r = rope_test::random_prologue(seed, i, Backend::kHost);
      const PrologueConfig& c = r.cfg;
      seen.insert("dtype" + std::to_string(static_cast<int>(r.dtype)));
      seen.insert("norm" + std::to_string(static_cast<int>(c.norm)));
      seen.insert("cache" + std::to_string(static_cast<int>(c.cache)));
      seen.insert("q_fp8_" + std::to_string(static_cast<int>(c.q_fp8)));
      seen.insert("style" + std::to_string(static_cast<int>(c.style)));
      if (c.has_cache() && !c.k_write_back) seen.insert("no_write_back");
      if (c.axes == 3) seen.insert(c.sections_layout == rope::AxisSections::kInterleaved ? "mrope_i" : "mrope_c");
      if (c.axes == 2) seen.insert("axes2");
      if (c.rotary_dim != 0 && c.rotary_dim < c.head_dim) seen.insert("partial");
      if (c.computed) seen.insert("computed");
      if (c.table_in_tensor_type) seen.insert("table_in_T");
      if (c.norm != PrologueNorm::kNone && c.float_weights) seen.insert("float_weights");
      if (c.q_heads == 0) seen.insert("k_only");
      if (c.kv_heads == 0) seen.insert("q_only");
      if (c.fused_qkv) seen.insert("fused");
      if (c.in_place) seen.insert("in_place");
      if (c.out_of_range_positions > 0) seen.insert("out_of_range_positions");
      if (c.has_cache() && c.out_of_range_slots > 0) seen.insert("out_of_range_slots");
      if (c.tokens == 1) seen.insert("tokens=1");
      if (c.lanes > 0) seen.insert("lanes");
      seen.insert("positions" + std::to_string(static_cast<int>(c.position_type)));
    }
    for (const char* w : {"dtype0", "dtype1", "dtype2", "norm0", "norm1", "norm2", "cache0", "cache1", "cache2",
                          "q_fp8_0", "q_fp8_1", "q_fp8_2", "style0", "style1", "no_write_back", "mrope_i", "mrope_c",
                          "axes2", "partial", "computed", "table_in_T", "float_weights", "k_only", "q_only", "fused",
                          "in_place", "out_of_range_positions", "out_of_range_slots", "tokens=1", "lanes",
                          "positions0", "positions1", "positions2"}) {
      EXPECT_TRUE(seen.count(w)) << "seed " << seed << " never draws " << w;
    }
  }
}

TEST(RandomizedHostPrologue, SameSeedAndIndexGiveSameCase) {
  for (std::uint64_t i = 0; i < 100; ++i) {
    EXPECT_EQ(rope_test::random_prologue(7, i, Backend::kHost).describe(),
              rope_test::random_prologue(7, i, Backend::kHost).describe());
  }
  EXPECT_NE(rope_test::random_prologue(1, 0, Backend::kHost).describe(),
            rope_test::random_prologue(2, 0, Backend::kHost).describe());
}

}  // namespace
