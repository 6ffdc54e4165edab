// SPDX-License-Identifier: MIT
// The device API (<rope/device.cuh>): the pair and fragment rotations agree with the formula,
// and `rotate_head`, run by a group of threads of any size, writes bit for bit what the launcher
// writes for the same head (same functions, same rounding), on the host and in a GPU kernel.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include <rope/device.cuh>
#include <rope/rope.cuh>

#include "harness.hpp"
#include "host_run.hpp"

namespace {

using rope::Style;
using rope::device::HeadGroup;
using rope::device::Rotation;

TEST(DeviceApi, PairAndFragmentRotationsFollowTheFormula) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  float first[4], second[4], inter[8], c[4], s[4];
  for (int i = 0; i < 4; ++i) {
    first[i] = inter[2 * i] = u(rng);
    second[i] = inter[2 * i + 1] = u(rng);
    const float angle = u(rng);
    c[i] = std::cos(angle);
    s[i] = std::sin(angle);
  }
  float expect1[4], expect2[4];
  for (int i = 0; i < 4; ++i) {
    // One fused multiply-add of the first product onto the rounded second (rotate_pair's rounding).
    const float second_s = second[i] * s[i], second_c = second[i] * c[i];
    expect1[i] = std::fmaf(first[i], c[i], -second_s);
    expect2[i] = std::fmaf(first[i], s[i], second_c);
    float y1 = 0, y2 = 0;
    rope::device::rotate_pair(first[i], second[i], c[i], s[i], y1, y2);
    EXPECT_EQ(y1, expect1[i]);
    EXPECT_EQ(y2, expect2[i]);
  }
  rope::device::rotate_half_split(first, second, c, s);
  rope::device::rotate_interleaved(inter, c, s);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(first[i], expect1[i]);
    EXPECT_EQ(second[i], expect2[i]);
    EXPECT_EQ(inter[2 * i], expect1[i]);
    EXPECT_EQ(inter[2 * i + 1], expect2[i]);
  }
}

TEST(DeviceApi, PairCosSinIsTheAccurateAngle) {
  // Computed mode: rotary_sincos of (position, frequency) times the attention factor.
  alignas(16) float inv_freq[8];
  for (int i = 0; i < 8; ++i) inv_freq[i] = std::pow(10000.0f, -static_cast<float>(i) / 8.0f);
  const rope::CosSin cs = rope::computed_cos_sin(inv_freq, 1.5f);
  float c[4], s[4], ci[4], si[4];
  rope::device::pair_cos_sin<4>(cs, 123457, 4, c, s);
  rope::device::pair_cos_sin<4>(cs, 123457, 4, ci, si, Rotation::kInverse);
  for (int i = 0; i < 4; ++i) {
    float ws = 0, wc = 0;
    rope::device::rotary_sincos(123457, inv_freq[4 + i], 1.5f, ws, wc);
    EXPECT_EQ(c[i], wc);
    EXPECT_EQ(s[i], ws);
    EXPECT_EQ(ci[i], wc);
    EXPECT_EQ(si[i], -ws);
    const double angle = 123457.0 * static_cast<double>(inv_freq[4 + i]);
    EXPECT_NEAR(c[i], 1.5 * std::cos(angle), 1.5 * 2e-7);
    EXPECT_NEAR(s[i], 1.5 * std::sin(angle), 1.5 * 2e-7);
  }
}

/// One head's problem: x, a table of `rows` positions, frequencies; the launcher's output for it.
template <typename T>
struct HeadProblem {
  static constexpr int kRows = 64;
  int head_dim, rotary_dim;
  Style style;
  bool computed;
  std::int64_t position = 37;
  std::vector<T> x;
  std::vector<float> cos, sin, inv_freq;

