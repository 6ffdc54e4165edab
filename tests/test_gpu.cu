// SPDX-License-Identifier: MIT
// The real launcher and kernel on a GPU, over the same configurations as the host tests plus
// GPU-sized ones. Without a CUDA device every test is skipped (reported as skipped by ctest).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#define ROPE_TEST_QK_NORM 1  // Case runs norm configurations here (harness.hpp)
#include "case_tests.hpp"
#include "kv_append_cases.hpp"
#include "qk_norm_cases.hpp"
#include "rounding_values.hpp"

template <typename T>
class Gpu : public ::testing::Test {};
ROPE_DEFINE_CASE_TESTS(Gpu, ::rope_test::Backend::kGpu, ROPE_SKIP_WITHOUT_GPU())

// RoPE + KV-cache append through rope_forward_append, on the same configurations as HostAppend.
template <typename T>
class GpuAppend : public ::testing::Test {};
ROPE_DEFINE_APPEND_TESTS(GpuAppend, ::rope_test::Backend::kGpu, ROPE_SKIP_WITHOUT_GPU())

// QK-RMSNorm + RoPE through rope_forward_qk_norm (warp-shuffle group sums), on the same
// configurations as HostQkNorm.
template <typename T>
class GpuQkNorm : public ::testing::Test {};
ROPE_DEFINE_NORM_TESTS(GpuQkNorm, ::rope_test::Backend::kGpu, ROPE_SKIP_WITHOUT_GPU())

namespace {

using rope_test::Backend;
using rope_test::Case;
using rope_test::CaseConfig;

// Large launches: many tokens with many heads, to cover the grid mapping end to end.
TEST(GpuLarge, LlamaShapes) {
  ROPE_SKIP_WITHOUT_GPU();
  CaseConfig c;
  c.tokens = 20000;
  c.q_heads = 32;
  c.k_heads = 8;
  c.position_type = rope::PositionType::kInt64;
  c.table_rows = 131072;
  Case<__nv_bfloat16> table(c, 1);
  EXPECT_TRUE(table.run(Backend::kGpu));
  c.computed = true;
  c.max_position = 1 << 20;
  Case<__nv_bfloat16> computed(c, 2);
  EXPECT_TRUE(computed.run(Backend::kGpu));
}

// Llama-3-8B prefill appended to a paged cache (bf16 and FP8), many blocks, padding slots.
TEST(GpuLarge, LlamaAppend) {
  ROPE_SKIP_WITHOUT_GPU();
  rope_test::AppendConfig c;
  c.tokens = 20000;
  c.q_heads = 32;
  c.kv_heads = 8;
  c.block_size = 16;
  c.negative_slots = 50;
  c.fused_qkv = true;
  c.in_place = true;
  rope_test::AppendCase<__nv_bfloat16, __nv_bfloat16> same(c, 4);
  EXPECT_TRUE(same.run(Backend::kGpu));
  c.layout = rope_test::CacheLayout::kHnd;
  rope_test::AppendCase<__nv_bfloat16, __nv_fp8_e4m3> fp8(c, 5);
  EXPECT_TRUE(fp8.run(Backend::kGpu));
}

// Qwen3-8B prefill (q 32, k 8 of a fused [T, 48, 128] bf16 buffer, in place, int64 positions
// into a 131072-row table), and Gemma 3's (1 + w) with 256-dim heads and fp32 weights; a token
// count that leaves the last block part empty (lanes of no token share warps with real ones).
TEST(GpuLarge, QkNormShapes) {
  ROPE_SKIP_WITHOUT_GPU();
  CaseConfig c = rope_test::norm_case(128, 32, 8);
  c.tokens = 20001;
  c.fused_qkv = true;
  c.in_place = true;
  c.table_rows = 131072;
  Case<__nv_bfloat16> qwen(c, 6);
  EXPECT_TRUE(qwen.run(Backend::kGpu));
  CaseConfig g = rope_test::norm_case(256, 8, 4);
  g.tokens = 4097;
  g.weighting = rope::NormWeighting::kOnePlus;
  g.float_weights = true;
  g.computed = true;
  g.max_position = 1 << 20;
  Case<__nv_bfloat16> gemma(g, 7);
  EXPECT_TRUE(gemma.run(Backend::kGpu));
}

// Norm launches large enough that the grid is capped and rows walk, staging each next token in
// shared memory (detail/device/staging.cuh): Qwen3-8B's heads at 3100 tokens (1034 blocks of three
// tokens, past the occupancy query's threshold and three times an H200's resident blocks), out
// of place, both styles, int32 positions with some outside the table (those tokens stage their
// next one too), and fp32 tensors (16-byte accesses of 4 floats). Small enough for the sanitizers.
TEST(GpuQkNormStaging, RowsThatWalkStageTheirNextTokens) {
  ROPE_SKIP_WITHOUT_GPU();
  for (auto style : {rope::Style::kHalfSplit, rope::Style::kInterleaved}) {
    CaseConfig c = rope_test::norm_case(128, 32, 8);
    c.tokens = 3100;
    c.style = style;
    c.position_type = rope::PositionType::kInt32;
    c.out_of_range = 3;
    Case<__nv_bfloat16> bf16(c, 8);
    EXPECT_TRUE(bf16.run(Backend::kGpu));
    Case<float> fp32(c, 9);
    EXPECT_TRUE(fp32.run(Backend::kGpu));
  }
  // The bf16 launches above did stage where the library is tuned (sm_90): their instance keeps
  // its resident blocks with the slots of a 240-thread block (80 lanes, 3 tokens).
  int device = 0, major = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), cudaSuccess);
  if (major == 9) {
    using namespace rope::detail;
    const GpuOccupancy<NormPolicy, __nv_bfloat16, NoAppend, RmsNorm<__nv_bfloat16>> occupancy;
    const Instance instance{rope::Style::kHalfSplit, 8, AxisLookup::kSingleAxis};
    constexpr int kSlots = kStageLaneSlots<__nv_bfloat16, rope::Style::kHalfSplit, 8, 4>;
    const std::size_t staged = static_cast<std::size_t>(stage_bytes(240, kSlots));
    const std::int64_t resident = occupancy.resident_blocks(instance, 240, 0);
    EXPECT_GT(resident, 0);
    EXPECT_TRUE(occupancy.consents_to_shared_bytes(instance, staged));
    EXPECT_EQ(occupancy.resident_blocks(instance, 240, staged), resident);
  }
}

