// SPDX-License-Identifier: MIT
// DeepSeek-V2/V3 multi-head latent attention: each q head is [nope | rope] and only its trailing
// rope slice rotates (interleaved pairs, YaRN frequencies); k's rope part is one head shared by
// all q heads, sliced out of the compressed-KV projection [kv_lora_rank | rope]. The public views
// express this directly: x points at the slice, the head stride spans the whole head. Checked on
// the host (CI) and on the GPU against a double-precision reference; every element outside the
// slices must be left bit for bit as it was.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include <rope/rope.cuh>

#include "harness.hpp"
#include "host_run.hpp"

namespace {

// DeepSeek-V3's head geometry (qk_nope_head_dim 128, qk_rope_head_dim 64, kv_lora_rank 512) with
// fewer heads; its YaRN scaling (factor 40, original 4096, mscale = mscale_all_dim = 1).
constexpr int kNope = 128, kRope = 64, kLoraRank = 512, kHeads = 8, kTokens = 29;
constexpr int kQHead = kNope + kRope, kKvRow = kLoraRank + kRope;

struct MlaProblem {
  std::vector<float> q, ckv;           // [T, H, 192] and [T, 576]
  std::vector<std::int64_t> positions;
  std::vector<float> inv_freq;
  float attention = 1.0f;

  explicit MlaProblem(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    q.resize(std::size_t{kTokens} * kHeads * kQHead);
    ckv.resize(std::size_t{kTokens} * kKvRow);
    for (float& v : q) v = u(rng);
    for (float& v : ckv) v = u(rng);
    std::uniform_int_distribution<std::int64_t> pos(0, 163839);  // DeepSeek-V3's 160K context
    for (int t = 0; t < kTokens; ++t) positions.push_back(pos(rng));
    inv_freq.resize(kRope / 2);
    rope::RopeScaling s = rope::RopeScaling::yarn(10000.0, 40.0, 4096, 32.0, 1.0);
    s.mscale = 1.0;
    s.mscale_all_dim = 1.0;
    const rope::Status st = rope::compute_inv_freq(s, kRope, inv_freq.data(), &attention);
    EXPECT_TRUE(st.ok()) << st.message;
  }

  /// q's rope slices and k_pe, in place, interleaved pairs, cos/sin computed from inv_freq.
  static rope::RopeParams<float> params(float* q, float* ckv, const float* inv_freq, float attention,
                                        const std::int64_t* positions) {
    rope::RopeParams<float> p;
    p.num_tokens = kTokens;
    p.head_dim = kRope;  // the view is the slice; the head stride spans the whole head
    p.style = rope::Style::kInterleaved;
    p.q = rope::strided_heads<float>(q + kNope, q + kNope, kHeads, std::int64_t{kHeads} * kQHead, kQHead);
    p.k = rope::strided_heads<float>(ckv + kLoraRank, ckv + kLoraRank, 1, kKvRow, kRope);
    p.cos_sin = rope::computed_cos_sin(inv_freq, attention);
    p.positions = rope::positions(positions);
    return p;
  }

  /// Checks `q_out` / `ckv_out` against the reference: rotated slices to fp32 rounding, every
  /// other element unchanged bit for bit.
  void check(const std::vector<float>& q_out, const std::vector<float>& ckv_out) const {
    double err2 = 0.0, ref2 = 0.0, max_abs = 0.0;
    auto rotate_slice = [&](const float* in, const float* out, std::int64_t position) {
      for (int i = 0; i < kRope / 2; ++i) {
        const double angle = static_cast<double>(position) * inv_freq[i];
        const double c = std::cos(angle) * attention, s = std::sin(angle) * attention;
        const double x1 = in[2 * i], x2 = in[2 * i + 1];
        const double y[2] = {x1 * c - x2 * s, x1 * s + x2 * c};
        for (int j = 0; j < 2; ++j) {
          const double d = out[2 * i + j] - y[j];
          err2 += d * d;
          ref2 += y[j] * y[j];
          max_abs = std::fmax(max_abs, std::fabs(d));
          ASSERT_FALSE(std::isnan(out[2 * i + j]));
        }
      }
    };
    for (int t = 0; t < kTokens; ++t) {
      for (int h = 0; h < kHeads; ++h) {
        const std::size_t head = (static_cast<std::size_t>(t) * kHeads + h) * kQHead;
        ASSERT_EQ(std::memcmp(&q[head], &q_out[head], kNope * sizeof(float)), 0) << "q nope part written, token " << t;
        rotate_slice(&q[head + kNope], &q_out[head + kNope], positions[t]);
      }
      const std::size_t row = static_cast<std::size_t>(t) * kKvRow;
      ASSERT_EQ(std::memcmp(&ckv[row], &ckv_out[row], kLoraRank * sizeof(float)), 0) << "latent part written, token " << t;
      rotate_slice(&ckv[row + kLoraRank], &ckv_out[row + kLoraRank], positions[t]);
    }
    EXPECT_LT(std::sqrt(err2 / ref2), rope_test::Tolerance<float>::kRelL2);
    EXPECT_LT(max_abs, rope_test::Tolerance<float>::kMaxAbs);
  }
};

TEST(Mla, TrailingRopeSliceOnTheHost) {
  const MlaProblem prob(rope_test::base_seed());
  std::vector<float> q = prob.q, ckv = prob.ckv;
  const auto p = MlaProblem::params(q.data(), ckv.data(), prob.inv_freq.data(), prob.attention, prob.positions.data());
  ASSERT_EQ(rope_test::run_on_host(p, false), cudaSuccess) << rope::last_error_message();
  prob.check(q, ckv);
}

TEST(Mla, TrailingRopeSliceOnTheGpu) {
  ROPE_SKIP_WITHOUT_GPU();
  const MlaProblem prob(rope_test::base_seed() + 1);
  float *q = nullptr, *ckv = nullptr, *freq = nullptr;
  std::int64_t* pos = nullptr;
  ASSERT_EQ(cudaMalloc(&q, prob.q.size() * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&ckv, prob.ckv.size() * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&freq, prob.inv_freq.size() * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&pos, prob.positions.size() * sizeof(std::int64_t)), cudaSuccess);
  cudaMemcpy(q, prob.q.data(), prob.q.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(ckv, prob.ckv.data(), prob.ckv.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(freq, prob.inv_freq.data(), prob.inv_freq.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(pos, prob.positions.data(), prob.positions.size() * sizeof(std::int64_t), cudaMemcpyHostToDevice);
  ASSERT_EQ(rope::rope_forward(MlaProblem::params(q, ckv, freq, prob.attention, pos)), cudaSuccess)
      << rope::last_error_message();
  std::vector<float> q_out(prob.q.size()), ckv_out(prob.ckv.size());
  ASSERT_EQ(cudaMemcpy(q_out.data(), q, q_out.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(ckv_out.data(), ckv, ckv_out.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  prob.check(q_out, ckv_out);
  cudaFree(q);
  cudaFree(ckv);
  cudaFree(freq);
  cudaFree(pos);
}

}  // namespace