  HeadProblem(int head_dim_, int rotary_dim_, Style style_, bool computed_, std::uint64_t seed)
      : head_dim(head_dim_), rotary_dim(rotary_dim_), style(style_), computed(computed_) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (int i = 0; i < head_dim; ++i) x.push_back(rope::detail::from_float<T>(u(rng)));
    const int half = rotary_dim / 2;
    for (int i = 0; i < half; ++i) inv_freq.push_back(std::pow(10000.0f, -2.0f * i / rotary_dim));
    for (int r = 0; r < kRows; ++r) {
      for (int i = 0; i < half; ++i) {
        cos.push_back(std::cos(r * inv_freq[i]));
        sin.push_back(std::sin(r * inv_freq[i]));
      }
    }
  }

  rope::CosSin cos_sin(const float* c, const float* s, const float* f) const {
    return computed ? rope::computed_cos_sin(f) : rope::cos_sin_table(c, s, kRows, rotary_dim / 2);
  }

  /// The launcher's output for this head (its validation, dispatch and body, run on the host).
  std::vector<T> launcher_output(Rotation rotation) const {
    std::vector<T> y(head_dim);
    const std::int64_t pos[1] = {position};
    rope::RopeParams<T> p;
    p.num_tokens = 1;
    p.head_dim = head_dim;
    p.rotary_dim = rotary_dim;
    p.style = style;
    p.q = rope::packed_heads(x.data(), y.data(), 1, head_dim);
    p.cos_sin = cos_sin(cos.data(), sin.data(), inv_freq.data());
    p.positions = rope::positions(pos);
    // The per-token body: one token would otherwise take head groups, which run rotate_head.
    EXPECT_EQ(rope_test::run_on_host(p, rotation == Rotation::kInverse, 0, nullptr, rope_test::HostPath::kPerTokenBody),
              cudaSuccess);
    return y;
  }
};