// Launches of at most kHeadGroupMaxTokens tokens (or kHeadGroupMaxHeads heads in all) take the
// head group kernel, larger ones the per-token kernel. Both rotate the same tokens to the same
// bits: a launch one token past both bounds and the largest launch of its first tokens that
// takes head groups, from the same inputs into outputs that start as the same NaNs, agree bit for
// bit on those tokens, and raise the out-of-range flag alike.
struct HeadGroupGpuShape {
  int q_heads, k_heads, head_dim, rotary_dim;
  rope::Style style;
};

template <typename T>
void expect_head_groups_match_per_token_kernel(const HeadGroupGpuShape& shape, bool computed, bool backward) {
  constexpr std::int64_t kRows = 4096;
  const std::int64_t heads = shape.q_heads + shape.k_heads;
  const std::int64_t kFew = std::max(rope::detail::kHeadGroupMaxTokens, rope::detail::kHeadGroupMaxHeads / heads);
  const std::int64_t kTokens = kFew + 1;
  const int rotary = shape.rotary_dim == 0 ? shape.head_dim : shape.rotary_dim, half = rotary / 2;
  std::mt19937 rng(static_cast<unsigned>(rope_test::base_seed() + shape.head_dim));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<T> q(static_cast<std::size_t>(kTokens) * shape.q_heads * shape.head_dim);
  std::vector<T> k(static_cast<std::size_t>(kTokens) * shape.k_heads * shape.head_dim);
  for (T& v : q) v = static_cast<T>(u(rng));
  for (T& v : k) v = static_cast<T>(u(rng));
  std::vector<float> cos(kRows * half), sin(cos.size()), inv_freq(half);
  for (std::size_t i = 0; i < cos.size(); ++i) {
    cos[i] = std::cos(3.0f * u(rng));
    sin[i] = std::sin(3.0f * u(rng));
  }
  for (int j = 0; j < half; ++j) inv_freq[j] = static_cast<float>(std::pow(500000.0, -2.0 * j / rotary));
  std::vector<std::int64_t> positions(kTokens);
  for (auto& p : positions) p = static_cast<std::int64_t>(rng() % kRows);
  positions[5] = kRows;  // outside the table: left unwritten by both
  auto mirror = [](auto& m, const auto& values) {
    m.host = values;
    m.upload();
  };
  rope_test::Mirror<T> dq, dk;
  rope_test::Mirror<float> dcos, dsin, dfreq;
  rope_test::Mirror<std::int64_t> dpos;
  mirror(dq, q);
  mirror(dk, k);
  mirror(dcos, cos);
  mirror(dsin, sin);
  mirror(dfreq, inv_freq);
  mirror(dpos, positions);
  std::vector<T> out_q[2], out_k[2];
  int flags[2] = {0, 0};
  for (int run = 0; run < 2; ++run) {
    rope_test::Mirror<T> yq, yk;
    rope_test::Mirror<int> flag;
    mirror(yq, std::vector<T>(q.size(), static_cast<T>(NAN)));
    mirror(yk, std::vector<T>(k.size(), static_cast<T>(NAN)));
    mirror(flag, std::vector<int>{0});
    rope::RopeParams<T> p;
    p.num_tokens = run == 0 ? kTokens : kFew;
    p.head_dim = shape.head_dim;
    p.rotary_dim = shape.rotary_dim;
    p.style = shape.style;
    p.q = rope::packed_heads<T>(dq.device, yq.device, shape.q_heads, shape.head_dim);
    if (shape.k_heads > 0) p.k = rope::packed_heads<T>(dk.device, yk.device, shape.k_heads, shape.head_dim);
    p.cos_sin = computed ? rope::computed_cos_sin(dfreq.device, 0.75f)
                         : rope::cos_sin_table<float>(dcos.device, dsin.device, kRows, half);
    p.positions = rope::positions(dpos.device);
    p.out_of_range_flag = flag.device;
    ASSERT_EQ(rope::detail::takes_head_groups(p), run == 1);
    ASSERT_EQ(backward ? rope::rope_backward(p) : rope::rope_forward(p), cudaSuccess) << rope::last_error_message();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    yq.download();
    yk.download();
    flag.download();
    out_q[run] = yq.host;
    out_k[run] = yk.host;
    flags[run] = flag.host[0];
  }
  const std::string what = "q " + std::to_string(shape.q_heads) + " k " + std::to_string(shape.k_heads) + " dim " +
                           std::to_string(shape.head_dim) + " rotary " + std::to_string(shape.rotary_dim) +
                           (shape.style == rope::Style::kInterleaved ? " interleaved" : " half-split") +
                           (computed ? " computed" : " table") + (backward ? " backward" : " forward");
  const std::size_t q_few = static_cast<std::size_t>(kFew) * shape.q_heads * shape.head_dim;
  const std::size_t k_few = static_cast<std::size_t>(kFew) * shape.k_heads * shape.head_dim;
  EXPECT_EQ(std::memcmp(out_q[0].data(), out_q[1].data(), q_few * sizeof(T)), 0) << what;
  EXPECT_EQ(std::memcmp(out_k[0].data(), out_k[1].data(), k_few * sizeof(T)), 0) << what;
  EXPECT_EQ(flags[0], computed ? 0 : 1) << what;
  EXPECT_EQ(flags[1], flags[0]) << what;
}

