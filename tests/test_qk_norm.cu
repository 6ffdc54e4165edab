// SPDX-License-Identifier: MIT
// QK-RMSNorm + RoPE: the per-token body with its norm stage run on the host through the
// launcher's own validation and dispatch (each lane a thread, the group sum at a barrier where
// the GPU shuffles), the lane rule of norm launches, and every argument rope_forward_qk_norm
// rejects (error, reason, nothing written).

#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <rope/rope.cuh>

#define ROPE_TEST_QK_NORM 1  // Case runs norm configurations here (harness.hpp)
#include "qk_norm_cases.hpp"

template <typename T>
class HostQkNorm : public ::testing::Test {};
ROPE_DEFINE_NORM_TESTS(HostQkNorm, ::rope_test::Backend::kHost, (void)0)

namespace {

using rope_test::Backend;
using rope_test::Case;
using rope_test::CaseConfig;

// Other lane counts than the launcher's (rounded up to whole groups): more groups than heads,
// one group walking every head, spare lanes and walking lanes.
TEST(HostQkNormLanes, AnyGroupCountCoversEveryElement) {
  for (int lanes : {1, 3, 7, 64, 300}) {
    for (int d : {80, 128, 512}) {
      CaseConfig c = rope_test::norm_case(d, 5, 3);
      c.rotary_dim = d == 128 ? 96 : 0;
      c.lanes = lanes;
      c.tokens = 3;
      Case<float> f(c, static_cast<std::uint64_t>(lanes + d));
      EXPECT_TRUE(f.run(Backend::kHost));
      EXPECT_EQ(f.lanes_used() % rope::detail::norm_group_width((c.rotary_dim == 0 ? d : c.rotary_dim) / 2 / f.vec_used()), 0);
      Case<__nv_bfloat16> b(c, static_cast<std::uint64_t>(lanes + d + 1000));
      EXPECT_TRUE(b.run(Backend::kHost));
    }
  }
}

// The lane rule: a head's lanes are a power-of-two group of at most 32 that starts at a
// multiple of its width, and every token's lanes are whole groups, so no group straddles a warp
// wherever the block puts the token.
TEST(QkNormLaunchShape, GroupsNeverStraddleAWarp) {
  for (int head_dim : {2, 6, 10, 64, 80, 128, 192, 256, 512, 1024}) {
    for (int heads : {1, 2, 3, 5, 8, 40, 64, 4096}) {
      for (int vec : {1, 2, 4, 8, 16}) {
        const int columns = head_dim / 2 / vec;
        if (columns == 0 || (head_dim / 2) % vec != 0) continue;
        rope::RopeParams<__nv_bfloat16> p;
        p.head_dim = head_dim;
        p.num_tokens = 100;
        p.q.num_heads = heads;
        const int width = rope::detail::norm_group_width(columns);
        EXPECT_TRUE(width <= 32 && (width & (width - 1)) == 0 && width >= (columns < 32 ? columns : 32));
        const rope::detail::LaunchShape s = rope::detail::choose_launch_shape<rope::detail::NormPolicy>(p, vec, rope::detail::NormPolicy::kHeadBatch, rope::detail::LaunchKind::kNorm);
        ASSERT_EQ(s.lanes_per_token % width, 0) << head_dim << " " << heads << " " << vec;
        ASSERT_LE(s.lanes_per_token * s.tokens_per_block, rope::detail::DefaultPolicy::kMaxBlockThreads);
        for (int t = 0; t < s.tokens_per_block; ++t) {
          for (int first = 0; first < s.lanes_per_token; first += width) {
            const int linear = t * s.lanes_per_token + first;
            ASSERT_EQ(linear / 32, (linear + width - 1) / 32) << "a group straddles a warp";
          }
        }
      }
    }
  }
}

// The host group sums in lane order, so a norm run is reproducible to the bit.
TEST(HostQkNormLanes, RunsAreReproducible) {
  CaseConfig c = rope_test::norm_case(128, 8, 2);
  c.data_seed = 99;
  c.tokens = 7;
  Case<float> a(c), b(c);
  ASSERT_TRUE(a.run(Backend::kHost));
  ASSERT_TRUE(b.run(Backend::kHost));
  EXPECT_EQ(a.rel_l2(), b.rel_l2());
}

// ---- Arguments rope_forward_qk_norm rejects --------------------------------------------------

using Params = rope::RopeParams<float>;
using Norm = rope::QkNorm<float, float>;

constexpr int kTokens = 8, kQHeads = 4, kKHeads = 2, kDim = 64;

/// One allocation holding every buffer of a valid launch (device memory with a GPU).
class NormBuffers {
 public:
  float* q() const { return memory_.data(); }
  float* k() const { return q() + kTokens * kQHeads * kDim; }
  float* cos() const { return k() + kTokens * kKHeads * kDim; }
  float* weights() const { return cos() + kTokens * kDim; }

  Params params() const {
    Params p;
    p.num_tokens = kTokens;
    p.head_dim = kDim;
    p.q = rope::packed_heads<float>(q(), q(), kQHeads, kDim);
    p.k = rope::packed_heads<float>(k(), k(), kKHeads, kDim);
    p.cos_sin = rope::fused_cos_sin_cache<float>(cos(), kTokens, kDim);
    return p;
  }
  Norm norm() const {
    Norm n;
    n.q_weight = weights();
    n.k_weight = weights() + kDim;
    return n;
  }
  std::vector<float> contents() const { return memory_.contents(); }

