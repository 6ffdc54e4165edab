// SPDX-License-Identifier: MIT
// The attention prologue on the GPU (rope::rope_attention_prologue): the fusions and shapes of
// test_prologue.cu (every norm x cache x q-to-FP8 x write-back, M-RoPE with three axes for each),
// launches large enough that rows walk tokens (and norm launches stage them), and a randomized
// suite, each element checked against the float64 reference. Without a CUDA device every test is
// skipped. A randomized failure prints its replay line:
//   ROPE_RANDOM_CASE=<seed>:<index> <this binary> --gtest_filter='RandomizedGpuPrologue.*'

#include <cstdint>

#include <gtest/gtest.h>

#include "prologue_cases.hpp"
#include "randomized_prologue.hpp"

ROPE_DEFINE_PROLOGUE_TESTS(GpuPrologue, ::rope_test::Backend::kGpu, ROPE_SKIP_WITHOUT_GPU())

namespace {

using rope_test::Backend;
using rope_test::PrologueConfig;

// Llama's shape at 16384 tokens: past kQueryBlocks blocks, so table-mode launches with positions
// take at most the resident blocks and their rows walk tokens (norm launches stage the next one).
// (The suite's name puts it among sanitize.sh's exclusions, *TokenCounts*: too slow there.)
TEST(GpuPrologueTokenCounts, WalkingLaunchesMatchReference) {
  ROPE_SKIP_WITHOUT_GPU();
  std::uint64_t salt = 1;
  for (const PrologueConfig& c : rope_test::large_cases(16384, 0)) {
    EXPECT_TRUE(rope_test::run_prologue<__nv_bfloat16>(c, Backend::kGpu, ++salt));
  }
}

// Many tokens of M-RoPE (one row per token) and of fp16 / float, with every stage.
TEST(GpuPrologueTokenCounts, MultiAxisAndOtherTypes) {
  ROPE_SKIP_WITHOUT_GPU();
  std::uint64_t salt = 100;
  for (PrologueConfig c : rope_test::mrope_shapes()) {
    c.tokens = 3000;
    c.norm = rope_test::PrologueNorm::kOnePlus;
    c.cache = rope_test::PrologueCache::kFp8;
    c.q_fp8 = rope_test::PrologueQFp8::kWithY;
    c.k_write_back = false;
    EXPECT_TRUE(rope_test::run_prologue<__nv_bfloat16>(c, Backend::kGpu, ++salt));
    EXPECT_TRUE(rope_test::run_prologue<__half>(c, Backend::kGpu, ++salt));
    c.cache = rope_test::PrologueCache::kSameType;
    EXPECT_TRUE(rope_test::run_prologue<float>(c, Backend::kGpu, ++salt));
  }
  PrologueConfig c = rope_test::llama_shape(8192);
  c.norm = rope_test::PrologueNorm::kMultiply;
  c.cache = rope_test::PrologueCache::kFp8;
  c.q_fp8 = rope_test::PrologueQFp8::kOnly;
  EXPECT_TRUE(rope_test::run_prologue<__half>(c, Backend::kGpu, ++salt));
  c.cache = rope_test::PrologueCache::kSameType;
  EXPECT_TRUE(rope_test::run_prologue<float>(c, Backend::kGpu, ++salt));
}

// The randomized suite: 1000 drawn configurations per run (fresh seed unless ROPE_TEST_SEED). Its
// name matches sanitize.sh's exclusion (*RandomConfigurations*).
TEST(RandomizedGpuPrologue, RandomConfigurations0000To0999MatchReference) {
  ROPE_SKIP_WITHOUT_GPU();
  rope_test::run_random_prologue_batch("RandomizedGpuPrologue", Backend::kGpu, 0, 1000);
}

}  // namespace