template <typename T>
void expect_head_groups_match_for_type() {
  // Llama-3-8B; GQA with a partial-rotary tail; one 64-dim head (the per-token kernel's double
  // width against head groups at the wide access, blocks of many tokens); a 4-dim head (the
  // narrowest accesses, 64 tokens per block); a head wider than a warp's columns.
  const HeadGroupGpuShape shapes[] = {{32, 8, 128, 0, rope::Style::kHalfSplit},
                                      {6, 2, 96, 32, rope::Style::kInterleaved},
                                      {1, 0, 64, 0, rope::Style::kHalfSplit},
                                      {2, 1, 4, 0, rope::Style::kInterleaved},
                                      {3, 1, 1024, 768, rope::Style::kHalfSplit}};
  for (const HeadGroupGpuShape& shape : shapes) {
    for (const bool computed : {false, true}) {
      for (const bool backward : {false, true}) expect_head_groups_match_per_token_kernel<T>(shape, computed, backward);
    }
  }
}

TEST(GpuHeadGroups, SameBitsAsThePerTokenKernel) {
  ROPE_SKIP_WITHOUT_GPU();
  expect_head_groups_match_for_type<float>();
  expect_head_groups_match_for_type<__half>();
  expect_head_groups_match_for_type<__nv_bfloat16>();
}

TEST(GpuLarge, OriginalSweepShape) {
  ROPE_SKIP_WITHOUT_GPU();
  CaseConfig c;
  c.tokens = 63488;
  c.head_dim = 128;
  Case<float> f(c, 3);
  EXPECT_TRUE(f.run(Backend::kGpu));
}

