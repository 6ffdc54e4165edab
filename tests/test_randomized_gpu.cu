// SPDX-License-Identifier: MIT
// Randomized differential tests on the GPU kernel: the drawn configurations of randomized.hpp
// (more of them, and larger, than the host runs of test_randomized.cu), each checked against the
// double-precision reference with poisoned outputs and guard elements, through the real
// launchers. A failure prints its replay line:
//   ROPE_RANDOM_CASE=<seed>:<index> <this binary> --gtest_filter='<suite>.*'
//
// The batches are separate gtest cases so that ctest runs them in parallel (one process each).
// Without a CUDA device every test is skipped.

#include <gtest/gtest.h>

#define ROPE_TEST_QK_NORM 1  // Case runs norm configurations here (harness.hpp)
#include "randomized.hpp"
#include "randomized_append.hpp"
#include "randomized_norm.hpp"

namespace {

using rope_test::Backend;

// GPU: 5 x 1000 = 5000 configurations with up to 4096 tokens, through the real launcher.
#define ROPE_GPU_BATCH(name, first)                                         \
  TEST(RandomizedGpu, name) {                                               \
    ROPE_SKIP_WITHOUT_GPU();                                                \
    rope_test::run_random_batch("RandomizedGpu", Backend::kGpu, first, 1000); \
  }
ROPE_GPU_BATCH(Cases0000To0999MatchReference, 0)
ROPE_GPU_BATCH(Cases1000To1999MatchReference, 1000)
ROPE_GPU_BATCH(Cases2000To2999MatchReference, 2000)
ROPE_GPU_BATCH(Cases3000To3999MatchReference, 3000)
ROPE_GPU_BATCH(Cases4000To4999MatchReference, 4000)
#undef ROPE_GPU_BATCH

// RoPE + KV-cache append: 2000 drawn configurations.
TEST(RandomizedGpuAppend, Cases0000To1999MatchReference) {
  ROPE_SKIP_WITHOUT_GPU();
  rope_test::run_random_append_batch("RandomizedGpuAppend", Backend::kGpu, 0, 2000);
}

// QK-RMSNorm + RoPE: 2000 drawn configurations.
TEST(RandomizedGpuQkNorm, Cases0000To1999MatchReference) {
  ROPE_SKIP_WITHOUT_GPU();
  rope_test::run_random_batch("RandomizedGpuQkNorm", Backend::kGpu, 0, 2000, rope_test::random_norm_case);
}

}  // namespace