template <int kVec, Style kStyle, typename T>
std::vector<T> rotate_head_on_host(const HeadProblem<T>& h, int group_size, Rotation rotation) {
  std::vector<T> y(h.head_dim);
  const rope::CosSin cs = h.cos_sin(h.cos.data(), h.sin.data(), h.inv_freq.data());
  for (int rank = 0; rank < group_size; ++rank) {
    rope::device::rotate_head<kVec, kStyle>(HeadGroup{rank, group_size}, h.x.data(), y.data(), h.head_dim,
                                            h.rotary_dim, cs, h.position, rotation);
  }
  return y;
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <int kVec, Style kStyle, typename T>
void expect_head_matches_launcher(int head_dim, int rotary_dim) {
  for (const bool computed : {false, true}) {
    const HeadProblem<T> h(head_dim, rotary_dim, kStyle, computed, 11u * head_dim + rotary_dim);
    for (const Rotation rotation : {Rotation::kForward, Rotation::kInverse}) {
      const std::vector<T> expect = h.launcher_output(rotation);
      for (const int size : {1, 2, 3, 8, 32}) {
        EXPECT_TRUE(same_bits(rotate_head_on_host<kVec, kStyle>(h, size, rotation), expect))
            << "head_dim " << head_dim << " rotary_dim " << rotary_dim << " vec " << kVec << " group " << size
            << " computed " << computed << " inverse " << (rotation == Rotation::kInverse);
      }
    }
  }
}

TEST(DeviceApi, RotateHeadMatchesTheLauncherOnTheHost) {
  expect_head_matches_launcher<8, Style::kHalfSplit, __nv_bfloat16>(128, 128);
  expect_head_matches_launcher<4, Style::kInterleaved, __nv_bfloat16>(128, 128);
  expect_head_matches_launcher<4, Style::kHalfSplit, float>(80, 32);  // partial rotary: tail copied
  expect_head_matches_launcher<2, Style::kInterleaved, __half>(64, 64);
  expect_head_matches_launcher<1, Style::kHalfSplit, float>(6, 6);
}

TEST(DeviceApi, RotateHeadInPlaceMatchesOutOfPlace) {
  const HeadProblem<float> h(96, 64, Style::kHalfSplit, true, 5);
  const std::vector<float> expect = rotate_head_on_host<4, Style::kHalfSplit>(h, 4, Rotation::kForward);
  std::vector<float> y = h.x;
  const rope::CosSin cs = h.cos_sin(nullptr, nullptr, h.inv_freq.data());
  for (int rank = 0; rank < 4; ++rank) {
    rope::device::rotate_head<4, Style::kHalfSplit>(HeadGroup{rank, 4}, y.data(), y.data(), 96, 64, cs, h.position);
  }
  EXPECT_TRUE(same_bits(y, expect));
}

TEST(DeviceApi, AccessAlignmentIsTheLaunchersRule) {
  EXPECT_EQ(rope::device::head_access_alignment<__nv_bfloat16>(Style::kHalfSplit, 8), 8);
  EXPECT_EQ(rope::device::head_access_alignment<__nv_bfloat16>(Style::kInterleaved, 8), 8);
  EXPECT_EQ(rope::device::head_access_alignment<__nv_bfloat16>(Style::kInterleaved, 2), 4);
  EXPECT_EQ(rope::device::head_access_alignment<float>(Style::kHalfSplit, 8), 4);
}

// A kernel of the user's: each warp rotates one head with 8-thread groups (4 heads per warp).
__global__ void rotate_heads_with_groups(const __nv_bfloat16* x, __nv_bfloat16* y, int heads, int head_dim,
                                         rope::CosSin cs, const std::int64_t* positions) {
  const int group = static_cast<int>((blockIdx.x * blockDim.x + threadIdx.x) / 8);
  if (group >= heads) return;
  rope::device::rotate_head<8, Style::kHalfSplit>(HeadGroup{static_cast<int>(threadIdx.x % 8), 8},
                                                  x + std::int64_t{group} * head_dim, y + std::int64_t{group} * head_dim,
                                                  head_dim, head_dim, cs, positions[group]);
}

TEST(DeviceApi, RotateHeadInAUserKernelMatchesTheLauncherOnTheGpu) {
  ROPE_SKIP_WITHOUT_GPU();
  // More heads (one per token below) than a head group launch takes, so the launcher runs its
  // per-token kernel, not rotate_head itself.
  constexpr int kHeads = static_cast<int>(rope::detail::kHeadGroupMaxHeads) + 8, kDim = 128, kRows = 4096;
  static_assert(kHeads > rope::detail::kHeadGroupMaxTokens && kHeads > rope::detail::kHeadGroupMaxHeads,
                "the launcher must take its per-token kernel");
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<__nv_bfloat16> x(kHeads * kDim);
  for (auto& v : x) v = __float2bfloat16(u(rng));
  std::vector<std::int64_t> pos(kHeads);
  for (auto& v : pos) v = static_cast<std::int64_t>(rng() % kRows);
  std::vector<float> inv_freq(kDim / 2);
  for (int i = 0; i < kDim / 2; ++i) inv_freq[i] = std::pow(500000.0f, -2.0f * i / kDim);

  __nv_bfloat16 *dx = nullptr, *dy = nullptr, *dref = nullptr;
  std::int64_t* dpos = nullptr;
  float* dfreq = nullptr;
  const std::size_t bytes = x.size() * sizeof(__nv_bfloat16);
  ASSERT_EQ(cudaMalloc(&dx, bytes), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dy, bytes), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dref, bytes), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dpos, pos.size() * sizeof(std::int64_t)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dfreq, inv_freq.size() * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dx, x.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dpos, pos.data(), pos.size() * sizeof(std::int64_t), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dfreq, inv_freq.data(), inv_freq.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  const rope::CosSin cs = rope::computed_cos_sin(dfreq);

  rotate_heads_with_groups<<<(kHeads * 8 + 127) / 128, 128>>>(dx, dy, kHeads, kDim, cs, dpos);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  // The launcher on the same heads: one head per token, the head's position per token.
  rope::RopeParams<__nv_bfloat16> p;
  p.num_tokens = kHeads;
  p.head_dim = kDim;
  p.q = rope::packed_heads<__nv_bfloat16>(dx, dref, 1, kDim);
  p.cos_sin = cs;
  p.positions = rope::positions(dpos);
  ASSERT_FALSE(rope::detail::takes_head_groups(p));
  ASSERT_EQ(rope::rope_forward(p), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<__nv_bfloat16> y(x.size()), ref(x.size());
  ASSERT_EQ(cudaMemcpy(y.data(), dy, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(ref.data(), dref, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_TRUE(same_bits(y, ref));
  // And against the formula in double precision (bf16 rounding of the output).
  double worst = 0;
  for (int h = 0; h < kHeads; ++h) {
    for (int i = 0; i < kDim / 2; ++i) {
      const double a = static_cast<double>(pos[h]) * inv_freq[i];
      const double x1 = __bfloat162float(x[h * kDim + i]), x2 = __bfloat162float(x[h * kDim + i + kDim / 2]);
      worst = std::fmax(worst, std::fabs(__bfloat162float(y[h * kDim + i]) - (x1 * std::cos(a) - x2 * std::sin(a))));
      worst = std::fmax(worst,
                        std::fabs(__bfloat162float(y[h * kDim + i + kDim / 2]) - (x1 * std::sin(a) + x2 * std::cos(a))));
    }
  }
  EXPECT_LT(worst, 1.6e-2);
  cudaFree(dx);
  cudaFree(dy);
  cudaFree(dref);
  cudaFree(dpos);
  cudaFree(dfreq);
}

}  // namespace