// Divisor in device code (the shift and mask of powers of two, the division otherwise), over
// the counts and indices the kernel can meet and the extremes of int.
__global__ void divide_on_device(const int* divisors, int count, const int* xs, int num_x, int* out) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= count * num_x) return;
  const rope::detail::Divisor d(divisors[i / num_x]);
  const int x = xs[i % num_x];
  out[2 * i] = d.quotient(x);
  out[2 * i + 1] = d.remainder(x);
}

TEST(GpuSimple, DivisorMatchesTheOperators) {
  ROPE_SKIP_WITHOUT_GPU();
  std::vector<int> divisors;
  for (int d = 1; d <= 5000; ++d) divisors.push_back(d);
  for (const int d : {65535, 65537, 1000003, (1 << 30) + 1, std::numeric_limits<int>::max()}) divisors.push_back(d);
  std::vector<int> xs = {0, 1, 2, 3, 5, 7, 100, 4095, 4096, 65535, 1 << 20, 123456789, std::numeric_limits<int>::max()};
  for (int k = 1; k <= 19; ++k) xs.push_back(std::numeric_limits<int>::max() - k * 7919);
  const int n = static_cast<int>(divisors.size() * xs.size());
  int *d_div, *d_x, *d_out;
  ASSERT_EQ(cudaMalloc(&d_div, divisors.size() * sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_x, xs.size() * sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_out, 2 * static_cast<std::size_t>(n) * sizeof(int)), cudaSuccess);
  cudaMemcpy(d_div, divisors.data(), divisors.size() * sizeof(int), cudaMemcpyHostToDevice);
  cudaMemcpy(d_x, xs.data(), xs.size() * sizeof(int), cudaMemcpyHostToDevice);
  divide_on_device<<<(n + 255) / 256, 256>>>(d_div, static_cast<int>(divisors.size()), d_x, static_cast<int>(xs.size()), d_out);
  std::vector<int> out(2 * static_cast<std::size_t>(n));
  ASSERT_EQ(cudaMemcpy(out.data(), d_out, out.size() * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d_div);
  cudaFree(d_x);
  cudaFree(d_out);
  for (int i = 0; i < n; ++i) {
    const int d = divisors[static_cast<std::size_t>(i) / xs.size()], x = xs[static_cast<std::size_t>(i) % xs.size()];
    ASSERT_EQ(out[2 * static_cast<std::size_t>(i)], x / d) << x << " / " << d;
    ASSERT_EQ(out[2 * static_cast<std::size_t>(i) + 1], x % d) << x << " % " << d;
  }
}

// The kernels' paired rounding (Fragment::set_pair: one `cvt.rn` of a pair) against rounding
// each element alone (Fragment::set) on the device, and against the host's conversion, over
// every adjacent pair of rounding_test_values. The single roundings run in a kernel of their
// own, one value per thread: in one thread with the pair's, the compiler packed them into the
// same paired instruction, which would compare that instruction with itself.
template <typename T>
__global__ void round_each_on_device(const float* values, int count, T* single) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= count) return;
  rope::detail::Fragment<T, 1, 1> f;
  f.set(0, values[i]);
  single[i] = f.vec[0].elem[0];
}

template <typename T>
__global__ void round_pairs_on_device(const float* values, int count, T* paired) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i + 1 >= count) return;
  rope::detail::Fragment<T, 2, 2> f;
  f.set_pair(0, values[i], values[i + 1]);
  paired[2 * i] = f.vec[0].elem[0];
  paired[2 * i + 1] = f.vec[0].elem[1];
}