 private:
  static constexpr std::size_t kElems = std::size_t{kTokens} * (kQHeads + kKHeads + 1) * kDim + 2 * kDim + 64;
  rope_test::ScratchFloats memory_{kElems, 0.75f};
};

struct BadNorm {
  const char* name;
  std::function<void(Params&, Norm&, const NormBuffers&)> spoil;
  const char* reason;  // expected substring of the message
};

void PrintTo(const BadNorm& bad, std::ostream* os) { *os << bad.name; }

std::vector<BadNorm> bad_norms() {
  using B = const NormBuffers&;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  return {
      {"BadRopeArgument", [](Params& p, Norm&, B) { p.head_dim = 63; }, "head_dim must be even"},
      {"NullQWeight", [](Params&, Norm& n, B) { n.q_weight = nullptr; }, "q_weight is null"},
      {"NullKWeight", [](Params&, Norm& n, B) { n.k_weight = nullptr; }, "k_weight is null"},
      {"QWeightWithoutQ", [](Params& p, Norm&, B) { p.q = rope::HeadsTensor<float>{}; }, "q_weight is set but q.num_heads is 0"},
      {"KWeightWithoutK", [](Params& p, Norm&, B) { p.k = rope::HeadsTensor<float>{}; }, "k_weight is set but k.num_heads is 0"},
      {"NegativeEps", [](Params&, Norm& n, B) { n.eps = -1e-6f; }, "eps must be finite and non-negative"},
      {"NanEps", [nan](Params&, Norm& n, B) { n.eps = nan; }, "eps must be finite and non-negative"},
      {"InfiniteEps", [inf](Params&, Norm& n, B) { n.eps = inf; }, "eps must be finite and non-negative"},
      {"BadWeighting", [](Params&, Norm& n, B) { n.weighting = static_cast<rope::NormWeighting>(2); }, "rope::NormWeighting"},
      {"MisalignedWeight",
       [](Params&, Norm& n, B b) {
         n.k_weight = reinterpret_cast<const float*>(reinterpret_cast<std::uintptr_t>(b.weights()) + 2);
       },
       "not aligned to its element type"},
      {"WeightInQOutput", [](Params&, Norm& n, B b) { n.q_weight = b.q() + 3 * kDim; }, "overlaps q.y or k.y"},
      {"WeightStraddlesKOutput", [](Params&, Norm& n, B b) { n.k_weight = b.k() - kDim / 2; }, "overlaps q.y or k.y"},
  };
}

class InvalidQkNormArgs : public ::testing::TestWithParam<BadNorm> {};

TEST_P(InvalidQkNormArgs, RejectedBeforeLaunchAndNothingWritten) {
  NormBuffers b;
  Params p = b.params();
  Norm n = b.norm();
  ASSERT_TRUE(rope::validate(p, n).ok()) << rope::validate(p, n).message;
  GetParam().spoil(p, n, b);
  const std::vector<float> before = b.contents();
  const rope::Status status = rope::validate(p, n);
  EXPECT_EQ(status.error, cudaErrorInvalidValue);
  EXPECT_NE(std::string(status.message).find(GetParam().reason), std::string::npos) << status.message;
  EXPECT_EQ(rope::rope_forward_qk_norm(p, n), cudaErrorInvalidValue);
  EXPECT_STREQ(rope::last_error_message(), status.message);
  EXPECT_EQ(rope_test::run_norm_on_host(p, n), cudaErrorInvalidValue);
  const std::vector<float> after = b.contents();
  EXPECT_EQ(std::memcmp(before.data(), after.data(), before.size() * sizeof(float)), 0) << "a rejected launch wrote";
}

INSTANTIATE_TEST_SUITE_P(Launcher, InvalidQkNormArgs, ::testing::ValuesIn(bad_norms()),
                         [](const ::testing::TestParamInfo<BadNorm>& info) { return std::string(info.param.name); });

TEST(ValidQkNormArgs, OptionalPartsAndEmptyLaunches) {
  NormBuffers b;
  Params p = b.params();
  Norm n = b.norm();
  // q only and k only, each with only its own weight.
  Params q_only = p;
  q_only.k = rope::HeadsTensor<float>{};
  Norm nq = n;
  nq.k_weight = nullptr;
  EXPECT_TRUE(rope::validate(q_only, nq).ok()) << rope::validate(q_only, nq).message;
  Params k_only = p;
  k_only.q = rope::HeadsTensor<float>{};
  Norm nk = n;
  nk.q_weight = nullptr;
  EXPECT_TRUE(rope::validate(k_only, nk).ok()) << rope::validate(k_only, nk).message;
  // One weight for both tensors is fine.
  n.k_weight = n.q_weight;
  EXPECT_TRUE(rope::validate(p, n).ok()) << rope::validate(p, n).message;
  // Zero tokens: null weights pass, nothing launches.
  p.num_tokens = 0;
  n.q_weight = n.k_weight = nullptr;
  EXPECT_EQ(rope::rope_forward_qk_norm(p, n), cudaSuccess);
  EXPECT_STREQ(rope::last_error_message(), "ok");
}

}  // namespace