template <typename T>
void expect_device_paired_rounding_matches_single(const std::vector<float>& values) {
  const int count = static_cast<int>(values.size());
  const std::size_t pairs = values.size() - 1;  // (values[i], values[i + 1]) for every i but the last
  float* d_values = nullptr;
  T *d_paired = nullptr, *d_single = nullptr;
  ASSERT_EQ(cudaMalloc(&d_values, values.size() * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_paired, 2 * pairs * sizeof(T)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_single, values.size() * sizeof(T)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_values, values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  round_pairs_on_device<T><<<(count + 255) / 256, 256>>>(d_values, count, d_paired);
  round_each_on_device<T><<<(count + 255) / 256, 256>>>(d_values, count, d_single);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<T> paired(2 * pairs), single(values.size());
  ASSERT_EQ(cudaMemcpy(paired.data(), d_paired, paired.size() * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(single.data(), d_single, single.size() * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d_values);
  cudaFree(d_paired);
  cudaFree(d_single);
  for (std::size_t i = 0; i < pairs; ++i) {
    for (std::size_t e = 0; e < 2; ++e) {
      const float v = values[i + e];
      const T got = paired[2 * i + e];
      ASSERT_EQ(std::memcmp(&got, &single[i + e], sizeof(T)), 0)
          << "pair (" << values[i] << ", " << values[i + 1] << "), element " << e;
      // The host's rounding of the same float (NaN: any NaN; the payloads may differ).
      const T host = rope::detail::from_float<T>(v);
      if (std::isnan(v)) {
        ASSERT_TRUE(std::isnan(rope::detail::to_float(got))) << "NaN at pair element " << e;
      } else {
        ASSERT_EQ(std::memcmp(&got, &host, sizeof(T)), 0)
            << "pair (" << values[i] << ", " << values[i + 1] << "), element " << e;
      }
    }
  }
}

TEST(GpuSimple, PairedRoundingMatchesSingleRoundingBitForBit) {
  ROPE_SKIP_WITHOUT_GPU();
  const std::vector<float> values = rope_test::rounding_test_values(321, 1 << 20);
  expect_device_paired_rounding_matches_single<__nv_bfloat16>(values);
  expect_device_paired_rounding_matches_single<__half>(values);
}

// The one-call convenience launcher on the original layout.
TEST(GpuSimple, ConvenienceLauncherMatchesParams) {
  ROPE_SKIP_WITHOUT_GPU();
  const int n = 1000, d = 128;
  std::vector<float> x(n * d), c(n * d / 2), s(n * d / 2), y(n * d, NAN);
  std::mt19937 rng(rope_test::base_seed());
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto& v : x) v = u(rng);
  for (int i = 0; i < n * d / 2; ++i) {
    const double a = u(rng) * 3.1;
    c[i] = static_cast<float>(std::cos(a));
    s[i] = static_cast<float>(std::sin(a));
  }
  float *dx, *dc, *ds, *dy;
  ASSERT_EQ(cudaMalloc(&dx, x.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dc, c.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&ds, s.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dy, y.size() * 4), cudaSuccess);
  cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dc, c.data(), c.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(ds, s.data(), s.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dy, y.data(), y.size() * 4, cudaMemcpyHostToDevice);
  ASSERT_EQ(rope::rope_forward(dx, dc, ds, dy, n, d), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  double err2 = 0, ref2 = 0;
  for (int t = 0; t < n; ++t) {
    for (int i = 0; i < d / 2; ++i) {
      const double x1 = x[t * d + i], x2 = x[t * d + i + d / 2];
      const double cc = c[t * d / 2 + i], ss = s[t * d / 2 + i];
      const double r1 = x1 * cc - x2 * ss, r2 = x1 * ss + x2 * cc;
      err2 += (y[t * d + i] - r1) * (y[t * d + i] - r1) + (y[t * d + i + d / 2] - r2) * (y[t * d + i + d / 2] - r2);
      ref2 += r1 * r1 + r2 * r2;
    }
  }
  EXPECT_LT(std::sqrt(err2 / ref2), 1e-6);
  cudaFree(dx);
  cudaFree(dc);
  cudaFree(ds);
  cudaFree(dy);
}

// The accuracy statement of the README: measured error per dtype and mode against double
// precision, at small and large positions (each case must also be within its dtype's bound).
template <typename T>
void report_accuracy(const char* dtype) {
  struct Mode { const char* name; bool computed; std::int64_t max_position; };
  const Mode modes[] = {{"table, positions < 4096", false, 0},
                        {"computed, positions < 4096", true, 4096},
                        {"computed, positions < 2^20", true, std::int64_t{1} << 20},
                        {"computed, positions < 1.1 * 10^6", true, 1100000}};
  for (const Mode& m : modes) {
    CaseConfig c;
    c.tokens = 4096;
    c.q_heads = 32;
    c.k_heads = 8;
    c.position_type = rope::PositionType::kInt64;
    c.table_rows = 4096;
    c.computed = m.computed;
    c.max_position = m.max_position > 0 ? m.max_position : 4096;
    Case<T> run(c, 77);
    ASSERT_TRUE(run.run(Backend::kGpu));
    std::printf("[ ACCURACY ] %-5s %-38s relative L2 %.2e  max abs %.2e\n", dtype, m.name, run.rel_l2(), run.max_abs());
  }
}

TEST(GpuAccuracy, ReportPerDtypeAndMode) {
  ROPE_SKIP_WITHOUT_GPU();
  report_accuracy<float>("fp32");
  report_accuracy<__half>("fp16");
  report_accuracy<__nv_bfloat16>("bf16");
}

}  // namespace
